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

use std::net::IpAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::clock::{format_rfc3339, secs, Nanos};
use crate::config::{ClientIpSource, Config};
use crate::key::{self, Keyring, ParsedKey, NIL_NID};
use crate::last_used::LastUsed;
use crate::model::{KeyKind, KeyRecord, KeyStatus};
use crate::token::DerivedTokens;

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
    /// The key has an IP allowlist and the client address is not on it (or unknown).
    IpNotAllowed,
    /// A derived token whose signature, issuer or validity window does not check out.
    SignatureInvalid,
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
            Rejection::IpNotAllowed => "VERIFICATION_ERROR_IP_NOT_ALLOWED",
            Rejection::SignatureInvalid => "VERIFICATION_ERROR_SIGNATURE_INVALID",
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
            Rejection::IpNotAllowed => {
                rejection_body!("VERIFICATION_ERROR_IP_NOT_ALLOWED", "The request IP is not allowed for this API key.")
                    .as_bytes()
            }
            Rejection::SignatureInvalid => {
                rejection_body!("VERIFICATION_ERROR_SIGNATURE_INVALID", "Signature verification failed.").as_bytes()
            }
        }
    }
}

/// What to look up for a credential that passed the CPU checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug)]
pub struct VerifyEntry {
    pub id: LookupId,
    /// The UTC day (`last_used::day_of`) of the last recorded use; see `last_used`.
    pub last_used_day: AtomicI64,
    /// When the key stops verifying as revoked; `None` while it is not revoked. A key rotated
    /// with a grace period is revoked at the end of the grace period.
    pub revoked_at: Option<Nanos>,
    pub expire_time: Nanos,
    /// Empty: any client address.
    pub allowed_cidrs: Box<[IpNet]>,
    /// Issued keys: the issue second carried in the identifier.
    pub issued_at: i64,
    /// Everything a verify reads beyond the fields above, in one allocation and in the order it
    /// is read: the expected checksums ([`VerifyEntry::checksums`]), the header lines
    /// ([`VerifyEntry::valid_headers`]), then the body ([`VerifyEntry::valid_body`]). With a
    /// million keys nothing is in cache; one allocation read front to back costs one miss where
    /// separate ones cost one each.
    rendered: Box<[u8]>,
    headers_at: u32,
    body_at: u32,
}

/// Where verification finds keys: the snapshot (with its identifier index), or one record the
/// caller read from the store.
pub trait Lookup {
    fn by_id(&self, id: LookupId) -> Option<&VerifyEntry>;

    /// An issued key by its base58 identifier, where an index exists (the snapshot).
    fn by_identifier(&self, _identifier: &[u8]) -> Option<&VerifyEntry> {
        None
    }

    /// Whether [`Lookup::by_identifier`] indexes every issued key this lookup holds, so that an
    /// identifier it misses is not there at all.
    fn indexes_identifiers(&self) -> bool {
        false
    }
}

/// A lookup that already happened: the entry read from the store, if any.
pub struct Found<'a>(pub Option<&'a VerifyEntry>);

impl Lookup for Found<'_> {
    fn by_id(&self, _id: LookupId) -> Option<&VerifyEntry> {
        self.0
    }
}

