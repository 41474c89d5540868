//! Any bytes as a V2 macaroon, decoded by `common::macaroon`, and the same bytes presented to the
//! verifier as a derived macaroon credential (`<macaroon prefix>_v1_<base64url>`).
//!
//! Beyond "never panics": a macaroon that decodes re-encodes to bytes that decode to the same
//! macaroon (the writer and reader agree), its signature check never panics, and no credential
//! the fuzzer makes verifies — it cannot know the HMAC chain's root key.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use common::clock;
use common::macaroon::Macaroon;
use common::snapshot::{self, Snapshot};
use common::verify::Verifier;
use libfuzzer_sys::fuzz_target;

mod fixture;

fn fixture() -> &'static (Verifier, Snapshot, String) {
    static FIXTURE: OnceLock<(Verifier, Snapshot, String)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = fixture::config();
        let verifier = fixture::verifier();
        let prefix = format!("{}_v1_", config.credentials.derived_tokens.macaroon_prefix);
        let snapshot = snapshot::from_records(&[], &verifier);
        (verifier, snapshot, prefix)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(macaroon) = Macaroon::deserialize_v2(data) {
        let again = Macaroon::deserialize_v2(&macaroon.serialize_v2()).expect("a serialised macaroon decodes");
        assert_eq!(again, macaroon, "serialise then decode changed the macaroon");
        let _ = macaroon.verify_signature(b"fuzz-root-key");
    }

    let (verifier, snapshot, prefix) = fixture();
    for encoded in [
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data),
        base64::engine::general_purpose::URL_SAFE.encode(data),
        String::from_utf8_lossy(data).into_owned(),
    ] {
        let credential = format!("{prefix}{encoded}");
        let verdict = verifier.verify(&credential, &[], clock::now(), None, snapshot);
        assert!(verdict.is_err(), "a macaroon the fuzzer made verified");
    }
});
