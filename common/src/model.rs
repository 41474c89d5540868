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
        let mut v = Map::new();
        v.insert("quota".into(), self.quota.to_string().into());
        v.insert("window".into(), format_proto_duration(std::time::Duration::from_secs(self.window_secs)).into());
        if !self.unit.is_empty() {
            v.insert("unit".into(), self.unit.clone().into());
        }
        v.into()
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

    /// The status a client sees at `now`: stored REVOKED wins, then a passed expiry reads EXPIRED.
    pub fn status_at(&self, now: Nanos) -> KeyStatus {
        match self.status {
            KeyStatus::Revoked => KeyStatus::Revoked,
            _ if self.expire_time <= now => KeyStatus::Expired,
            _ => KeyStatus::Active,
        }
    }

    /// The API resource (`IssuedApiKey` / `ImportedApiKey`).
    pub fn to_resource(&self, now: Nanos) -> Value {
        let mut v = Map::new();
        v.insert("key_id".into(), self.key_id.clone().into());
        if !self.name.is_empty() {
            v.insert("name".into(), self.name.clone().into());
        }
        if !self.actor_id.is_empty() {
            v.insert("actor_id".into(), self.actor_id.clone().into());
        }
        v.insert("scopes".into(), self.scopes.clone().into());
        v.insert("metadata".into(), self.metadata.clone().into());
        v.insert("status".into(), self.status_at(now).as_str().into());
        v.insert("visibility".into(), self.visibility.as_str().into());
        v.insert("create_time".into(), format_rfc3339(self.create_time).into());
        v.insert("update_time".into(), format_rfc3339(self.update_time).into());
        v.insert("expire_time".into(), format_rfc3339(self.expire_time).into());
        if let Some(t) = self.last_used_time {
            v.insert("last_used_time".into(), format_rfc3339(t).into());
        }
        if let Some(p) = &self.rate_limit_policy {
            v.insert("rate_limit_policy".into(), p.to_json());
        }
        if !self.allowed_cidrs.is_empty() {
            v.insert("ip_restriction".into(), serde_json::json!({ "allowed_cidrs": self.allowed_cidrs }));
        }
        if self.revocation_reason != RevocationReason::Unspecified {
            v.insert("revocation_reason".into(), self.revocation_reason.as_str().into());
        }
        if !self.revocation_description.is_empty() {
            v.insert("revocation_description".into(), self.revocation_description.clone().into());
        }
        v.into()
    }
}

/// A duration field of a request: protobuf (`"3600s"`) or Go/Ory (`"24h"`, `"30d"`) form, with
/// the sign kept because a negative ttl means "use the default" (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireDuration {
    pub negative: bool,
    pub value: std::time::Duration,
}

impl<'de> Deserialize<'de> for WireDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(&s)),
        };
        let value = parse_duration(body).map_err(|e| de::Error::custom(format!("invalid duration \"{s}\": {e}")))?;
        Ok(WireDuration { negative, value })
    }
}

/// An int64 that protojson carries as a string but clients may send as a number.
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

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RateLimitPolicyIn {
    pub quota: Option<WireU64>,
    pub window: Option<WireDuration>,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpRestrictionIn {
    #[serde(default)]
    pub allowed_cidrs: Option<Vec<String>>,
}

/// `IssueApiKeyRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IssueRequest {
    pub name: Option<String>,
    pub actor_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
    pub ttl: Option<WireDuration>,
    pub rate_limit_policy: Option<RateLimitPolicyIn>,
    pub ip_restriction: Option<IpRestrictionIn>,
    pub visibility: Option<Visibility>,
    pub request_id: Option<String>,
}

/// `ImportApiKeyRequest`: an issue request plus the raw key.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImportRequest {
    pub raw_key: Option<String>,
    #[serde(flatten)]
    pub fields: IssueRequest,
}

/// `BatchCreateImportedApiKeysRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BatchImportRequest {
    pub requests: Option<Vec<Option<ImportRequest>>>,
}

/// `AdminRotateIssuedApiKeyBody`, plus talos's `grace_period` extension.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RotateRequest {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
    pub rate_limit_policy: Option<RateLimitPolicyIn>,
    pub ip_restriction: Option<IpRestrictionIn>,
    pub visibility: Option<Visibility>,
    /// How long the old key keeps verifying (never past its own expiry).
    pub grace_period: Option<WireDuration>,
}

/// `DeriveTokenRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeriveRequest {
    pub credential: Option<String>,
    pub algorithm: Option<TokenAlgorithm>,
    pub scopes: Option<Vec<String>>,
    pub ttl: Option<WireDuration>,
    pub custom_claims: Option<Map<String, Value>>,
    pub audiences: Option<Vec<String>>,
}

/// `AdminRevokeIssuedApiKeyBody` / `AdminRevokeImportedApiKeyBody`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RevokeRequest {
    pub reason: Option<RevocationReason>,
    pub description: Option<String>,
}

/// `VerifyApiKeyRequest` as the admin plane reads it (the data plane borrows instead).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VerifyRequest {
    pub credential: Option<String>,
    pub expected_audiences: Option<Vec<String>>,
}

/// `BatchVerifyApiKeysRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BatchVerifyRequest {
    pub requests: Option<Vec<Option<VerifyRequest>>>,
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
    fn unknown_fields_are_ignored_wrong_types_are_not() {
        let r: IssueRequest = serde_json::from_str(r#"{"name":"a","future_field":1}"#).unwrap();
        assert_eq!(r.name.as_deref(), Some("a"));
        assert!(serde_json::from_str::<IssueRequest>(r#"{"name":5}"#).is_err());
        assert!(serde_json::from_str::<IssueRequest>(r#"{"scopes":"a"}"#).is_err());
    }
}
