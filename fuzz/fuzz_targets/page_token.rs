//! Any string as a `page_token` query parameter: open it as the list handler would.
//!
//! Tokens are authenticated (XChaCha20-Poly1305), so fuzzed input never gets past the tag check;
//! what this covers is the base64url decoding, the length checks and the AEAD refusal — the
//! part an unauthenticated client reaches.
#![no_main]

use std::sync::OnceLock;

use common::key::{Keyring, NIL_NID};
use common::model::KeyKind;
use common::page_token::PageTokens;
use libfuzzer_sys::fuzz_target;

fn tokens() -> &'static PageTokens {
    static TOKENS: OnceLock<PageTokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let keyring = Keyring::new(b"fuzz-secret-0123456789abcdef0123456789", []);
        PageTokens::new(&keyring, 0, &[b"fuzz-legacy-pagination-secret-0123456789"])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    for kind in [KeyKind::Issued, KeyKind::Imported] {
        let _ = tokens().open(kind, token, NIL_NID);
    }
});