impl VerifyEntry {
    /// Lays out `checksums`, `headers` and `body` in one allocation. (Private; its callers
    /// name every field, so the long parameter list reads as a struct literal would.)
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: LookupId,
        last_used_day: i64,
        revoked_at: Option<Nanos>,
        expire_time: Nanos,
        allowed_cidrs: Box<[IpNet]>,
        issued_at: i64,
        checksums: &[String],
        headers: &[u8],
        body: &[u8],
    ) -> Self {
        let mut rendered =
            Vec::with_capacity(checksums.iter().map(|c| c.len() + 1).sum::<usize>() + headers.len() + body.len());
        for checksum in checksums {
            // A base58 HMAC-SHA256 is 43 or 44 characters: its length fits a byte.
            rendered.push(u8::try_from(checksum.len()).expect("a checksum is shorter than 256 bytes"));
            rendered.extend_from_slice(checksum.as_bytes());
        }
        let headers_at = rendered.len();
        rendered.extend_from_slice(headers);
        let body_at = rendered.len();
        rendered.extend_from_slice(body);
        // A record's body is bounded (64 KiB of metadata, 100 scopes): far below 4 GiB.
        let offset = |at: usize| u32::try_from(at).expect("a rendered answer is smaller than 4 GiB");
        Self {
            id,
            last_used_day: AtomicI64::new(last_used_day),
            revoked_at,
            expire_time,
            allowed_cidrs,
            issued_at,
            headers_at: offset(headers_at),
            body_at: offset(body_at),
            rendered: rendered.into_boxed_slice(),
        }
    }

    /// The `VerifyApiKeyResponse` body for a successful verification.
    pub fn valid_body(&self) -> &[u8] {
        &self.rendered[self.body_at as usize..]
    }

    /// Header lines (`name: value\r\n`) for a successful single verify: `RateLimit-Policy`, and
    /// `Cache-Control: no-store` for keys with an IP allowlist (talos-api.md §1.4).
    pub fn valid_headers(&self) -> &[u8] {
        &self.rendered[self.headers_at as usize..self.body_at as usize]
    }

    /// Issued keys: the expected base58 checksum under each keyring secret (keyring order),
    /// computed once when the entry is built, so a verify needs neither HMAC nor base58.
    pub fn checksums(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = &self.rendered[..self.headers_at as usize];
        std::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let (checksum, tail) = tail.split_at(usize::from(len).min(tail.len()));
            rest = tail;
            Some(checksum)
        })
    }

    pub fn from_record(record: &KeyRecord, verifier: &Verifier) -> Self {
        let issuer = verifier.issuer.as_str();
        let revoked_at = match record.status {
            KeyStatus::Revoked => Some(record.revocation_effective_time.unwrap_or(Nanos::MIN)),
            _ => None,
        };
        // During a rotation grace period the key is valid only until the grace period ends.
        let valid_until = revoked_at.map_or(record.expire_time, |at| at.min(record.expire_time));
        let allowed_cidrs: Box<[IpNet]> = record.allowed_cidrs.iter().filter_map(|c| c.parse().ok()).collect();
        let mut valid_headers = String::new();
        if let Some(p) = record.rate_limit_policy.as_ref().filter(|p| p.quota > 0) {
            valid_headers.push_str(&format!("ratelimit-policy: \"default\";q={};w={}", p.quota, p.window_secs));
            if !p.unit.is_empty() && p.unit != "requests" {
                valid_headers.push_str(&format!(";qu=\"{}\"", p.unit));
            }
            valid_headers.push_str("\r\n");
        }
        if !allowed_cidrs.is_empty() {
            valid_headers.push_str("cache-control: no-store\r\n");
        }
        let id = match record.kind {
            KeyKind::Issued => LookupId::Issued(Uuid::parse_str(&record.key_id).unwrap_or_default()),
            KeyKind::Imported => LookupId::Imported(key::parse_hex32(&record.key_id).unwrap_or_default()),
        };
        let issued_at = secs(record.create_time);
        let checksums: Vec<String> = match id {
            LookupId::Issued(uuid) => {
                let identifier = key::identifier(issued_at, uuid);
                verifier
                    .keyring
                    .all()
                    .iter()
                    .map(|secret| key::checksum(&record.token_prefix, &identifier, secret))
                    .collect()
            }
            LookupId::Imported(_) => Vec::new(),
        };
        Self::new(
            id,
            record.last_used_time.map_or(i64::MIN, crate::last_used::day_of),
            revoked_at,
            record.expire_time,
            allowed_cidrs,
            issued_at,
            &checksums,
            valid_headers.as_bytes(),
            &render_valid(record, valid_until, issuer),
        )
    }

    /// The identifier an issued key's entry is indexed by in the snapshot.
    pub fn identifier(&self) -> Option<String> {
        match self.id {
            LookupId::Issued(uuid) => Some(key::identifier(self.issued_at, uuid)),
            LookupId::Imported(_) => None,
        }
    }
}

