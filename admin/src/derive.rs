//! `POST /v2alpha1/admin/apiKeys:derive` and the JWKS (talos-api.md §5.1–§5.2): short-lived
//! tokens minted from a live API key, with no more scope and no longer life than their parent.
//! Minting and the token formats are `common::token`'s; this module checks the parent and the
//! request.

use bytes::Bytes;
use common::clock;
use common::error::ApiError;
use common::model::{DeriveRequest, TokenAlgorithm};
use common::token::{Derivation, DeriveError, MAX_TOKEN_LEN};
use common::verify::{Route, MAX_CREDENTIAL_LEN};
use http::{Request, StatusCode};
use serde_json::json;

use crate::{parse_body, respond, store_error, validate, AdminState, Handled};

fn unauthorized() -> ApiError {
    ApiError::new(401, "UNAUTHENTICATED", "UNAUTHORIZED", "verify API key")
}

pub async fn derive(state: &AdminState, req: &Request<Bytes>) -> Handled {
    let body: DeriveRequest = parse_body(req)?;
    let credential = body.credential.unwrap_or_default();
    if credential.is_empty() {
        return Err(ApiError::new(400, "INVALID_ARGUMENT", "CREDENTIAL_REQUIRED", "A credential is required."));
    }
    if credential.len() > MAX_CREDENTIAL_LEN {
        return Err(ApiError::bad_request(format!("credential must be at most {MAX_CREDENTIAL_LEN} bytes")));
    }
    // Derived tokens cannot mint successors (decisions.md §5.11).
    if matches!(state.verifier.route(&credential), Route::Jwt | Route::Macaroon) {
        return Err(ApiError::new(400, "INVALID_ARGUMENT", "INVALID_TOKEN_TYPE", "The token type is invalid."));
    }
    let tokens = &state.config.credentials.derived_tokens;
    let max_ttl = state.config.credentials.api_keys.max_ttl;
    let requested_ttl = body.ttl.filter(|t| !t.negative && !t.value.is_zero()).map(|t| t.value);
    let ttl = requested_ttl.unwrap_or(tokens.default_ttl);
    if !max_ttl.is_zero() && ttl > max_ttl {
        return Err(ApiError::bad_request(format!("ttl exceeds the configured maximum of {}s", max_ttl.as_secs())));
    }
    let custom_claims = body.custom_claims.unwrap_or_default();
    let audiences = validate::scopes(body.audiences).map_err(|_| ApiError::bad_request("invalid audiences"))?;

    // The parent is verified against the store, never a snapshot (a forced cache bypass).
    let now = clock::now();
    let id = state.verifier.precheck(&credential, now).map_err(|_| unauthorized())?;
    let key_id = id.key_id();
    let parent =
        state.blocking(move |s| s.get(id.kind(), &key_id)).await.map_err(store_error)?.ok_or_else(unauthorized)?;
    match parent.status_at(now) {
        common::model::KeyStatus::Revoked if parent.revocation_effective_time.is_none_or(|at| at <= now) => {
            return Err(ApiError::new(403, "PERMISSION_DENIED", "FORBIDDEN", "key is revoked"));
        }
        common::model::KeyStatus::Expired => {
            return Err(ApiError::failed_precondition("cannot derive token from expired parent key"));
        }
        _ => {}
    }
    // A key in a rotation grace period lives only until the grace period ends.
    let parent_end = parent.revocation_effective_time.map_or(parent.expire_time, |at| at.min(parent.expire_time));
    let remaining = parent_end.saturating_sub(now);
    // Without an explicit ttl, the default is cut to the parent's remaining life rather than
    // refused: the caller asked for "as long as allowed".
    let ttl = match requested_ttl {
        None => ttl.min(std::time::Duration::from_nanos(u64::try_from(remaining).unwrap_or(0))),
        Some(ttl) => ttl,
    };
    if clock::from_duration(ttl) > remaining || ttl.as_secs() == 0 {
        return Err(ApiError::bad_request(format!(
            "derived token ttl ({}s) exceeds parent key remaining lifetime ({}s)",
            ttl.as_secs(),
            clock::secs(remaining)
        )));
    }
    let scopes = match body.scopes {
        Some(requested) if !requested.is_empty() => {
            // The scope is named by its index, not quoted: it is client data, and could be a key.
            if let Some(missing) = requested.iter().position(|s| !parent.scopes.contains(s)) {
                return Err(ApiError::new(
                    403,
                    "PERMISSION_DENIED",
                    "FORBIDDEN",
                    format!("requested scopes[{missing}] not available in parent key"),
                ));
            }
            requested
        }
        _ => parent.scopes.clone(),
    };
    let macaroon = body.algorithm == Some(TokenAlgorithm::Macaroon);
    let derivation = Derivation {
        macaroon,
        parent_key_id: &parent.key_id,
        actor_id: &parent.actor_id,
        scopes: scopes.clone(),
        metadata: parent.metadata.clone(),
        visibility: parent.visibility,
        allowed_cidrs: parent.allowed_cidrs.clone(),
        audiences: audiences.clone(),
        custom_claims,
        ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
    };
    let (token, claims) = state.verifier.derived.derive(derivation, now).map_err(|e| {
        tracing::error!(error = %e, "cannot derive a token");
        match e {
            // The reference's answer: a 500 that names the missing configuration.
            DeriveError::NoSigningKeys => {
                let mut err = ApiError::internal();
                err.message = "no signing key URLs configured".into();
                err
            }
            DeriveError::SigningKeyNotFound(_) => ApiError::internal().with_metadata("detail", "signing_key_id"),
        }
    })?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::bad_request(format!("the derived token exceeds {MAX_TOKEN_LEN} bytes")));
    }
    // `claims` in the response: the parent's metadata overlaid with the custom claims.
    let mut shown = parent.metadata.clone();
    shown.extend(claims.custom.clone());
    Ok(respond::json(
        StatusCode::OK,
        &json!({ "token": {
            "token": token,
            "expire_time": clock::format_rfc3339(claims.exp.unwrap_or_default().saturating_mul(clock::NANOS_PER_SEC)),
            "scopes": scopes,
            "claims": shown,
            "audiences": audiences,
        }}),
    ))
}

/// `GET /v2alpha1/derivedKeys/jwks.json`: the public signing keys, wrapped in `{"jwks": …}`.
pub async fn jwks(state: &AdminState) -> Handled {
    match state.verifier.derived.public_jwks() {
        Some(jwks) => Ok(respond::json(StatusCode::OK, &jwks)),
        None => {
            let mut err = ApiError::internal();
            err.message = "no active signing keys found".into();
            Err(err)
        }
    }
}
