//! The stored key record, the wire enums, and the JSON request and resource models of the
//! `v2alpha1` API (talos-api.md §2), exactly as the Ory SDKs send and expect them: snake_case
//! fields, enums as their string names, int64 as strings, RFC 3339 times, protobuf durations.
//!
//! Request models borrow nothing and ignore unknown fields (decisions.md §5.9); a known field of the
//! wrong type is a 400. Rendering the verify answer lives in `verify`, not here.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::clock::{format_rfc3339, Nanos};
use crate::duration::{format_proto_duration, parse_duration};

/// Defines a wire enum: serialised as its name, deserialised from its name or its number, the way
/// protojson does.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $num:literal => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name { #[default] $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $wire),+ } }
            pub fn number(self) -> i64 { match self { $($name::$variant => $num),+ } }
            pub fn from_name(s: &str) -> Option<Self> { match s { $($wire => Some($name::$variant),)+ _ => None } }
            pub fn from_number(n: i64) -> Option<Self> { match n { $($num => Some($name::$variant),)+ _ => None } }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                match Value::deserialize(d)? {
                    Value::String(s) => Self::from_name(&s)
                        .ok_or_else(|| de::Error::custom(format!("unknown {} value \"{}\"", stringify!($name), s))),
                    Value::Number(n) => n.as_i64().and_then(Self::from_number)
                        .ok_or_else(|| de::Error::custom(format!("unknown {} number {}", stringify!($name), n))),
                    other => Err(de::Error::custom(format!("{} must be a string, got {}", stringify!($name), other))),
                }
            }
        }
    };
}

wire_enum!(
    /// Stored status; EXPIRED is computed at read time and never stored.
    KeyStatus {
        Unspecified = 0 => "KEY_STATUS_UNSPECIFIED",
        Active = 1 => "KEY_STATUS_ACTIVE",
        Revoked = 2 => "KEY_STATUS_REVOKED",
        Expired = 3 => "KEY_STATUS_EXPIRED",
    }
);

wire_enum!(Visibility {
    Unspecified = 0 => "KEY_VISIBILITY_UNSPECIFIED",
    Secret = 1 => "KEY_VISIBILITY_SECRET",
    Public = 2 => "KEY_VISIBILITY_PUBLIC",
});

wire_enum!(RevocationReason {
    Unspecified = 0 => "REVOCATION_REASON_UNSPECIFIED",
    KeyCompromise = 1 => "REVOCATION_REASON_KEY_COMPROMISE",
    AffiliationChanged = 2 => "REVOCATION_REASON_AFFILIATION_CHANGED",
    Superseded = 3 => "REVOCATION_REASON_SUPERSEDED",
    PrivilegeWithdrawn = 4 => "REVOCATION_REASON_PRIVILEGE_WITHDRAWN",
});

wire_enum!(TokenAlgorithm {
    Unspecified = 0 => "TOKEN_ALGORITHM_UNSPECIFIED",
    Jwt = 1 => "TOKEN_ALGORITHM_JWT",
    Macaroon = 2 => "TOKEN_ALGORITHM_MACAROON",
});

/// Which table a key lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Issued,
    Imported,
}

impl KeyKind {
    pub fn collection(self) -> &'static str {
        match self {
            KeyKind::Issued => "issuedApiKeys",
            KeyKind::Imported => "importedApiKeys",
        }
    }
}

/// A per-key rate-limit policy (stored and advertised; §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitPolicy {
    pub quota: u64,
    pub window_secs: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

impl RateLimitPolicy {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(RateLimitPolicyIn::from(self)).expect("a policy serialises")
    }
}

/// Revoked keys stay readable at least this long after the revocation.
pub const REVOKED_RETENTION: Nanos = 30 * 24 * 3600 * crate::clock::NANOS_PER_SEC;