/// The successful `VerifyApiKeyResponse` for `record`.
fn render_valid(record: &KeyRecord, valid_until: Nanos, issuer: &str) -> Vec<u8> {
    let mut v = Map::new();
    v.insert("is_valid".into(), true.into());
    v.insert("key_id".into(), record.key_id.clone().into());
    if !record.actor_id.is_empty() {
        v.insert("actor_id".into(), record.actor_id.clone().into());
    }
    v.insert("scopes".into(), record.scopes.clone().into());
    v.insert("metadata".into(), record.metadata.clone().into());
    v.insert("expire_time".into(), format_rfc3339(valid_until).into());
    v.insert("status".into(), KeyStatus::Active.as_str().into());
    v.insert("visibility".into(), record.visibility.as_str().into());
    v.insert("issuer".into(), issuer.into());
    if let Some(p) = &record.rate_limit_policy {
        v.insert("rate_limit_policy".into(), p.to_json());
    }
    serde_json::to_vec(&Value::Object(v)).expect("a JSON value serialises")
}

/// Decides a looked-up key: revocation before expiry (§4.8 step 6), then the IP allowlist.
pub fn judge(entry: Option<&VerifyEntry>, now: Nanos, client_ip: Option<IpAddr>) -> Result<&VerifyEntry, Rejection> {
    let entry = entry.ok_or(Rejection::NotFound)?;
    if entry.revoked_at.is_some_and(|at| at <= now) {
        return Err(Rejection::Revoked);
    }
    if entry.expire_time <= now {
        return Err(Rejection::Expired);
    }
    if !entry.allowed_cidrs.is_empty() {
        let allowed = client_ip.is_some_and(|ip| entry.allowed_cidrs.iter().any(|net| net.contains(&ip)));
        if !allowed {
            return Err(Rejection::IpNotAllowed);
        }
    }
    Ok(entry)
}

/// How a presented credential is verified (talos-api.md §3.3, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A derived JWT (`eyJ….….…`).
    Jwt,
    /// A derived macaroon (`<macaroon prefix>_v1_…`).
    Macaroon,
    Issued(ParsedKey<'a>),
    /// Anything else is looked up as an imported key.
    Imported,
}

/// Whether `s` has the shape of a compact JWS: `eyJ` + three base64url segments.
pub fn looks_like_jwt(s: &str) -> bool {
    let is_b64 =
        |seg: &str| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let mut parts = s.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(sig), None) => h.starts_with("eyJ") && is_b64(h) && is_b64(p) && is_b64(sig),
        _ => false,
    }
}

fn is_macaroon(credential: &str, macaroon_prefixes: &[String]) -> bool {
    macaroon_prefixes.iter().any(|p| {
        credential.len() > p.len() + 4
            && credential.starts_with(p.as_str())
            && credential[p.len()..].starts_with("_v1_")
    })
}

/// Routes a credential; `macaroon_prefixes` are the current and retired macaroon prefixes.
pub fn route<'a>(credential: &'a str, macaroon_prefixes: &[String]) -> Route<'a> {
    if looks_like_jwt(credential) {
        return Route::Jwt;
    }
    if is_macaroon(credential, macaroon_prefixes) {
        return Route::Macaroon;
    }
    match key::parse_issued(credential) {
        Some(parsed) => Route::Issued(parsed),
        None => Route::Imported,
    }
}

/// The client address a verify is judged by (`serve.http.client_ip_source`). `header` looks up a
/// request header's value by lower-case name. Unparsable or absent headers give `None`, which
/// fails any IP allowlist (talos-api.md §4.8 step 8).
pub fn client_ip<'h>(
    source: ClientIpSource,
    peer: IpAddr,
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> Option<IpAddr> {
    let name = match source {
        ClientIpSource::RemoteAddr => return Some(peer),
        ClientIpSource::CfConnectingIp => "cf-connecting-ip",
        ClientIpSource::XForwardedFor => "x-forwarded-for",
        ClientIpSource::XRealIp => "x-real-ip",
        ClientIpSource::TrueClientIp => "true-client-ip",
    };
    let value = std::str::from_utf8(header(name)?).ok()?;
    // X-Forwarded-For lists the original client first.
    let first = value.split(',').next()?.trim();
    first.parse().ok()
}

