//! Benchmarks of the verify hot path, and the fixtures they share.
//!
//! The criterion benchmarks live in `benches/` (`cargo bench -p talos-benches --bench verify`);
//! this library holds only what they need to set up: a minimal valid [`Config`], deterministic
//! key ids, realistic [`KeyRecord`]s, issued keys for them and the HTTP bytes of a verify
//! request. Everything is deterministic except `now`, which the caller passes in, so two runs
//! measure the same work.
//!
//! The package is a workspace member but not a default member, so `cargo test` never builds
//! criterion. It deliberately holds no assertions about speed: numbers are read, not tested.

use common::clock::{secs, Nanos, NANOS_PER_SEC};
use common::config::Config;
use common::key;
use common::model::{KeyKind, KeyRecord, KeyStatus, Visibility};
use common::snapshot::{self, Snapshot};
use common::verify::Verifier;
use uuid::Uuid;

/// The prefix the fixture config issues keys under (the default, `ory_ak`).
pub const PREFIX: &str = "ory_ak";
/// The issuer the fixture config names; it is rendered into every valid answer.
pub const ISSUER: &str = "https://talos.bench.example";

/// A minimal valid configuration: issuer, a 40-character HMAC secret and the in-memory store.
const CONFIG_YAML: &str = r#"
credentials:
  issuer: "https://talos.bench.example"
secrets:
  hmac:
    current: "bench-secret-0123456789abcdef0123456789"
db:
  dsn: memory
"#;

/// Keys are issued an hour before `now`, well inside the default one-year `max_ttl`.
const ISSUED_AGO: Nanos = 3600 * NANOS_PER_SEC;
/// And expire thirty days after `now`, so a benchmark run never sees one expire.
const EXPIRES_IN: Nanos = 30 * 86_400 * NANOS_PER_SEC;

/// The fixture configuration, loaded through the same validation as `talos serve`.
pub fn config() -> Config {
    let (config, _warnings) = Config::from_yaml_str(CONFIG_YAML, &Vec::<(String, String)>::new())
        .unwrap_or_else(|e| panic!("the fixture config is invalid:\n{e}"));
    config
}

/// A [`Verifier`] for the fixture configuration, without `last_used_time` recording (that needs
/// a store, and its cost is a relaxed atomic load per verify on the same UTC day).
pub fn verifier() -> Verifier {
    Verifier::new(&config()).unwrap_or_else(|e| panic!("the fixture verifier builds: {e}"))
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny, well-mixed generator, so key ids look like
/// the random v4 uuids the server issues without pulling in a random number crate.
fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`-th deterministic v4 key id. Ids with different `i` differ (SplitMix64 is a bijection
/// of its state, and the state steps by two per id).
pub fn key_id(i: u64) -> Uuid {
    let hi = splitmix64(i.wrapping_mul(2));
    let lo = splitmix64(i.wrapping_mul(2).wrapping_add(1));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_le_bytes());
    bytes[8..].copy_from_slice(&lo.to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A key id that no fixture record has: the high half of `i`'s range is never used by
/// [`records`] for any realistic `n`.
pub fn absent_key_id(i: u64) -> Uuid {
    key_id(i | 1 << 62)
}

/// An active issued key record for [`key_id`]`(i)`, shaped like one issued through the admin
/// API (actor, two scopes, a little metadata), so its pre-rendered answer has a typical size.
pub fn record(i: u64, now: Nanos) -> KeyRecord {
    let mut metadata = serde_json::Map::new();
    metadata.insert("team".into(), "payments".into());
    KeyRecord {
        key_id: key_id(i).hyphenated().to_string(),
        name: format!("bench-key-{i}"),
        actor_id: "svc-bench".into(),
        scopes: vec!["read".into(), "write".into()],
        metadata,
        status: KeyStatus::Active,
        visibility: Visibility::Secret,
        token_prefix: PREFIX.into(),
        create_time: now - ISSUED_AGO,
        update_time: now - ISSUED_AGO,
        expire_time: now + EXPIRES_IN,
        // No IP allowlist, rate-limit policy or revocation: the plain, common case.
        ..KeyRecord::empty(KeyKind::Issued)
    }
}

/// Records `0..n`, as [`record`] makes them.
pub fn records(n: u64, now: Nanos) -> Vec<KeyRecord> {
    (0..n).map(|i| record(i, now)).collect()
}

/// A snapshot holding records `0..n`. The records are dropped once it is built, so a large
/// snapshot does not hold its inputs twice.
pub fn snapshot(n: u64, now: Nanos) -> Snapshot {
    snapshot::from_records(&records(n, now), &verifier())
}

/// The identifier record `i` is indexed by in the snapshot.
pub fn identifier(i: u64, now: Nanos) -> Vec<u8> {
    key::identifier(secs(now - ISSUED_AGO), key_id(i)).into_bytes()
}

/// The issued key string for record `i`, signed with `verifier`'s current secret.
pub fn issued_key(i: u64, now: Nanos, verifier: &Verifier) -> String {
    key::generate(PREFIX, secs(now - ISSUED_AGO), key_id(i), &verifier.keyring)
}

/// A verify request as the Ory SDK sends it: request line, the SDK's headers, and the JSON body.
pub fn verify_request(credential: &str) -> Vec<u8> {
    let body = format!(r#"{{"credential":"{credential}"}}"#);
    let mut request = format!(
        "POST /v2alpha1/admin/apiKeys:verify HTTP/1.1\r\n\
         Host: talos.internal:4420\r\n\
         Accept-Encoding: identity\r\n\
         User-Agent: OpenAPI-Generator/1.0.0/python\r\n\
         Accept: application/json\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {}\r\n\
         \r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_verify() {
        let now = common::clock::now();
        let verifier = verifier();
        let snapshot = snapshot(100, now);
        assert_eq!(snapshot.len(), 100);
        let key = issued_key(42, now, &verifier);
        let answer = verifier.verify(&key, &[], now, None, &snapshot).expect("the fixture key verifies");
        let answer: serde_json::Value = serde_json::from_slice(answer.body()).expect("the answer is JSON");
        assert_eq!(answer["key_id"], key_id(42).hyphenated().to_string());
        assert!(snapshot.issued(&identifier(42, now)).is_some());
        assert!(snapshot.issued(&key::identifier(secs(now), absent_key_id(42)).into_bytes()).is_none());
        assert!(std::str::from_utf8(&verify_request(&key)).is_ok());
    }
}
