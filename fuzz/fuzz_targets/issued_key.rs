//! Any string as a presented credential: route it as an issued key and, if it parses, check its
//! checksum. Beyond "never panics", a parsed key must borrow consistently from the credential
//! (its signed part is a prefix ending in `_`, its checksum the rest) and have a legal prefix.
#![no_main]

use std::sync::OnceLock;

use common::key::{self, Keyring};
use libfuzzer_sys::fuzz_target;

/// 2026-01-01T00:00:00Z; the checksum check only uses it to pick active retired secrets.
const NOW_SECS: i64 = 1_767_225_600;

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    // A retired secret too, so the loop over active secrets runs more than once.
    KEYRING.get_or_init(|| {
        Keyring::new(
            b"fuzz-secret-0123456789abcdef0123456789",
            [(b"fuzz-retired-0123456789abcdef0123456789".to_vec(), Some(NOW_SECS + 60))],
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(credential) = std::str::from_utf8(data) else {
        return;
    };
    let Some(parsed) = key::parse_issued(credential) else {
        return;
    };
    assert!(key::valid_prefix(parsed.prefix), "parsed an illegal prefix {:?}", parsed.prefix);
    let bytes = credential.as_bytes();
    assert!(bytes.starts_with(parsed.signed) && parsed.signed.ends_with(b"_"));
    assert_eq!(&bytes[parsed.signed.len()..], parsed.checksum);
    // A fuzzer cannot forge HMAC-SHA256: this only exercises the comparison on arbitrary input.
    let _ = key::checksum_matches(&parsed, keyring(), NOW_SECS);
});
