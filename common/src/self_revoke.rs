//! Self-revocation (`POST /v2alpha1/apiKeys:selfRevoke`, talos-api.md §4.10): a key holder
//! revokes their own key by proving possession of it. Shared by the admin plane and the data
//! plane, which both write through the store.

use crate::clock::Nanos;
use crate::error::ApiError;
use crate::model::{KeyStatus, RevocationReason, Visibility};
use crate::store::{Store, StoreError};
use crate::verify::{Route, Verifier, MAX_CREDENTIAL_LEN};

/// `SelfRevokeApiKeyRequest`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SelfRevokeRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RevocationReason>,
}

/// Revokes the key `credential` proves possession of, and returns the store revision at which
/// the key reads as revoked: the caller answers once its snapshot holds that revision. For a key
/// that was already revoked (idempotent: nothing is written) it is the store's current revision,
/// so a plane whose snapshot still lags behind that earlier revocation catches up before it says
/// "done". Blocking: call off async workers.
pub fn self_revoke(
    store: &dyn Store,
    verifier: &Verifier,
    request: SelfRevokeRequest,
    now: Nanos,
) -> Result<u64, ApiError> {
    let reason = match request.reason.unwrap_or_default() {
        RevocationReason::Unspecified => {
            return Err(ApiError::bad_request("reason is required and must not be REVOCATION_REASON_UNSPECIFIED"))
        }
        RevocationReason::PrivilegeWithdrawn => {
            return Err(ApiError::bad_request("PRIVILEGE_WITHDRAWN is not allowed for self-revocation"))
        }
        reason => reason,
    };
    let credential = request.credential.unwrap_or_default();
    if credential.is_empty() {
        return Err(ApiError::new(400, "INVALID_ARGUMENT", "CREDENTIAL_REQUIRED", "A credential is required."));
    }
    if credential.len() > MAX_CREDENTIAL_LEN {
        return Err(ApiError::bad_request(format!("credential must be at most {MAX_CREDENTIAL_LEN} bytes")));
    }
    if matches!(verifier.route(&credential), Route::Jwt | Route::Macaroon) {
        return Err(ApiError::new(
            400,
            "INVALID_ARGUMENT",
            "DERIVED_TOKEN_NOT_REVOCABLE",
            "Derived tokens cannot be revoked.",
        ));
    }
    let not_found = || ApiError::not_found("API key not found");
    let id = verifier.precheck(&credential, now).map_err(|_| not_found())?;
    let mut already_revoked = false;
    let result = store.modify(id.kind(), &id.key_id(), &mut |record| {
        // A key in a rotation grace period is revoked at once: its holder says it is compromised.
        let in_grace = record.in_grace(now);
        match record.status_at(now) {
            KeyStatus::Revoked if !in_grace => {
                already_revoked = true;
                // Nothing to write; refusing aborts the transaction without a revision.
                return Err(ApiError::conflict("already revoked"));
            }
            KeyStatus::Expired => {
                return Err(ApiError::new(401, "UNAUTHENTICATED", "API_KEY_EXPIRED", "The API key has expired."))
            }
            _ => {}
        }
        if in_grace {
            record.revocation_effective_time = None;
            return Ok(None);
        }
        if record.visibility == Visibility::Public {
            return Err(ApiError::new(
                403,
                "PERMISSION_DENIED",
                "FORBIDDEN",
                "public keys cannot revoke themselves; use the admin API",
            ));
        }
        record.revoke(reason, String::new(), None, now);
        Ok(None)
    });
    match result {
        Ok((_, revision)) => Ok(revision),
        Err(StoreError::Refused(_)) if already_revoked => store.revision().map_err(|e| {
            tracing::warn!(error = %e, "cannot read the store revision after a repeated self-revocation");
            ApiError::unavailable("the store is unavailable; try again")
        }),
        Err(StoreError::Refused(e)) => Err(e),
        Err(StoreError::NotFound) => Err(not_found()),
        // As the admin plane answers a write the store could not take: 503, retry.
        Err(StoreError::Unavailable(detail)) => {
            tracing::warn!(error = %detail, "store unavailable for a self-revocation");
            Err(ApiError::unavailable("the store is unavailable; nothing was changed, try again"))
        }
        Err(e) => {
            tracing::error!(error = %e, "self-revocation failed in the store");
            Err(ApiError::internal())
        }
    }
}
