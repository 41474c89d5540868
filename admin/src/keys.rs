//! Issued-key management routes: issue, list, get, revoke (talos-api.md §4.1–§4.5).

use bytes::Bytes;
use common::clock::{self, Nanos};
use common::error::ApiError;
use common::key::{self, NIL_NID};
use common::model::{IssueRequest, KeyKind, KeyRecord, KeyStatus, RevokeRequest, Visibility};
use common::page_token::PageTokenError;
use common::store::{Cursor, Inserted, ListQuery};
use http::header::{HeaderValue, LOCATION};
use http::{Request, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::{parse_body, respond, store_error, validate, AdminState, Handled};

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

fn location(kind: KeyKind, key_id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/v2alpha1/admin/{}/{key_id}", kind.collection())).expect("key ids are header-safe")
}

/// Refuses a new key when `quota.api_keys_max` is reached (decisions.md §5.4). Best-effort:
/// counted outside the insert's transaction, as the reference does.
async fn check_quota(state: &AdminState) -> Result<(), ApiError> {
    let limit = state.config.quota.api_keys_max;
    if limit == 0 {
        return Ok(());
    }
    let current = state.blocking(|s| s.count_active()).await.map_err(store_error)?;
    if current + 1 > limit {
        return Err(ApiError::new(429, "RESOURCE_EXHAUSTED", "API_KEY_QUOTA_EXCEEDED", "API key quota exceeded")
            .with_metadata("limit", limit.to_string())
            .with_metadata("current_usage", current.to_string()));
    }
    Ok(())
}

pub async fn issue(state: &AdminState, req: &Request<Bytes>) -> Handled {
    let body: IssueRequest = parse_body(req)?;
    let now = clock::now();
    let prefixes = &state.config.credentials.api_keys.prefix;
    let visibility = match body.visibility.unwrap_or_default() {
        Visibility::Unspecified | Visibility::Secret => Visibility::Secret,
        Visibility::Public => Visibility::Public,
    };
    let prefix = match visibility {
        Visibility::Public => prefixes.public_current.clone().ok_or_else(|| {
            ApiError::bad_request("public key prefix not configured: set credentials.api_keys.prefix.public_current")
        })?,
        _ => prefixes.current.clone(),
    };
    let key_id = Uuid::new_v4();
    let record = KeyRecord {
        kind: KeyKind::Issued,
        key_id: key_id.hyphenated().to_string(),
        name: validate::bounded("name", body.name, validate::MAX_NAME)?,
        actor_id: validate::bounded("actor_id", body.actor_id, validate::MAX_ACTOR_ID)?,
        scopes: validate::scopes(body.scopes)?,
        metadata: validate::metadata(body.metadata)?,
        status: KeyStatus::Active,
        visibility,
        token_prefix: prefix.clone(),
        create_time: now,
        update_time: now,
        expire_time: validate::expire_time(body.ttl, &state.config, now)?,
        last_used_time: None,
        rate_limit_policy: validate::rate_limit_policy(body.rate_limit_policy)?,
        allowed_cidrs: validate::allowed_cidrs(body.ip_restriction)?,
        revocation_reason: Default::default(),
        revocation_description: String::new(),
        request_id: validate::request_id(body.request_id)?,
    };
    check_quota(state).await?;
    let secret = key::generate(&prefix, clock::secs(now), key_id, &state.verifier.keyring);
    let stored = record.clone();
    let (record, secret) = match state.blocking(move |s| s.insert(&stored)).await.map_err(store_error)? {
        Inserted::New(revision) => {
            state.publish(revision).await;
            (record, Some(secret))
        }
        // An idempotent replay: the key already exists; its secret is never shown again.
        Inserted::Existing(existing) => (*existing, None),
    };
    let mut body = json!({ "issued_api_key": record.to_resource(clock::now()) });
    if let Some(secret) = secret {
        body["secret"] = secret.into();
    }
    let mut resp = respond::json(StatusCode::CREATED, &body);
    resp.headers_mut().insert(LOCATION, location(KeyKind::Issued, &record.key_id));
    Ok(resp)
}

pub async fn get(state: &AdminState, key_id: &str) -> Handled {
    let id = key_id.to_owned();
    let record = state
        .blocking(move |s| s.get(KeyKind::Issued, &id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found("API key not found"))?;
    Ok(respond::json(StatusCode::OK, &record.to_resource(clock::now())))
}

pub async fn revoke(state: &AdminState, key_id: &str, req: &Request<Bytes>) -> Handled {
    let body: RevokeRequest = parse_body(req)?;
    let (reason, description) = validate::revocation(body.reason, body.description)?;
    let id = key_id.to_owned();
    let (_, revision) = state
        .blocking(move |s| {
            s.modify(KeyKind::Issued, &id, &mut |record| {
                if record.status == KeyStatus::Revoked {
                    return Err(ApiError::conflict("key is already revoked"));
                }
                let now = clock::now();
                record.status = KeyStatus::Revoked;
                record.revocation_reason = reason;
                record.revocation_description = description.clone();
                record.expire_time = record.expire_time.max(now.saturating_add(validate::REVOKED_RETENTION));
                record.update_time = now;
                Ok(())
            })
        })
        .await
        .map_err(store_error)?;
    state.publish(revision).await;
    Ok(respond::no_content())
}

/// The AIP-160 subset of talos-api.md §4.3: `actor_id="…"` and `status=KEY_STATUS_*`, joined by
/// `AND`; `status` only together with `actor_id`.
fn parse_filter(filter: &str) -> Result<(Option<String>, Option<KeyStatus>), ApiError> {
    let mut actor_id = None;
    let mut status = None;
    if filter.trim().is_empty() {
        return Ok((None, None));
    }
    let invalid = |why: &str| ApiError::bad_request(format!("invalid filter: {why}"));
    let mut rest = filter.trim();
    loop {
        if let Some(after) = rest.strip_prefix("actor_id") {
            let after = after.trim_start().strip_prefix('=').ok_or_else(|| invalid("expected ="))?.trim_start();
            let after = after.strip_prefix('"').ok_or_else(|| invalid("actor_id value must be double-quoted"))?;
            let end = after.find('"').ok_or_else(|| invalid("unterminated string"))?;
            if actor_id.replace(after[..end].to_owned()).is_some() {
                return Err(invalid("duplicate field actor_id"));
            }
            rest = after[end + 1..].trim_start();
        } else if let Some(after) = rest.strip_prefix("status") {
            let after = after.trim_start().strip_prefix('=').ok_or_else(|| invalid("expected ="))?.trim_start();
            let end = after.find(|c: char| c.is_whitespace()).unwrap_or(after.len());
            let value = KeyStatus::from_name(&after[..end])
                .filter(|s| *s != KeyStatus::Unspecified)
                .ok_or_else(|| invalid("unknown status value"))?;
            if status.replace(value).is_some() {
                return Err(invalid("duplicate field status"));
            }
            rest = after[end..].trim_start();
        } else {
            return Err(invalid("only actor_id=\"…\" and status=KEY_STATUS_* are supported"));
        }
        if rest.is_empty() {
            break;
        }
        rest = rest
            .strip_prefix("AND")
            .filter(|r| r.starts_with(char::is_whitespace))
            .ok_or_else(|| invalid("clauses must be joined by AND"))?
            .trim_start();
        if rest.is_empty() {
            return Err(invalid("empty clause after AND"));
        }
    }
    if status.is_some() && actor_id.is_none() {
        return Err(ApiError::bad_request("status filter must be combined with actor_id"));
    }
    Ok((actor_id, status))
}

pub async fn list(state: &AdminState, req: &Request<Bytes>) -> Handled {
    let kind = KeyKind::Issued;
    let mut page_size = DEFAULT_PAGE_SIZE;
    let mut after: Option<Cursor> = None;
    let mut filter = (None, None);
    for (name, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*name {
            "page_size" => {
                let n: i64 = value.parse().map_err(|_| ApiError::bad_request("page_size must be an integer"))?;
                page_size = if n <= 0 { DEFAULT_PAGE_SIZE } else { (n as u64).min(MAX_PAGE_SIZE as u64) as usize };
            }
            "page_token" if !value.is_empty() => {
                after = Some(state.page_tokens.open(kind, &value, NIL_NID).map_err(|e| match e {
                    PageTokenError::Invalid => ApiError::bad_request("invalid page token"),
                    PageTokenError::NetworkMismatch => ApiError::bad_request("page token network mismatch"),
                })?);
            }
            "filter" => filter = parse_filter(&value)?,
            _ => {}
        }
    }
    let now: Nanos = clock::now();
    let query = ListQuery { after, limit: page_size + 1, actor_id: filter.0, status: filter.1, now };
    let mut records = state.blocking(move |s| s.list(kind, &query)).await.map_err(store_error)?;
    let next_page_token = if records.len() > page_size {
        records.truncate(page_size);
        records.last().map(|last| state.page_tokens.seal(kind, &Cursor::of(last), NIL_NID)).unwrap_or_default()
    } else {
        String::new()
    };
    let keys: Vec<_> = records.iter().map(|r| r.to_resource(now)).collect();
    Ok(respond::json(StatusCode::OK, &json!({ "issued_api_keys": keys, "next_page_token": next_page_token })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(filter: &str, expected: Result<(Option<&str>, Option<KeyStatus>), ()>) {
        let got = parse_filter(filter).map_err(|_| ());
        let expected = expected.map(|(a, s)| (a.map(str::to_owned), s));
        assert_eq!(got, expected, "{filter:?}");
    }

    #[test]
    fn filters() {
        check("", Ok((None, None)));
        check(r#"actor_id="alice""#, Ok((Some("alice"), None)));
        check(r#"actor_id = "a b=c AND d""#, Ok((Some("a b=c AND d"), None)));
        check(r#"actor_id="a" AND status=KEY_STATUS_REVOKED"#, Ok((Some("a"), Some(KeyStatus::Revoked))));
        check(r#"status=KEY_STATUS_ACTIVE AND actor_id="a""#, Ok((Some("a"), Some(KeyStatus::Active))));
        check("status=KEY_STATUS_ACTIVE", Err(()));
        check(r#"actor_id="a" OR actor_id="b""#, Err(()));
        check(r#"actor_id="a" AND actor_id="b""#, Err(()));
        check(r#"actor_id="a" AND"#, Err(()));
        check("AND", Err(()));
        check(r#"name="a""#, Err(()));
        check("actor_id=a", Err(()));
        check(r#"actor_id="a"ANDstatus=KEY_STATUS_ACTIVE"#, Err(()));
        check(r#"actor_id="a" AND status=NOPE"#, Err(()));
        check(r#"actor_id="unterminated"#, Err(()));
    }
}
