//! API key verification (talos-api.md §4.8), shared by both planes so their answers are
//! byte-identical.
//!
//! Verification has two stages. [`Verifier::precheck`] routes a credential and runs every CPU
//! check (format, checksum under the active secrets, issue timestamp, prefix allow-list),
//! producing the id to look up. [`judge`] then decides from what the lookup found (a
//! [`VerifyEntry`]). The data plane looks up in its snapshot, the admin plane in the store; both
//! render with the same bytes. A rejected key is a value ([`Rejection`]), not an error.
//!
//! Both stages are allocation-free: valid answers are rendered once, when the entry is built.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::clock::{format_rfc3339, secs, Nanos};
use crate::config::Config;
use crate::key::{self, Keyring, NIL_NID};
use crate::model::{KeyKind, KeyRecord, KeyStatus};

/// Largest credential accepted (decisions.md §5.7).
pub const MAX_CREDENTIAL_LEN: usize = 8192;
/// Most credentials in one batch verify.
pub const MAX_BATCH_VERIFY: usize = 100;

/// A batch verify answer is these bytes around the comma-separated single answers.
pub const BATCH_OPEN: &[u8] = b"{\"results\":[";
pub const BATCH_CLOSE: &[u8] = b"]}";

/// The client's socket address, carried in request extensions from any transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Why a credential does not verify. Each maps to its `error_code` and message in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Empty or unusable credential.
    InvalidFormat,
    /// Unknown, forged, foreign-prefix or out-of-range key: indistinguishable on purpose.
    NotFound,
    Revoked,
    Expired,
    /// `expected_audiences` was given; API keys carry no audience (decisions.md §5.12).
    AudienceMismatch,
}

macro_rules! rejection_body {
    ($code:literal, $message:literal) => {
        concat!(r#"{"is_valid":false,"error_code":""#, $code, r#"","error_message":""#, $message, r#""}"#)
    };
}

impl Rejection {
    pub fn error_code(self) -> &'static str {
        match self {
            Rejection::InvalidFormat => "VERIFICATION_ERROR_INVALID_FORMAT",
            Rejection::NotFound => "VERIFICATION_ERROR_NOT_FOUND",
            Rejection::Revoked => "VERIFICATION_ERROR_REVOKED",
            Rejection::Expired => "VERIFICATION_ERROR_EXPIRED",
            Rejection::AudienceMismatch => "VERIFICATION_ERROR_AUDIENCE_MISMATCH",
        }
    }

    /// The whole `VerifyApiKeyResponse` body for this rejection.
    pub fn body(self) -> &'static [u8] {
        match self {
            Rejection::InvalidFormat => {
                rejection_body!("VERIFICATION_ERROR_INVALID_FORMAT", "A credential is required.").as_bytes()
            }
            Rejection::NotFound => {
                rejection_body!("VERIFICATION_ERROR_NOT_FOUND", "The API key was not found.").as_bytes()
            }
            Rejection::Revoked => {
                rejection_body!("VERIFICATION_ERROR_REVOKED", "The API key has been revoked.").as_bytes()
            }
            Rejection::Expired => rejection_body!("VERIFICATION_ERROR_EXPIRED", "The API key has expired.").as_bytes(),
            Rejection::AudienceMismatch => rejection_body!(
                "VERIFICATION_ERROR_AUDIENCE_MISMATCH",
                "The credential does not carry any of the expected audiences."
            )
            .as_bytes(),
        }
    }
}

/// What to look up for a credential that passed the CPU checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupId {
    Issued(Uuid),
    /// SHA-512/256 of nid and raw key.
    Imported([u8; 32]),
}

impl LookupId {
    pub fn kind(self) -> KeyKind {
        match self {
            LookupId::Issued(_) => KeyKind::Issued,
            LookupId::Imported(_) => KeyKind::Imported,
        }
    }

    /// The key id as the store spells it.
    pub fn key_id(self) -> String {
        match self {
            LookupId::Issued(id) => id.hyphenated().to_string(),
            LookupId::Imported(digest) => key::hex32(&digest),
        }
    }
}

/// Everything verification needs of one key, with the valid answer pre-rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyEntry {
    pub revoked: bool,
    pub expire_time: Nanos,
    /// The `VerifyApiKeyResponse` body for a successful verification.
    pub valid_body: Box<[u8]>,
}

impl VerifyEntry {
    pub fn from_record(record: &KeyRecord, issuer: &str) -> Self {
        Self {
            revoked: record.status == KeyStatus::Revoked,
            expire_time: record.expire_time,
            valid_body: render_valid(record, issuer).into_boxed_slice(),
        }
    }
}

