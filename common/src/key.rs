//! The issued API key format and its checksum (talos-api.md §3.1–§3.3), and the imported-key
//! hash (§3.4).
//!
//! An issued key is `<prefix>_v1_<base58("<unix>:<uuid>")>_<base58(HMAC-SHA256)>`. The HMAC covers
//! everything up to and including the last underscore, under `secrets.hmac.current`; verifiers try
//! the current secret and every still-active retired one, comparing in constant time.
//!
//! This module owns parsing and checking a presented credential on the CPU, allocation-free, so
//! the data plane can run it per request. It does not look keys up (that is the snapshot's or the
//! store's job) and it does not decide status or expiry.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512_256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The literal version tag between prefix and identifier.
const VERSION_TAG: &[u8] = b"_v1";
/// Bounds on the encoded identifier (characters) and its decoded form (bytes), §3.1.
const MAX_IDENTIFIER_CHARS: usize = 128;
const MIN_IDENTIFIER_CHARS: usize = 20;
const MIN_IDENTIFIER_BYTES: usize = 20;
const MAX_IDENTIFIER_BYTES: usize = 60;
const MIN_CHECKSUM_CHARS: usize = 10;
/// A base58 SHA-256 digest is at most 44 characters; anything longer cannot match.
const MAX_CHECKSUM_CHARS: usize = 44;
/// Maximum prefix length, §3.1.
pub const MAX_PREFIX_LEN: usize = 16;

/// The network id of single-tenant talos: uuid.Nil, rendered canonically.
pub const NIL_NID: &str = "00000000-0000-0000-0000-000000000000";

/// One HMAC secret with its precomputed key schedule; cloning the state per use costs a copy,
/// not a key expansion.
#[derive(Clone)]
pub struct HmacKey {
    state: HmacSha256,
    /// Unix seconds after which a retired secret no longer verifies (exclusive bound).
    expires_at: Option<i64>,
}

impl HmacKey {
    pub fn new(secret: &[u8], expires_at: Option<i64>) -> Self {
        Self { state: HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"), expires_at }
    }

    pub fn is_active(&self, now_secs: i64) -> bool {
        self.expires_at.is_none_or(|at| now_secs < at)
    }

    /// HMAC-SHA256 of `parts`, concatenated.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.state.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

/// The HMAC secrets in verification order: current first, then retired.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<HmacKey>,
}

impl Keyring {
    pub fn new(current: &[u8], retired: impl IntoIterator<Item = (Vec<u8>, Option<i64>)>) -> Self {
        let mut keys = vec![HmacKey::new(current, None)];
        keys.extend(retired.into_iter().map(|(s, at)| HmacKey::new(&s, at)));
        Self { keys }
    }

    pub fn current(&self) -> &HmacKey {
        &self.keys[0]
    }

    /// Every configured key, current first, whether active or not.
    pub fn all(&self) -> &[HmacKey] {
        &self.keys
    }

    /// Current and still-active retired keys, in order.
    pub fn active(&self, now_secs: i64) -> impl Iterator<Item = &HmacKey> {
        self.keys.iter().filter(move |k| k.is_active(now_secs))
    }
}

/// A syntactically valid issued key, borrowed from the presented credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub prefix: &'a str,
    pub timestamp: i64,
    pub key_id: Uuid,
    /// `<prefix>_v1_<identifier>_`: the HMAC message.
    pub signed: &'a [u8],
    pub checksum: &'a [u8],
}

/// Why an issued key failed the CPU checks. Every variant reads as NOT_FOUND on the wire
/// (security-model: foreign, forged and unknown keys must look alike); the variants exist for
/// logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheckError {
    Checksum,
    Timestamp,
    Prefix,
}

fn is_base58(b: u8) -> bool {
    matches!(b, b'1'..=b'9' | b'A'..=b'H' | b'J'..=b'N' | b'P'..=b'Z' | b'a'..=b'k' | b'm'..=b'z')
}

fn is_prefix_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `prefix` is a legal key prefix (`^[a-zA-Z0-9_]{1,16}$`).
pub fn valid_prefix(prefix: &str) -> bool {
    (1..=MAX_PREFIX_LEN).contains(&prefix.len()) && prefix.bytes().all(is_prefix_char)
}