/// The CPU stage of verification, configured once from [`Config`].
#[derive(Debug, Clone)]
pub struct Verifier {
    pub keyring: Keyring,
    allowed_prefixes: Vec<String>,
    max_ttl_secs: i64,
    skew_secs: i64,
    pub issuer: String,
    /// Current and retired macaroon prefixes, for routing.
    macaroon_prefixes: Vec<String>,
    pub client_ip_source: ClientIpSource,
    /// Derived-token minting and offline verification.
    pub derived: Arc<DerivedTokens>,
    /// Records successful verifications (`last_used_time`), when set.
    last_used: Option<Arc<LastUsed>>,
}

/// A successful verification: a key's entry (pre-rendered) or a derived token's answer.
#[derive(Debug)]
pub enum Answer<'e> {
    Key(&'e VerifyEntry),
    Derived(Vec<u8>),
}

impl Answer<'_> {
    pub fn body(&self) -> &[u8] {
        match self {
            Answer::Key(entry) => entry.valid_body(),
            Answer::Derived(body) => body,
        }
    }

    /// Header lines for a single verify's response.
    pub fn headers(&self) -> &[u8] {
        match self {
            Answer::Key(entry) => entry.valid_headers(),
            Answer::Derived(_) => &[],
        }
    }
}

impl Verifier {
    /// Builds the verifier; fails (naming the config key) when the signing keys do not load.
    pub fn new(config: &Config) -> Result<Self, String> {
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
        let keyring = Keyring::new(hmac.current.expose().as_bytes(), retired);
        let derived = Arc::new(DerivedTokens::new(config, &keyring)?);
        Ok(Self {
            derived,
            last_used: None,
            keyring,
            allowed_prefixes,
            // A zero max_ttl means "no maximum" (config.rs), so no issue time is too old.
            max_ttl_secs: match config.credentials.api_keys.max_ttl.as_secs() {
                0 => i64::MAX,
                secs => i64::try_from(secs).unwrap_or(i64::MAX),
            },
            skew_secs: i64::try_from(config.credentials.clock_skew.as_secs()).unwrap_or(i64::MAX),
            issuer: config.credentials.issuer.clone(),
            macaroon_prefixes: std::iter::once(&config.credentials.derived_tokens.macaroon_prefix)
                .chain(&config.credentials.derived_tokens.macaroon_prefix_retired)
                .cloned()
                .collect(),
            client_ip_source: config.serve.client_ip_source,
        })
    }

    /// Record `last_used_time` for keys this verifier accepts.
    pub fn with_last_used(mut self, last_used: Arc<LastUsed>) -> Self {
        self.last_used = Some(last_used);
        self
    }