/// Everything stored about one key. The secret or raw key is never part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kind: KeyKind,
    pub key_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub actor_id: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    pub status: KeyStatus,
    pub visibility: Visibility,
    /// The prefix the key was generated with (issued keys only).
    #[serde(default)]
    pub token_prefix: String,
    pub create_time: Nanos,
    pub update_time: Nanos,
    pub expire_time: Nanos,
    #[serde(default)]
    pub last_used_time: Option<Nanos>,
    #[serde(default)]
    pub rate_limit_policy: Option<RateLimitPolicy>,
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    #[serde(default)]
    pub revocation_reason: RevocationReason,
    #[serde(default)]
    pub revocation_description: String,
    /// When a revocation takes effect; later than the revoke only for a rotation with a grace
    /// period. `None` with status REVOKED: effective since the revoke.
    #[serde(default)]
    pub revocation_effective_time: Option<Nanos>,
    #[serde(default)]
    pub request_id: Option<String>,
}

impl KeyRecord {
    /// A record with every field empty, to build from with `..KeyRecord::empty(kind)`.
    pub fn empty(kind: KeyKind) -> Self {
        KeyRecord {
            kind,
            key_id: String::new(),
            name: String::new(),
            actor_id: String::new(),
            scopes: Vec::new(),
            metadata: Map::new(),
            status: KeyStatus::Active,
            visibility: Visibility::Secret,
            token_prefix: String::new(),
            create_time: 0,
            update_time: 0,
            expire_time: 0,
            last_used_time: None,
            rate_limit_policy: None,
            allowed_cidrs: Vec::new(),
            revocation_reason: RevocationReason::Unspecified,
            revocation_description: String::new(),
            revocation_effective_time: None,
            request_id: None,
        }
    }

    /// Marks the record revoked, effective now or at `effective` (a rotation's grace period), and
    /// keeps it readable for at least [`REVOKED_RETENTION`] (talos-api.md §4.5).
    pub fn revoke(&mut self, reason: RevocationReason, description: String, effective: Option<Nanos>, now: Nanos) {
        self.status = KeyStatus::Revoked;
        self.revocation_reason = reason;
        self.revocation_description = description;
        self.revocation_effective_time = effective;
        self.expire_time = self.expire_time.max(now.saturating_add(REVOKED_RETENTION));
        self.update_time = now;
    }

    /// Whether the key was rotated with a grace period that has not ended: stored REVOKED, yet
    /// still verifying until its revocation takes effect.
    pub fn in_grace(&self, now: Nanos) -> bool {
        self.status == KeyStatus::Revoked && self.revocation_effective_time.is_some_and(|at| at > now)
    }

    /// The status a client sees at `now`: stored REVOKED wins, then a passed expiry reads EXPIRED.
    pub fn status_at(&self, now: Nanos) -> KeyStatus {
        match self.status {
            KeyStatus::Revoked => KeyStatus::Revoked,
            _ if self.expire_time <= now => KeyStatus::Expired,
            _ => KeyStatus::Active,
        }
    }

    /// The API resource (`IssuedApiKey` / `ImportedApiKey`).
    pub fn to_api_key(&self, now: Nanos) -> ApiKey {
        ApiKey {
            key_id: self.key_id.clone(),
            name: self.name.clone(),
            actor_id: self.actor_id.clone(),
            scopes: self.scopes.clone(),
            metadata: self.metadata.clone(),
            status: self.status_at(now),
            visibility: self.visibility,
            create_time: format_rfc3339(self.create_time),
            update_time: format_rfc3339(self.update_time),
            expire_time: format_rfc3339(self.expire_time),
            last_used_time: self.last_used_time.map(format_rfc3339),
            rate_limit_policy: self.rate_limit_policy.as_ref().map(RateLimitPolicyIn::from),
            ip_restriction: (!self.allowed_cidrs.is_empty())
                .then(|| IpRestrictionIn { allowed_cidrs: Some(self.allowed_cidrs.clone()) }),
            revocation_reason: self.revocation_reason,
            revocation_description: self.revocation_description.clone(),
        }
    }

    /// The API resource as JSON.
    pub fn to_resource(&self, now: Nanos) -> Value {
        serde_json::to_value(self.to_api_key(now)).expect("a resource serialises")
    }
}

/// A duration field of a request: protobuf (`"3600s"`) or Go/Ory (`"24h"`, `"30d"`) form, with
/// the sign kept because a negative ttl means "use the default" (§4.1). Written back in the
/// protobuf form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireDuration {
    pub negative: bool,
    pub value: std::time::Duration,
}