/// The successful `VerifyApiKeyResponse` for `record`.
fn render_valid(record: &KeyRecord, issuer: &str) -> Vec<u8> {
    let mut v = Map::new();
    v.insert("is_valid".into(), true.into());
    v.insert("key_id".into(), record.key_id.clone().into());
    if !record.actor_id.is_empty() {
        v.insert("actor_id".into(), record.actor_id.clone().into());
    }
    v.insert("scopes".into(), record.scopes.clone().into());
    v.insert("metadata".into(), record.metadata.clone().into());
    v.insert("expire_time".into(), format_rfc3339(record.expire_time).into());
    v.insert("status".into(), KeyStatus::Active.as_str().into());
    v.insert("visibility".into(), record.visibility.as_str().into());
    v.insert("issuer".into(), issuer.into());
    if let Some(p) = &record.rate_limit_policy {
        v.insert("rate_limit_policy".into(), p.to_json());
    }
    serde_json::to_vec(&Value::Object(v)).expect("a JSON value serialises")
}

/// Decides a looked-up key: revocation is checked before expiry (§4.8 step 6).
pub fn judge(entry: Option<&VerifyEntry>, now: Nanos) -> Result<&[u8], Rejection> {
    let entry = entry.ok_or(Rejection::NotFound)?;
    if entry.revoked {
        return Err(Rejection::Revoked);
    }
    if entry.expire_time <= now {
        return Err(Rejection::Expired);
    }
    Ok(&entry.valid_body)
}

/// The CPU stage of verification, configured once from [`Config`].
#[derive(Debug, Clone)]
pub struct Verifier {
    pub keyring: Keyring,
    allowed_prefixes: Vec<String>,
    max_ttl_secs: i64,
    skew_secs: i64,
    pub issuer: String,
}

impl Verifier {
    pub fn new(config: &Config) -> Self {
        let hmac = &config.secrets.hmac;
        let retired = hmac.retired.iter().map(|r| {
            let expires = r.expires_at.map(|t| t.unix_timestamp());
            (r.value.expose().as_bytes().to_vec(), expires)
        });
        let prefixes = &config.credentials.api_keys.prefix;
        let mut allowed_prefixes = vec![prefixes.current.clone()];
        allowed_prefixes.extend(prefixes.public_current.iter().cloned());
        allowed_prefixes.extend(prefixes.retired.iter().cloned());
        allowed_prefixes.extend(prefixes.public_retired.iter().cloned());
        Self {
            keyring: Keyring::new(hmac.current.expose().as_bytes(), retired),
            allowed_prefixes,
            max_ttl_secs: i64::try_from(config.credentials.api_keys.max_ttl.as_secs()).unwrap_or(i64::MAX),
            skew_secs: i64::try_from(config.credentials.clock_skew.as_secs()).unwrap_or(i64::MAX),
            issuer: config.credentials.issuer.clone(),
        }
    }

    /// Routes `credential` and runs the CPU checks; `Ok` names what to look up.
    pub fn precheck(&self, credential: &str, now: Nanos) -> Result<LookupId, Rejection> {
        if credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
            return Err(Rejection::InvalidFormat);
        }
        let Some(parsed) = key::parse_issued(credential) else {
            return Ok(LookupId::Imported(key::imported_key_id(NIL_NID, credential.as_bytes())));
        };
        let now_secs = secs(now);
        if !key::checksum_matches(&parsed, &self.keyring, now_secs)
            || !key::timestamp_in_range(parsed.timestamp, now_secs, self.max_ttl_secs, self.skew_secs)
            || !self.allowed_prefixes.iter().any(|p| p == parsed.prefix)
        {
            return Err(Rejection::NotFound);
        }
        Ok(LookupId::Issued(parsed.key_id))
    }

    /// The complete verification with a caller-supplied lookup.
    pub fn verify<'e>(
        &self,
        credential: &str,
        expects_audience: bool,
        now: Nanos,
        lookup: impl FnOnce(LookupId) -> Option<&'e VerifyEntry>,
    ) -> Result<&'e [u8], Rejection> {
        let id = self.precheck(credential, now)?;
        let body = judge(lookup(id), now)?;
        if expects_audience {
            return Err(Rejection::AudienceMismatch);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_bodies_are_json() {
        for r in [
            Rejection::InvalidFormat,
            Rejection::NotFound,
            Rejection::Revoked,
            Rejection::Expired,
            Rejection::AudienceMismatch,
        ] {
            let v: Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(v["is_valid"], false);
            assert_eq!(v["error_code"], r.error_code());
        }
    }

    #[test]
    fn judge_checks_revocation_before_expiry() {
        let entry = |revoked, expire_time| VerifyEntry { revoked, expire_time, valid_body: Box::from(&b"ok"[..]) };
        assert_eq!(judge(None, 5), Err(Rejection::NotFound));
        assert_eq!(judge(Some(&entry(true, 1)), 5), Err(Rejection::Revoked));
        assert_eq!(judge(Some(&entry(false, 5)), 5), Err(Rejection::Expired));
        assert_eq!(judge(Some(&entry(false, 6)), 5), Ok(&b"ok"[..]));
    }
}