    pub fn route<'a>(&self, credential: &'a str) -> Route<'a> {
        route(credential, &self.macaroon_prefixes)
    }

    /// `Some(Jwt | Macaroon)` when the credential routes as a derived token (cheap checks only).
    fn route_derived(&self, credential: &str) -> Option<Route<'static>> {
        if looks_like_jwt(credential) {
            Some(Route::Jwt)
        } else if is_macaroon(credential, &self.macaroon_prefixes) {
            Some(Route::Macaroon)
        } else {
            None
        }
    }

    /// Routes `credential` and runs the CPU checks; `Ok` names what to look up.
    pub fn precheck(&self, credential: &str, now: Nanos) -> Result<LookupId, Rejection> {
        if credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
            return Err(Rejection::InvalidFormat);
        }
        self.lookup_id(credential, self.route(credential), now)
    }

    /// The CPU checks of a routed credential (talos-api.md §4.8 step 4).
    fn lookup_id(&self, credential: &str, route: Route<'_>, now: Nanos) -> Result<LookupId, Rejection> {
        let parsed = match route {
            Route::Issued(parsed) => parsed,
            Route::Imported => return Ok(LookupId::Imported(key::imported_key_id(NIL_NID, credential.as_bytes()))),
            // Derived tokens are verified offline by `derived`, never looked up.
            Route::Jwt | Route::Macaroon => return Err(Rejection::NotFound),
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

    /// The complete verification of any credential. API keys are decided from `lookup` (the
    /// snapshot or the store); derived tokens offline.
    pub fn verify<'e>(
        &self,
        credential: &str,
        expected_audiences: &[&str],
        now: Nanos,
        client_ip: Option<IpAddr>,
        lookup: &'e dyn Lookup,
    ) -> Result<Answer<'e>, Rejection> {
        if credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
            return Err(Rejection::InvalidFormat);
        }
        if let Some(derived) = self.route_derived(credential) {
            let macaroon = matches!(derived, Route::Macaroon);
            return self.derived.verify(credential, macaroon, expected_audiences, now, client_ip).map(Answer::Derived);
        }
        // Fast path: an issued key found by its identifier is checked against the checksums
        // computed when its entry was built — the same HMAC, without redoing it per request.
        let indexed =
            key::split_issued(credential).and_then(|parts| Some((parts, lookup.by_identifier(parts.identifier)?)));
        let entry = match indexed {
            Some((parts, entry)) => {
                let now_secs = secs(now);
                let checksum_ok = self
                    .keyring
                    .all()
                    .iter()
                    .zip(entry.checksums())
                    .filter(|(secret, _)| secret.is_active(now_secs))
                    .fold(false, |ok, (_, expected)| ok | key::checksum_eq(parts.checksum, expected));
                if !checksum_ok
                    || !key::timestamp_in_range(entry.issued_at, now_secs, self.max_ttl_secs, self.skew_secs)
                    || !self.allowed_prefixes.iter().any(|p| p == parts.prefix)
                {
                    return Err(Rejection::NotFound);
                }
                Some(entry)
            }
            None => {
                // Derived tokens were ruled out above: only the issued/imported split is left.
                let route = key::parse_issued(credential).map_or(Route::Imported, Route::Issued);
                if lookup.indexes_identifiers() && matches!(route, Route::Issued(_)) {
                    // An issued key the identifier index misses is not held, whatever its
                    // checksum says: NOT_FOUND without spending an HMAC on a key that cannot
                    // verify (a flood of made-up keys costs little more than valid ones).
                    return Err(Rejection::NotFound);
                }
                let id = self.lookup_id(credential, route, now)?;
                lookup.by_id(id)
            }
        };
        let entry = judge(entry, now, client_ip)?;

        if !expected_audiences.is_empty() {
            return Err(Rejection::AudienceMismatch);
        }
        if let Some(last_used) = &self.last_used {
            last_used.touch(entry, now);
        }
        Ok(Answer::Key(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RateLimitPolicy, VerifyResponse, WireU64};

    #[test]
    fn rejection_bodies_are_json() {
        for r in [
            Rejection::InvalidFormat,
            Rejection::NotFound,
            Rejection::Revoked,
            Rejection::Expired,
            Rejection::AudienceMismatch,
            Rejection::IpNotAllowed,
            Rejection::SignatureInvalid,
        ] {
            let v: Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(v["is_valid"], false);
            assert_eq!(v["error_code"], r.error_code());
        }
    }

    #[test]
    fn rendered_answers_read_as_the_model() {
        let record = KeyRecord {
            key_id: "k".into(),
            actor_id: "a".into(),
            scopes: vec!["read".into()],
            rate_limit_policy: Some(RateLimitPolicy { quota: 10, window_secs: 60, unit: String::new() }),
            ..KeyRecord::empty(KeyKind::Issued)
        };
        let valid: VerifyResponse = serde_json::from_slice(&render_valid(&record, 1_000_000_000, "iss")).unwrap();
        assert!(valid.is_valid);
        assert_eq!((valid.key_id.as_str(), valid.actor_id.as_str()), ("k", "a"));
        assert_eq!(valid.scopes, ["read"]);
        assert_eq!(valid.status, Some(KeyStatus::Active));
        assert_eq!(valid.expire_time.as_deref(), Some("1970-01-01T00:00:01Z"));
        assert_eq!(valid.issuer.as_deref(), Some("iss"));
        assert_eq!(valid.rate_limit_policy.unwrap().quota, Some(WireU64(10)));
        let invalid: VerifyResponse = serde_json::from_slice(Rejection::Revoked.body()).unwrap();
        assert!(!invalid.is_valid);
        assert_eq!(invalid.error_code.as_deref(), Some(Rejection::Revoked.error_code()));
    }

    fn entry(revoked_at: Option<Nanos>, expire_time: Nanos, cidrs: &[&str]) -> VerifyEntry {
        let cidrs = cidrs.iter().map(|c| c.parse().unwrap()).collect();
        VerifyEntry::new(LookupId::Issued(Uuid::nil()), 0, revoked_at, expire_time, cidrs, 0, &[], b"", b"ok")
    }

    #[test]
    fn judge_order_revoked_expired_ip() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        fn ok(r: Result<&VerifyEntry, Rejection>) -> Result<&[u8], Rejection> {
            r.map(VerifyEntry::valid_body)
        }
        assert_eq!(ok(judge(None, 5, None)), Err(Rejection::NotFound));
        assert_eq!(ok(judge(Some(&entry(Some(1), 1, &[])), 5, None)), Err(Rejection::Revoked));
        // Revoked in the future (rotation grace period): still valid until then.
        assert_eq!(ok(judge(Some(&entry(Some(6), 10, &[])), 5, None)), Ok(&b"ok"[..]));
        assert_eq!(ok(judge(Some(&entry(Some(5), 10, &[])), 5, None)), Err(Rejection::Revoked));
        assert_eq!(ok(judge(Some(&entry(None, 5, &[])), 5, None)), Err(Rejection::Expired));
        assert_eq!(ok(judge(Some(&entry(None, 6, &[])), 5, None)), Ok(&b"ok"[..]));
        let restricted = entry(None, 6, &["10.0.0.0/8", "::1/128"]);
        assert_eq!(ok(judge(Some(&restricted), 5, ip("10.1.2.3"))), Ok(&b"ok"[..]));
        assert_eq!(ok(judge(Some(&restricted), 5, ip("::1"))), Ok(&b"ok"[..]));
        assert_eq!(ok(judge(Some(&restricted), 5, ip("11.0.0.1"))), Err(Rejection::IpNotAllowed));
        assert_eq!(ok(judge(Some(&restricted), 5, None)), Err(Rejection::IpNotAllowed));
    }

    #[test]
    fn routing() {
        let mc = vec!["mc".to_owned(), "old".to_owned()];
        assert_eq!(route("eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln", &mc), Route::Jwt);
        assert_eq!(route("eyJhbGci.eyJ4.c2ln.x", &mc), Route::Imported);
        assert_eq!(route("eyJhbGci..c2ln", &mc), Route::Imported);
        assert_eq!(route("mc_v1_AgEE", &mc), Route::Macaroon);
        assert_eq!(route("old_v1_AgEE", &mc), Route::Macaroon);
        assert_eq!(route("mc_v2_AgEE", &mc), Route::Imported);
        assert_eq!(route("my-legacy-key", &mc), Route::Imported);
    }

    /// `credentials.api_keys.max_ttl: 0` means no maximum; it used to reject every issued key
    /// older than `clock_skew` as not found.
    #[test]
    fn max_ttl_zero_does_not_age_out_keys() {
        let check = |max_ttl: &str, age_secs: i64| {
            let yaml = format!(
                "credentials: {{issuer: x, clock_skew: 0s, api_keys: {{max_ttl: {max_ttl}}}}}\n\
                 secrets: {{hmac: {{current: \"0123456789abcdef0123456789abcdef\"}}}}\n"
            );
            let (config, _) = Config::from_yaml_str(&yaml, &Vec::new()).expect("valid config");
            let verifier = Verifier::new(&config).expect("valid verifier");
            let now = crate::clock::now();
            let key = key::generate("ory_ak", secs(now) - age_secs, Uuid::new_v4(), &verifier.keyring);
            verifier.precheck(&key, now).map(|_| ())
        };
        assert_eq!(check("0s", 10 * 365 * 86_400), Ok(()));
        assert_eq!(check("1h", 3_600), Ok(()));
        assert_eq!(check("1h", 3_601), Err(Rejection::NotFound));
    }

    #[test]
    fn client_ip_sources() {
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let headers = |name: &str| match name {
            "x-forwarded-for" => Some(&b"203.0.113.7, 10.0.0.1"[..]),
            "x-real-ip" => Some(&b"not an ip"[..]),
            _ => None,
        };
        assert_eq!(client_ip(ClientIpSource::RemoteAddr, peer, headers), Some(peer));
        assert_eq!(client_ip(ClientIpSource::XForwardedFor, peer, headers), "203.0.113.7".parse().ok());
        assert_eq!(client_ip(ClientIpSource::XRealIp, peer, headers), None);
        assert_eq!(client_ip(ClientIpSource::CfConnectingIp, peer, headers), None);
    }
}