impl std::str::FromStr for WireDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let value = parse_duration(body).map_err(|e| format!("invalid duration \"{s}\": {e}"))?;
        Ok(WireDuration { negative, value })
    }
}

impl<'de> Deserialize<'de> for WireDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl Serialize for WireDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sign = if self.negative { "-" } else { "" };
        s.collect_str(&format_args!("{sign}{}", format_proto_duration(self.value)))
    }
}

/// An int64 that protojson carries as a string but clients may send as a number. Written as a
/// string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireU64(pub u64);

impl<'de> Deserialize<'de> for WireU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => {
                s.parse().map(WireU64).map_err(|_| de::Error::custom(format!("invalid integer \"{s}\"")))
            }
            Value::Number(n) => {
                n.as_u64().map(WireU64).ok_or_else(|| de::Error::custom(format!("invalid integer {n}")))
            }
            other => Err(de::Error::custom(format!("expected an integer, got {other}"))),
        }
    }
}

impl Serialize for WireU64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `RateLimitPolicy` on the wire, in requests and in resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitPolicyIn {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<WireU64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl From<&RateLimitPolicy> for RateLimitPolicyIn {
    fn from(p: &RateLimitPolicy) -> Self {
        RateLimitPolicyIn {
            quota: Some(WireU64(p.quota)),
            window: Some(WireDuration { negative: false, value: std::time::Duration::from_secs(p.window_secs) }),
            unit: (!p.unit.is_empty()).then(|| p.unit.clone()),
        }
    }
}

/// `IPRestriction` on the wire, in requests and in resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRestrictionIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
}

/// `IssueApiKeyRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IssueRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_policy: Option<RateLimitPolicyIn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_restriction: Option<IpRestrictionIn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `ImportApiKeyRequest`: an issue request plus the raw key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_key: Option<String>,
    #[serde(flatten)]
    pub fields: IssueRequest,
}

/// `BatchCreateImportedApiKeysRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchImportRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Vec<Option<ImportRequest>>>,
}

/// `AdminRotateIssuedApiKeyBody`, plus talos's `grace_period` extension.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RotateRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_policy: Option<RateLimitPolicyIn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_restriction: Option<IpRestrictionIn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// How long the old key keeps verifying (never past its own expiry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<WireDuration>,
}

/// `AdminUpdateIssuedApiKeyRequest` / `AdminUpdateImportedApiKeyRequest` as a client sends it:
/// the fields to change, with `update_mask` naming them. The admin plane reads the body as a
/// JSON object instead, because a masked field's absence (clear it) matters there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_policy: Option<RateLimitPolicyIn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_restriction: Option<IpRestrictionIn>,
}

impl UpdateRequest {
    /// The `update_mask` paths (talos-api.md §4.4).
    pub const PATHS: [&'static str; 5] = ["name", "scopes", "metadata", "rate_limit_policy", "ip_restriction"];

    /// The paths of the fields this request sets, in [`Self::PATHS`] order.
    pub fn present_paths(&self) -> Vec<&'static str> {
        let present = [
            self.name.is_some(),
            self.scopes.is_some(),
            self.metadata.is_some(),
            self.rate_limit_policy.is_some(),
            self.ip_restriction.is_some(),
        ];
        Self::PATHS.iter().zip(present).filter(|(_, set)| *set).map(|(path, _)| *path).collect()
    }
}

/// `DeriveTokenRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeriveRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<TokenAlgorithm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<WireDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_claims: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
}

/// `AdminRevokeIssuedApiKeyBody` / `AdminRevokeImportedApiKeyBody`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RevokeRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RevocationReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `VerifyApiKeyRequest` as the admin plane reads it (the data plane borrows instead).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_audiences: Option<Vec<String>>,
}

/// `BatchVerifyApiKeysRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchVerifyRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Vec<Option<VerifyRequest>>>,
}