/// The parts of a credential that has the issued-key shape (the v1 regex of §3.1), before the
/// identifier is decoded. Allocation-free, and cheap: no base58 arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub prefix: &'a str,
    /// The base58 identifier, as presented.
    pub identifier: &'a [u8],
    /// `<prefix>_v1_<identifier>_`: the HMAC message.
    pub signed: &'a [u8],
    pub checksum: &'a [u8],
}

/// Splits `credential` if it matches the v1 regex of §3.1.
pub fn split_issued(credential: &str) -> Option<KeyParts<'_>> {
    let bytes = credential.as_bytes();
    // The identifier and checksum are base58, which has no '_': they are the last two segments.
    let last = bytes.iter().rposition(|&b| b == b'_')?;
    let checksum = &bytes[last + 1..];
    let before = &bytes[..last];
    let mid = before.iter().rposition(|&b| b == b'_')?;
    let identifier = &before[mid + 1..];
    let head = &before[..mid];
    let prefix = head.strip_suffix(VERSION_TAG)?;
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || !prefix.iter().all(|&b| is_prefix_char(b)) {
        return None;
    }
    if checksum.len() < MIN_CHECKSUM_CHARS || !checksum.iter().all(|&b| is_base58(b)) {
        return None;
    }
    if !(MIN_IDENTIFIER_CHARS..=MAX_IDENTIFIER_CHARS).contains(&identifier.len())
        || !identifier.iter().all(|&b| is_base58(b))
    {
        return None;
    }
    Some(KeyParts {
        // The prefix is ASCII by construction, so this cannot fail.
        prefix: std::str::from_utf8(prefix).ok()?,
        identifier,
        signed: &bytes[..=last],
        checksum,
    })
}

/// Parses `credential` as an issued key (the v1 regex of §3.1 plus a decodable identifier).
/// `None` means it does not route as an issued key; such a credential is looked up as an
/// imported key (§3.3). Allocation-free.
pub fn parse_issued(credential: &str) -> Option<ParsedKey<'_>> {
    let parts = split_issued(credential)?;
    let mut decoded = [0u8; MAX_IDENTIFIER_CHARS];
    let len = bs58::decode(parts.identifier).onto(&mut decoded[..]).ok()?;
    if !(MIN_IDENTIFIER_BYTES..=MAX_IDENTIFIER_BYTES).contains(&len) {
        return None;
    }
    let plain = &decoded[..len];
    let colon = plain.iter().position(|&b| b == b':')?;
    let timestamp = parse_i64(&plain[..colon])?;
    let key_id = Uuid::try_parse_ascii(&plain[colon + 1..]).ok()?;
    Some(ParsedKey { prefix: parts.prefix, timestamp, key_id, signed: parts.signed, checksum: parts.checksum })
}

/// The base58 identifier of the key issued as `key_id` at `timestamp` (Unix seconds).
pub fn identifier(timestamp: i64, key_id: Uuid) -> String {
    bs58::encode(format!("{timestamp}:{}", key_id.hyphenated()).as_bytes()).into_string()
}

/// The base58 checksum of `<prefix>_v1_<identifier>_` under `secret`.
pub fn checksum(prefix: &str, identifier: &str, secret: &HmacKey) -> String {
    bs58::encode(secret.sign(&[prefix.as_bytes(), b"_v1_", identifier.as_bytes(), b"_"])).into_string()
}

/// Constant-time comparison of a presented checksum with an expected one.
pub fn checksum_eq(presented: &[u8], expected: &[u8]) -> bool {
    // Lengths are public (the presented checksum's length is chosen by the caller).
    presented.len() == expected.len() && bool::from(presented.ct_eq(expected))
}

