//! Request validation and normalisation shared by every write route (decisions.md §5.7 limits,
//! talos-api.md §2.2 and §4.1 rules). Each function returns the normalised value or a 400 that
//! names the field.

use std::time::Duration;

use common::clock::{self, Nanos};
use common::config::Config;
use common::error::ApiError;
use common::model::{IpRestrictionIn, RateLimitPolicy, RateLimitPolicyIn, RevocationReason, WireDuration};
use serde_json::{Map, Value};

pub const MAX_NAME: usize = 255;
pub const MAX_ACTOR_ID: usize = 255;
pub const MAX_REQUEST_ID: usize = 36;
pub const MAX_DESCRIPTION: usize = 500;
pub const MAX_SCOPES: usize = 100;
pub const MAX_SCOPE: usize = 255;
pub const MAX_METADATA: usize = 64 * 1024;

pub fn bounded(field: &str, value: Option<String>, max: usize) -> Result<String, ApiError> {
    let value = value.unwrap_or_default();
    if value.len() > max {
        return Err(ApiError::bad_request(format!("{field} must be at most {max} bytes")));
    }
    Ok(value)
}

pub fn request_id(value: Option<String>) -> Result<Option<String>, ApiError> {
    let value = bounded("request_id", value, MAX_REQUEST_ID)?;
    Ok(Some(value).filter(|v| !v.is_empty()))
}

pub fn scopes(value: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let scopes = value.unwrap_or_default();
    if scopes.len() > MAX_SCOPES {
        return Err(ApiError::bad_request(format!("scopes must have at most {MAX_SCOPES} items")));
    }
    if let Some(i) = scopes.iter().position(|s| s.is_empty() || s.len() > MAX_SCOPE) {
        return Err(ApiError::bad_request(format!("scopes[{i}] must be 1 to {MAX_SCOPE} bytes")));
    }
    Ok(scopes)
}

pub fn metadata(value: Option<Map<String, Value>>) -> Result<Map<String, Value>, ApiError> {
    let metadata = value.unwrap_or_default();
    let size = serde_json::to_vec(&metadata).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_METADATA {
        return Err(ApiError::bad_request(format!("metadata must be at most {MAX_METADATA} bytes serialized")));
    }
    Ok(metadata)
}

pub fn rate_limit_policy(value: Option<RateLimitPolicyIn>) -> Result<Option<RateLimitPolicy>, ApiError> {
    let Some(policy) = value else { return Ok(None) };
    let quota = policy.quota.map_or(0, |q| q.0);
    let window = policy.window.ok_or_else(|| ApiError::bad_request("rate_limit_policy.window is required"))?;
    if window.negative || window.value < Duration::from_secs(1) {
        return Err(ApiError::bad_request("rate_limit_policy.window must be at least 1s"));
    }
    if window.value.subsec_nanos() != 0 {
        return Err(ApiError::bad_request("rate_limit_policy.window must be a whole number of seconds"));
    }
    let unit = policy.unit.unwrap_or_default();
    if !unit.is_empty() && unit != "requests" {
        return Err(ApiError::bad_request("rate_limit_policy.unit must be \"requests\""));
    }
    Ok(Some(RateLimitPolicy { quota, window_secs: window.value.as_secs(), unit }))
}

/// Validates CIDRs; a bare address becomes /32 or /128.
pub fn allowed_cidrs(value: Option<IpRestrictionIn>) -> Result<Vec<String>, ApiError> {
    let cidrs = value.and_then(|r| r.allowed_cidrs).unwrap_or_default();
    cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if let Ok(net) = c.parse::<ipnet::IpNet>() {
                return Ok(net.to_string());
            }
            // The value is not quoted back: a client that put a key here must not see it echoed.
            c.parse::<std::net::IpAddr>()
                .map(|ip| ipnet::IpNet::from(ip).to_string())
                .map_err(|_| ApiError::bad_request(format!("ip_restriction.allowed_cidrs[{i}] is not a valid CIDR")))
        })
        .collect()
}

/// The expiry of a new key from the request ttl and the config (talos-api.md §4.1).
pub fn expire_time(ttl: Option<WireDuration>, config: &Config, now: Nanos) -> Result<Nanos, ApiError> {
    let api_keys = &config.credentials.api_keys;
    let ttl = match ttl {
        Some(t) if !t.negative && t.value.is_zero() => None,
        Some(t) if !t.negative => Some(t.value),
        _ => api_keys.default_ttl,
    }
    .filter(|t| !t.is_zero())
    .ok_or_else(|| ApiError::bad_request("ttl must be greater than 0; non-expiring API keys are not supported"))?;
    if !api_keys.max_ttl.is_zero() && ttl > api_keys.max_ttl {
        return Err(ApiError::bad_request(format!(
            "ttl {}s exceeds the project maximum of {}s",
            ttl.as_secs(),
            api_keys.max_ttl.as_secs()
        )));
    }
    Ok(now.saturating_add(clock::from_duration(ttl)))
}

/// The revocation reason and description rules of talos-api.md §4.5.
pub fn revocation(
    reason: Option<RevocationReason>,
    description: Option<String>,
) -> Result<(RevocationReason, String), ApiError> {
    let reason = reason.unwrap_or_default();
    if reason == RevocationReason::Unspecified {
        return Err(ApiError::bad_request("reason is required and must not be REVOCATION_REASON_UNSPECIFIED"));
    }
    let description = bounded("description", description, MAX_DESCRIPTION)?;
    if !description.is_empty() && reason != RevocationReason::PrivilegeWithdrawn {
        return Err(ApiError::bad_request("description is only allowed when reason is PRIVILEGE_WITHDRAWN"));
    }
    Ok((reason, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_normalised_or_rejected() {
        let r = |v: &[&str]| {
            allowed_cidrs(Some(IpRestrictionIn { allowed_cidrs: Some(v.iter().map(|s| s.to_string()).collect()) }))
        };
        assert_eq!(r(&["10.0.0.0/8", "1.2.3.4", "::1"]).unwrap(), ["10.0.0.0/8", "1.2.3.4/32", "::1/128"]);
        assert!(r(&["10.0.0.0/33"]).is_err());
        assert!(r(&["nope"]).unwrap_err().message.contains("allowed_cidrs[0]"));
    }

    #[test]
    fn revocation_rules() {
        assert!(revocation(None, None).is_err());
        assert!(revocation(Some(RevocationReason::Unspecified), None).is_err());
        assert!(revocation(Some(RevocationReason::KeyCompromise), Some("why".into())).is_err());
        assert_eq!(
            revocation(Some(RevocationReason::PrivilegeWithdrawn), Some("why".into())).unwrap(),
            (RevocationReason::PrivilegeWithdrawn, "why".into())
        );
        assert!(revocation(Some(RevocationReason::PrivilegeWithdrawn), Some("x".repeat(501))).is_err());
    }
}