/// `IssuedApiKey` / `ImportedApiKey` (talos-api.md §2.3): a key as the API shows it. The admin
/// plane renders every resource through this struct ([`KeyRecord::to_resource`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub key_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor_id: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub status: KeyStatus,
    #[serde(default)]
    pub visibility: Visibility,
    #[serde(default)]
    pub create_time: String,
    #[serde(default)]
    pub update_time: String,
    #[serde(default)]
    pub expire_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_policy: Option<RateLimitPolicyIn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_restriction: Option<IpRestrictionIn>,
    #[serde(default, skip_serializing_if = "RevocationReason::is_unspecified")]
    pub revocation_reason: RevocationReason,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revocation_description: String,
}

impl RevocationReason {
    fn is_unspecified(&self) -> bool {
        *self == RevocationReason::Unspecified
    }
}

/// `IssueApiKeyResponse`; `secret` is absent when an idempotent replay returns an existing key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IssueResponse {
    pub issued_api_key: ApiKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `RotateIssuedApiKeyResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RotateResponse {
    pub issued_api_key: ApiKey,
    pub old_issued_api_key: ApiKey,
    pub secret: String,
}

/// `ListIssuedApiKeysResponse` / `ListImportedApiKeysResponse`: exactly one of the lists is sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_api_keys: Option<Vec<ApiKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_api_keys: Option<Vec<ApiKey>>,
    #[serde(default)]
    pub next_page_token: String,
}

/// One `BatchCreateImportedApiKeysResult`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchImportResult {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_api_key: Option<ApiKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// `BatchCreateImportedApiKeysResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchImportResponse {
    pub results: Vec<BatchImportResult>,
    pub success_count: usize,
    pub failure_count: usize,
}

/// `VerifyApiKeyResponse` (talos-api.md §4.8), as clients read it. The planes render it from
/// pre-built bytes (`verify`); a test there checks those bytes against this model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub is_valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<KeyStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_policy: Option<RateLimitPolicyIn>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
}

/// `DerivedToken`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DerivedToken {
    pub token: String,
    #[serde(default)]
    pub expire_time: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub audiences: Vec<String>,
}