/// Go's `strconv.ParseInt(s, 10, 64)`: optional sign, ASCII digits, no overflow.
fn parse_i64(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Checks the checksum against every active secret in constant time per comparison.
pub fn checksum_matches(key: &ParsedKey<'_>, keyring: &Keyring, now_secs: i64) -> bool {
    if key.checksum.len() > MAX_CHECKSUM_CHARS {
        return false;
    }
    let mut expected = [0u8; MAX_CHECKSUM_CHARS];
    let mut matched = false;
    for secret in keyring.active(now_secs) {
        let digest = secret.sign(&[key.signed]);
        let len = bs58::encode(digest).onto(&mut expected[..]).expect("44 bytes hold a base58 SHA-256");
        matched |= checksum_eq(key.checksum, &expected[..len]);
    }
    matched
}

/// The issue-time rule of decisions.md §5.3: `ts <= now + skew` and `now - ts <= max_ttl + skew`.
pub fn timestamp_in_range(ts: i64, now_secs: i64, max_ttl_secs: i64, skew_secs: i64) -> bool {
    ts <= now_secs.saturating_add(skew_secs) && now_secs.saturating_sub(ts) <= max_ttl_secs.saturating_add(skew_secs)
}

/// Builds a new key string for `key_id` issued at `timestamp` under the current secret.
pub fn generate(prefix: &str, timestamp: i64, key_id: Uuid, keyring: &Keyring) -> String {
    debug_assert!(valid_prefix(prefix));
    let identifier = identifier(timestamp, key_id);
    let checksum = checksum(prefix, &identifier, keyring.current());
    format!("{prefix}_v1_{identifier}_{checksum}")
}

/// `hex(SHA-512/256(nid ‖ 0x00 ‖ raw_key))`, the id and lookup key of an imported key (§3.4).
pub fn imported_key_id(nid: &str, raw_key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha512_256::new();
    hasher.update(nid.as_bytes());
    hasher.update([0u8]);
    hasher.update(raw_key);
    hasher.finalize().into()
}

/// Lowercase hex of a 32-byte digest.
pub fn hex32(digest: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Parses a 64-char lowercase hex key id back into its digest.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"test-secret-0123456789abcdef0123456789";
    const TS: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const ID: &str = "3f2a8c1e-9b4d-4e7a-8f10-2c3d4e5f6a7b";

    fn ring() -> Keyring {
        Keyring::new(SECRET, [])
    }

    fn key() -> String {
        generate("ory_ak", TS, Uuid::parse_str(ID).unwrap(), &ring())
    }

    fn check_vector(timestamp: i64, key_id: &str, expected: &str) {
        let k = generate("ory_ak", timestamp, Uuid::parse_str(key_id).unwrap(), &ring());
        assert_eq!(k, expected);
        let parsed = parse_issued(&k).unwrap();
        assert_eq!((parsed.timestamp, parsed.key_id.to_string().as_str()), (timestamp, key_id));
        assert!(checksum_matches(&parsed, &ring(), timestamp));
    }

    #[test]
    fn fixed_vectors() {
        // Computed independently with Python's hmac/hashlib and a textbook Bitcoin base58.
        check_vector(
            TS,
            ID,
            "ory_ak_v1_Qixkm4LLsreXThDin1PMDdN7fQe8KBizu57pu9nwN5pSiEq6mvZ4RdKBA7XUYoMT_\
             63ZN5DfXzc42ZLsAZoeTQZK2taYEY9wwSdx5wjqwLmTz",
        );
        // A digest with a leading zero byte: base58 writes it as a leading '1' (still 44 characters).
        check_vector(
            TS,
            "00000000-0000-4000-8000-0000000002c4",
            "ory_ak_v1_Qixkm4LLsreXThDhMzEG5mcQofTQ2syh6HAmoF3jsEsNQujeDuq5H1oFtwFhJmco_\
             14DzEQj7Eg3Qvusg4Aj6w3pseuPCtinhr3K5jSkWtt7k",
        );
    }

    #[test]
    fn parse_and_check() {
        let k = key();
        let parsed = parse_issued(&k).unwrap();
        assert_eq!(parsed.prefix, "ory_ak");
        assert_eq!(parsed.timestamp, TS);
        assert_eq!(parsed.key_id.to_string(), ID);
        assert!(checksum_matches(&parsed, &ring(), TS));
        let other = Keyring::new(b"another-secret-0123456789abcdef0123456789", []);
        assert!(!checksum_matches(&parsed, &other, TS));
    }

    #[test]
    fn retired_secret_verifies_until_it_expires() {
        let k = key();
        let parsed = parse_issued(&k).unwrap();
        let rotated = Keyring::new(b"new-secret-0123456789abcdef0123456789", [(SECRET.to_vec(), Some(TS + 10))]);
        assert!(checksum_matches(&parsed, &rotated, TS + 9));
        assert!(!checksum_matches(&parsed, &rotated, TS + 10));
        let forever = Keyring::new(b"new-secret-0123456789abcdef0123456789", [(SECRET.to_vec(), None)]);
        assert!(checksum_matches(&parsed, &forever, TS + 1_000_000));
    }

    #[test]
    fn prefixes_with_underscores() {
        let k = generate("sk_live", TS, Uuid::parse_str(ID).unwrap(), &ring());
        let parsed = parse_issued(&k).unwrap();
        assert_eq!(parsed.prefix, "sk_live");
        assert!(checksum_matches(&parsed, &ring(), TS));
    }

    fn check_route(credential: &str, issued: bool) {
        assert_eq!(parse_issued(credential).is_some(), issued, "{credential:?}");
    }

    #[test]
    fn routing() {
        let k = key();
        check_route(&k, true);
        check_route("", false);
        check_route("ory_ak_v1__", false);
        check_route(&k.replace("_v1_", "_v2_"), false);
        check_route(&format!("{}{}", "a".repeat(17), &k[6..]), false); // prefix too long
        check_route(&format!("-{k}"), false); // prefix char outside [a-zA-Z0-9_]
        check_route(&k[..k.len() - 40], false); // short checksum
        check_route("ory_ak_v1_1111111111111111111111_1111111111", false); // identifier decodes to junk
        check_route(&format!("{k}0"), false); // '0' is not base58
        check_route("eyJhbGciOiJFZERTQSJ9.e30.sig", false);
    }

    #[test]
    fn timestamp_rule() {
        let day = 86_400;
        assert!(timestamp_in_range(TS, TS, 365 * day, 300));
        assert!(timestamp_in_range(TS + 300, TS, 365 * day, 300));
        assert!(!timestamp_in_range(TS + 301, TS, 365 * day, 300));
        assert!(timestamp_in_range(TS - 365 * day - 300, TS, 365 * day, 300));
        assert!(!timestamp_in_range(TS - 365 * day - 301, TS, 365 * day, 300));
        assert!(!timestamp_in_range(i64::MIN, TS, 365 * day, 300));
        assert!(!timestamp_in_range(i64::MAX, TS, 365 * day, 300));
    }

    #[test]
    fn imported_hash_is_sha512_256() {
        // SHA-512/256("abc") from FIPS 180-4's examples, with our nid framing removed: check the
        // primitive first, then the framing.
        let digest: [u8; 32] = Sha512_256::digest(b"abc").into();
        assert_eq!(hex32(&digest), "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23");
        let id = imported_key_id(NIL_NID, b"my-legacy-key");
        let mut framed = NIL_NID.as_bytes().to_vec();
        framed.push(0);
        framed.extend_from_slice(b"my-legacy-key");
        assert_eq!(id, <[u8; 32]>::from(Sha512_256::digest(&framed)));
        assert_eq!(parse_hex32(&hex32(&id)), Some(id));
        assert_eq!(parse_hex32("zz"), None);
    }

    proptest! {
        #[test]
        fn round_trip(ts in 0i64..4_000_000_000, id in any::<u128>(), prefix in "[a-zA-Z0-9][a-zA-Z0-9_]{0,15}") {
            let key_id = Uuid::from_u128(id);
            let k = generate(&prefix, ts, key_id, &ring());
            let parsed = parse_issued(&k).unwrap();
            prop_assert_eq!(parsed.prefix, prefix.as_str());
            prop_assert_eq!(parsed.timestamp, ts);
            prop_assert_eq!(parsed.key_id, key_id);
            prop_assert!(checksum_matches(&parsed, &ring(), ts));
        }

        #[test]
        fn any_single_change_fails(pos in any::<prop::sample::Index>(), replacement in any::<char>()) {
            let k = key();
            let i = pos.index(k.len());
            let original = k.as_bytes()[i] as char;
            prop_assume!(replacement != original);
            let mut changed = k[..i].to_string();
            changed.push(replacement);
            changed.push_str(&k[i + 1..]);
            if let Some(parsed) = parse_issued(&changed) {
                prop_assert!(!checksum_matches(&parsed, &ring(), TS));
            }
        }

        #[test]
        fn arbitrary_input_never_panics(s in ".{0,300}") {
            if let Some(parsed) = parse_issued(&s) {
                let _ = checksum_matches(&parsed, &ring(), TS);
            }
        }
    }
}