/// `DeriveTokenResponse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeriveResponse {
    pub token: DerivedToken,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_accept_names_and_numbers() {
        let v: Visibility = serde_json::from_str("\"KEY_VISIBILITY_PUBLIC\"").unwrap();
        assert_eq!(v, Visibility::Public);
        let r: RevocationReason = serde_json::from_str("3").unwrap();
        assert_eq!(r, RevocationReason::Superseded);
        assert!(serde_json::from_str::<Visibility>("\"PUBLIC\"").is_err());
        assert!(serde_json::from_str::<Visibility>("true").is_err());
        assert_eq!(serde_json::to_string(&KeyStatus::Revoked).unwrap(), "\"KEY_STATUS_REVOKED\"");
    }

    #[test]
    fn durations_and_int64() {
        let d: WireDuration = serde_json::from_str("\"3600s\"").unwrap();
        assert_eq!(d.value.as_secs(), 3600);
        let d: WireDuration = serde_json::from_str("\"-1s\"").unwrap();
        assert!(d.negative);
        assert!(serde_json::from_str::<WireDuration>("\"5\"").is_err());
        assert!(serde_json::from_str::<WireDuration>("5").is_err());
        assert_eq!(serde_json::from_str::<WireU64>("\"1000\"").unwrap(), WireU64(1000));
        assert_eq!(serde_json::from_str::<WireU64>("1000").unwrap(), WireU64(1000));
        assert!(serde_json::from_str::<WireU64>("\"-1\"").is_err());
    }

    #[test]
    fn wire_scalars_write_back_in_protojson_form() {
        for (text, written) in [("3600s", "3600s"), ("24h", "86400s"), ("-1s", "-1s"), ("1.5s", "1.5s")] {
            let d: WireDuration = text.parse().unwrap();
            assert_eq!(serde_json::to_value(d).unwrap(), written, "{text}");
            assert_eq!(serde_json::from_value::<WireDuration>(written.into()).unwrap(), d, "{text}");
        }
        assert!("5".parse::<WireDuration>().is_err());
        assert_eq!(serde_json::to_value(WireU64(1000)).unwrap(), "1000");
    }

    #[test]
    fn resource_wire_shape() {
        let record = KeyRecord {
            key_id: "k".into(),
            name: "n".into(),
            actor_id: "a".into(),
            scopes: vec!["read".into()],
            metadata: serde_json::from_str(r#"{"env":"prod"}"#).unwrap(),
            create_time: 1_000_000_000,
            update_time: 2_000_000_000,
            expire_time: 4_000_000_000,
            last_used_time: Some(3_000_000_000),
            rate_limit_policy: Some(RateLimitPolicy { quota: 10, window_secs: 60, unit: String::new() }),
            allowed_cidrs: vec!["10.0.0.0/8".into()],
            ..KeyRecord::empty(KeyKind::Issued)
        };
        let mut revoked = record.clone();
        revoked.revoke(RevocationReason::PrivilegeWithdrawn, "why".into(), None, 3_000_000_000);
        let expected = serde_json::json!({
            "key_id": "k", "name": "n", "actor_id": "a", "scopes": ["read"], "metadata": {"env": "prod"},
            "status": "KEY_STATUS_ACTIVE", "visibility": "KEY_VISIBILITY_SECRET",
            "create_time": "1970-01-01T00:00:01Z", "update_time": "1970-01-01T00:00:02Z",
            "expire_time": "1970-01-01T00:00:04Z", "last_used_time": "1970-01-01T00:00:03Z",
            "rate_limit_policy": {"quota": "10", "window": "60s"},
            "ip_restriction": {"allowed_cidrs": ["10.0.0.0/8"]},
        });
        assert_eq!(record.to_resource(3_000_000_000), expected);
        let resource = revoked.to_resource(3_000_000_000);
        assert_eq!(resource["status"], "KEY_STATUS_REVOKED");
        assert_eq!(resource["revocation_reason"], "REVOCATION_REASON_PRIVILEGE_WITHDRAWN");
        assert_eq!(resource["revocation_description"], "why");
        // Empty optional fields are left out, as before.
        let bare = KeyRecord { key_id: "k".into(), ..KeyRecord::empty(KeyKind::Imported) }.to_resource(0);
        let keys: Vec<&str> = bare.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["create_time", "expire_time", "key_id", "metadata", "scopes", "status", "update_time", "visibility"]
        );
        // A client reads the resource back into the same model.
        let read: ApiKey = serde_json::from_value(resource).unwrap();
        assert_eq!(read, revoked.to_api_key(3_000_000_000));
    }

    #[test]
    fn requests_round_trip_without_absent_fields() {
        let issue = IssueRequest {
            name: Some("ci".into()),
            scopes: Some(vec!["read".into()]),
            ttl: Some("24h".parse().unwrap()),
            rate_limit_policy: Some(RateLimitPolicyIn {
                quota: Some(WireU64(5)),
                window: Some("1m".parse().unwrap()),
                unit: None,
            }),
            visibility: Some(Visibility::Public),
            ..Default::default()
        };
        let json = serde_json::to_value(ImportRequest { raw_key: Some("raw".into()), fields: issue }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"raw_key": "raw", "name": "ci", "scopes": ["read"], "ttl": "86400s",
                "rate_limit_policy": {"quota": "5", "window": "60s"}, "visibility": "KEY_VISIBILITY_PUBLIC"})
        );
        let read: ImportRequest = serde_json::from_value(json).unwrap();
        assert_eq!(read.fields.ttl.unwrap().value.as_secs(), 86400);
        assert_eq!(serde_json::to_string(&RevokeRequest::default()).unwrap(), "{}");
        let update =
            UpdateRequest { scopes: Some(vec![]), ip_restriction: Some(Default::default()), ..Default::default() };
        assert_eq!(update.present_paths(), ["scopes", "ip_restriction"]);
        assert_eq!(serde_json::to_value(&update).unwrap(), serde_json::json!({"scopes": [], "ip_restriction": {}}));
    }

    #[test]
    fn unknown_fields_are_ignored_wrong_types_are_not() {
        let r: IssueRequest = serde_json::from_str(r#"{"name":"a","future_field":1}"#).unwrap();
        assert_eq!(r.name.as_deref(), Some("a"));
        assert!(serde_json::from_str::<IssueRequest>(r#"{"name":5}"#).is_err());
        assert!(serde_json::from_str::<IssueRequest>(r#"{"scopes":"a"}"#).is_err());
    }
}
