//! Key management routes for both collections (talos-api.md §4.1–§4.7): issue, import and batch
//! import, list, get, update, revoke, rotate (issued) and delete (imported).

use std::time::Duration;

use bytes::Bytes;
use common::clock::{self, Nanos};
use common::config::Prefixes;
use common::error::ApiError;
use common::key::{self, NIL_NID};
use common::model::{
    BatchImportRequest, ImportRequest, IssueRequest, KeyKind, KeyRecord, KeyStatus, RevocationReason, RevokeRequest,
    RotateRequest, UpdateRequest, Visibility,
};
use common::page_token::PageTokenError;
use common::store::{Cursor, Inserted, ListQuery, StoreError};
use common::verify::{Route, MAX_CREDENTIAL_LEN};
use http::header::{HeaderValue, LOCATION};
use http::{Request, StatusCode};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::{parse_body, respond, store_error, validate, AdminState, Handled};

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;
const MAX_BATCH_IMPORT: usize = 1000;

fn location(kind: KeyKind, key_id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/v2alpha1/admin/{}/{key_id}", kind.collection())).expect("key ids are header-safe")
}

fn not_found(kind: KeyKind) -> ApiError {
    match kind {
        KeyKind::Issued => ApiError::not_found("API key not found"),
        KeyKind::Imported => ApiError::not_found("imported key not found"),
    }
}

/// Maps a store error on one key; a missing key reads as that collection's 404.
fn key_error(kind: KeyKind) -> impl Fn(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => not_found(kind),
        other => store_error(other),
    }
}

fn quota_exceeded(limit: u64, current: u64) -> ApiError {
    ApiError::new(429, "RESOURCE_EXHAUSTED", "API_KEY_QUOTA_EXCEEDED", "API key quota exceeded")
        .with_metadata("limit", limit.to_string())
        .with_metadata("current_usage", current.to_string())
}

/// How many more keys `quota.api_keys_max` allows (decisions.md §5.4); `u64::MAX` without a
/// quota. Best-effort: counted outside the insert's transaction, as the reference does.
async fn quota_headroom(state: &AdminState) -> Result<(u64, u64, u64), ApiError> {
    let limit = state.config.quota.api_keys_max;
    if limit == 0 {
        return Ok((u64::MAX, 0, 0));
    }
    let current = state.blocking(|s| s.count_active()).await.map_err(store_error)?;
    Ok((limit.saturating_sub(current), limit, current))
}

async fn check_quota(state: &AdminState) -> Result<(), ApiError> {
    let (headroom, limit, current) = quota_headroom(state).await?;
    if headroom == 0 {
        return Err(quota_exceeded(limit, current));
    }
    Ok(())
}

/// SECRET unless PUBLIC was asked for (UNSPECIFIED normalises to SECRET).
fn normalise_visibility(v: Option<Visibility>) -> Option<Visibility> {
    match v.unwrap_or_default() {
        Visibility::Unspecified => None,
        other => Some(other),
    }
}

/// The record of a new key of `kind`, validated; `key_id` and `token_prefix` set by the caller.
fn new_record(state: &AdminState, kind: KeyKind, body: IssueRequest, now: Nanos) -> Result<KeyRecord, ApiError> {
    Ok(KeyRecord {
        kind,
        key_id: String::new(),
        name: validate::bounded("name", body.name, validate::MAX_NAME)?,
        actor_id: validate::bounded("actor_id", body.actor_id, validate::MAX_ACTOR_ID)?,
        scopes: validate::scopes(body.scopes)?,
        metadata: validate::metadata(body.metadata)?,
        status: KeyStatus::Active,
        visibility: normalise_visibility(body.visibility).unwrap_or(Visibility::Secret),
        token_prefix: String::new(),
        create_time: now,
        update_time: now,
        expire_time: validate::expire_time(body.ttl, &state.config, now)?,
        last_used_time: None,
        rate_limit_policy: validate::rate_limit_policy(body.rate_limit_policy)?,
        allowed_cidrs: validate::allowed_cidrs(body.ip_restriction)?,
        revocation_reason: Default::default(),
        revocation_description: String::new(),
        revocation_effective_time: None,
        request_id: validate::request_id(body.request_id)?,
    })
}

/// The prefix for a new issued key of `visibility`.
fn issue_prefix(prefixes: &Prefixes, visibility: Visibility) -> Result<String, ApiError> {
    match visibility {
        Visibility::Public => prefixes.public_current.clone().ok_or_else(|| {
            ApiError::bad_request("public key prefix not configured: set credentials.api_keys.prefix.public_current")
        }),
        _ => Ok(prefixes.current.clone()),
    }
}

fn issued_response(status: StatusCode, mut body: Value, record: &KeyRecord) -> Handled {
    body["issued_api_key"] = record.to_resource(clock::now());
    let mut resp = respond::json(status, &body);
    resp.headers_mut().insert(LOCATION, location(KeyKind::Issued, &record.key_id));
    Ok(resp)
}

pub async fn issue(state: &AdminState, req: &Request<Bytes>) -> Handled {
    let body: IssueRequest = parse_body(req)?;
    let now = clock::now();
    let mut record = new_record(state, KeyKind::Issued, body, now)?;
    let prefix = issue_prefix(&state.config.credentials.api_keys.prefix, record.visibility)?;
    let key_id = Uuid::new_v4();
    record.key_id = key_id.hyphenated().to_string();
    record.token_prefix = prefix.clone();
    check_quota(state).await?;
    let secret = key::generate(&prefix, clock::secs(now), key_id, &state.verifier.keyring);
    let stored = record.clone();
    match state.blocking(move |s| s.insert(&stored)).await.map_err(store_error)? {
        Inserted::New(revision) => {
            state.publish(revision).await;
            issued_response(StatusCode::CREATED, json!({ "secret": secret }), &record)
        }
        // An idempotent replay: the key already exists; its secret is never shown again.
        Inserted::Existing(existing) => issued_response(StatusCode::CREATED, json!({}), &existing),
    }
}

/// Checks a raw key to import; returns its key id (talos-api.md §3.4).
fn imported_key_id(state: &AdminState, raw_key: Option<&str>) -> Result<String, ApiError> {
    let raw_key = raw_key.unwrap_or("");
    if raw_key.is_empty() {
        return Err(ApiError::bad_request("raw_key is required"));
    }
    if raw_key.len() > MAX_CREDENTIAL_LEN {
        return Err(ApiError::bad_request(format!("raw_key must be at most {MAX_CREDENTIAL_LEN} bytes")));
    }
    match state.verifier.route(raw_key) {
        Route::Issued(_) => Err(ApiError::conflict("cannot import key: format conflicts with issued api key pattern")),
        Route::Jwt | Route::Macaroon => {
            Err(ApiError::failed_precondition("cannot import key: format conflicts with derived token pattern"))
        }
        Route::Imported => Ok(key::hex32(&key::imported_key_id(NIL_NID, raw_key.as_bytes()))),
    }
}

/// Validates one import request into a record.
fn import_record(state: &AdminState, body: ImportRequest, now: Nanos) -> Result<KeyRecord, ApiError> {
    let key_id = imported_key_id(state, body.raw_key.as_deref())?;
    if body.fields.name.as_deref().unwrap_or("").is_empty() {
        return Err(ApiError::bad_request("name is required"));
    }
    if body.fields.actor_id.as_deref().unwrap_or("").is_empty() {
        return Err(ApiError::bad_request("actor_id is required"));
    }
    let mut record = new_record(state, KeyKind::Imported, body.fields, now)?;
    record.key_id = key_id;
    Ok(record)
}

fn duplicate_import() -> ApiError {
    ApiError::api_key_exists("key already imported (duplicate detected)")
}

pub async fn import(state: &AdminState, req: &Request<Bytes>) -> Handled {
    let body: ImportRequest = parse_body(req)?;
    let record = import_record(state, body, clock::now())?;
    check_quota(state).await?;
    let stored = record.clone();
    let record = match state.blocking(move |s| s.insert(&stored)).await {
        Ok(Inserted::New(revision)) => {
            state.publish(revision).await;
            record
        }
        Ok(Inserted::Existing(existing)) => *existing,
        Err(StoreError::Duplicate) => return Err(duplicate_import()),
        Err(e) => return Err(store_error(e)),
    };
    let mut resp = respond::json(StatusCode::CREATED, &record.to_resource(clock::now()));
    resp.headers_mut().insert(LOCATION, location(KeyKind::Imported, &record.key_id));
    Ok(resp)
}

/// Per-item outcome codes of a batch import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchError {
    InvalidArgument,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Internal,
}

impl BatchError {
    fn of(err: &ApiError) -> Self {
        match err.code {
            "INVALID_ARGUMENT" => BatchError::InvalidArgument,
            "ALREADY_EXISTS" if err.reason == "API_KEY_EXISTS" => BatchError::AlreadyExists,
            // An issued-key-shaped raw key is a conflict for a single import but a failed
            // precondition in a batch (talos-api.md §4.7).
            "ALREADY_EXISTS" | "FAILED_PRECONDITION" => BatchError::FailedPrecondition,
            "RESOURCE_EXHAUSTED" => BatchError::ResourceExhausted,
            _ => BatchError::Internal,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BatchError::InvalidArgument => "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_INVALID_ARGUMENT",
            BatchError::AlreadyExists => "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_ALREADY_EXISTS",
            BatchError::FailedPrecondition => "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_FAILED_PRECONDITION",
            BatchError::ResourceExhausted => "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_RESOURCE_EXHAUSTED",
            BatchError::Internal => "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_INTERNAL",
        }
    }

    /// The request-level error when every item failed with this code as the dominant one.
    fn whole(self, state_quota: (u64, u64)) -> ApiError {
        match self {
            BatchError::AlreadyExists => ApiError::api_key_exists("all keys in batch already exist"),
            BatchError::InvalidArgument => ApiError::bad_request("all keys in batch failed validation"),
            BatchError::FailedPrecondition => {
                ApiError::failed_precondition("all keys in batch failed precondition checks")
            }
            BatchError::ResourceExhausted => {
                let mut e = quota_exceeded(state_quota.0, state_quota.1);
                e.message = "all keys in batch exceeded the tenant quota".into();
                e
            }
            BatchError::Internal => {
                let mut e = ApiError::internal();
                e.message = "all keys in batch import failed".into();
                e
            }
        }
    }
}

/// The most frequent failure; ties go to INTERNAL, ALREADY_EXISTS, INVALID_ARGUMENT,
/// FAILED_PRECONDITION, RESOURCE_EXHAUSTED, in that order (talos-api.md §4.7).
fn dominant(errors: &[BatchError]) -> BatchError {
    let order = [
        BatchError::Internal,
        BatchError::AlreadyExists,
        BatchError::InvalidArgument,
        BatchError::FailedPrecondition,
        BatchError::ResourceExhausted,
    ];
    let mut best = order[0];
    let mut best_count = 0;
    for code in order {
        let count = errors.iter().filter(|e| **e == code).count();
        if count > best_count {
            best = code;
            best_count = count;
        }
    }
    best
}

pub async fn batch_import(state: &AdminState, req: &Request<Bytes>) -> Handled {
    let body: BatchImportRequest = parse_body(req)?;
    let items = body.requests.unwrap_or_default();
    if items.is_empty() {
        return Err(ApiError::bad_request("keys must contain at least one item"));
    }
    if items.len() > MAX_BATCH_IMPORT {
        return Err(ApiError::bad_request(format!("maximum {MAX_BATCH_IMPORT} keys per batch")));
    }
    let now = clock::now();
    let (mut headroom, limit, current) = quota_headroom(state).await?;
    let mut outcomes: Vec<Result<KeyRecord, (BatchError, String)>> = Vec::with_capacity(items.len());
    let mut first_index: std::collections::HashMap<String, usize> = Default::default();
    for (index, item) in items.into_iter().enumerate() {
        let outcome = match item {
            None => Err((BatchError::InvalidArgument, "batch item is required".to_owned())),
            Some(mut item) => {
                // Request ids are not used for batch rows.
                item.fields.request_id = None;
                match import_record(state, item, now) {
                    Err(e) => Err((BatchError::of(&e), e.message)),
                    Ok(record) => match first_index.get(&record.key_id) {
                        Some(first) => Err((
                            BatchError::AlreadyExists,
                            format!("key already imported (duplicate detected at index {first})"),
                        )),
                        None if headroom == 0 => {
                            Err((BatchError::ResourceExhausted, "API key quota exceeded".to_owned()))
                        }
                        None => {
                            first_index.insert(record.key_id.clone(), index);
                            headroom = headroom.saturating_sub(1);
                            Ok(record)
                        }
                    },
                }
            }
        };
        outcomes.push(outcome);
    }
    let candidates: Vec<KeyRecord> = outcomes.iter().filter_map(|o| o.as_ref().ok().cloned()).collect();
    let (inserted, revision) = if candidates.is_empty() {
        (Vec::new(), 0)
    } else {
        state.blocking(move |s| s.insert_batch(&candidates)).await.map_err(store_error)?
    };
    let mut inserted = inserted.into_iter();
    let mut results = Vec::with_capacity(outcomes.len());
    let mut errors = Vec::new();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.and_then(|record| match inserted.next() {
            Some(true) => Ok(record),
            _ => Err((BatchError::AlreadyExists, "key already imported (duplicate detected)".to_owned())),
        });
        results.push(match outcome {
            Ok(record) => json!({ "index": index, "imported_api_key": record.to_resource(now) }),
            Err((code, message)) => {
                errors.push(code);
                json!({ "index": index, "error_code": code.name(), "error_message": message })
            }
        });
    }
    let success_count = results.len() - errors.len();
    if success_count == 0 {
        return Err(dominant(&errors).whole((limit, current)));
    }
    if revision > 0 {
        state.publish(revision).await;
    }
    Ok(respond::json(
        StatusCode::OK,
        &json!({ "results": results, "success_count": success_count, "failure_count": errors.len() }),
    ))
}

pub async fn get(state: &AdminState, kind: KeyKind, key_id: &str) -> Handled {
    let id = key_id.to_owned();
    let record =
        state.blocking(move |s| s.get(kind, &id)).await.map_err(store_error)?.ok_or_else(|| not_found(kind))?;
    Ok(respond::json(StatusCode::OK, &record.to_resource(clock::now())))
}

pub async fn delete(state: &AdminState, kind: KeyKind, key_id: &str) -> Handled {
    let id = key_id.to_owned();
    let revision = state.blocking(move |s| s.delete(kind, &id)).await.map_err(key_error(kind))?;
    state.publish(revision).await;
    Ok(respond::no_content())
}

pub async fn revoke(state: &AdminState, kind: KeyKind, key_id: &str, req: &Request<Bytes>) -> Handled {
    let body: RevokeRequest = parse_body(req)?;
    let (reason, description) = validate::revocation(body.reason, body.description)?;
    let id = key_id.to_owned();
    let (_, revision) = state
        .blocking(move |s| {
            s.modify(kind, &id, &mut |record| {
                let now = clock::now();
                // A key still in its rotation grace period is cut off now, with this reason: a
                // key that leaked during the switch must not keep working until the grace ends.
                if record.status == KeyStatus::Revoked && !record.in_grace(now) {
                    return Err(ApiError::conflict("key is already revoked"));
                }
                record.revoke(reason, description.clone(), None, now);
                Ok(None)
            })
        })
        .await
        .map_err(key_error(kind))?;
    state.publish(revision).await;
    Ok(respond::no_content())
}

/// The mutable fields of talos-api.md §4.4.
const UPDATABLE: [&str; 5] = UpdateRequest::PATHS;

/// The unknown path is not quoted back (it is client data, and could be a key); the valid ones
/// are listed instead.
fn unknown_mask_path() -> ApiError {
    ApiError::bad_request(format!("unknown update_mask path: the paths are {}", UPDATABLE.join(", ")))
}

/// Applies one field of an update body (`None`: clear it).
fn apply_field(record: &mut KeyRecord, field: &str, value: Option<&Value>) -> Result<(), ApiError> {
    fn parse<T: serde::de::DeserializeOwned>(field: &str, value: Option<&Value>) -> Result<Option<T>, ApiError> {
        value
            .filter(|v| !v.is_null())
            .map(|v| {
                T::deserialize(v).map_err(|e| {
                    // serde may quote the value; never echo client data that could be a key.
                    let e = e.to_string();
                    let why = if e.contains('"') || e.contains('`') { "wrong type or value" } else { e.as_str() };
                    ApiError::bad_request(format!("invalid {field}: {why}"))
                })
            })
            .transpose()
    }
    match field {
        "name" => record.name = validate::bounded("name", parse(field, value)?, validate::MAX_NAME)?,
        "scopes" => record.scopes = validate::scopes(parse(field, value)?)?,
        "metadata" => record.metadata = validate::metadata(parse(field, value)?)?,
        "rate_limit_policy" => record.rate_limit_policy = validate::rate_limit_policy(parse(field, value)?)?,
        "ip_restriction" => record.allowed_cidrs = validate::allowed_cidrs(parse(field, value)?)?,
        _ => return Err(unknown_mask_path()),
    }
    Ok(())
}

/// PATCH with AIP-134 `update_mask` semantics (talos-api.md §4.4): without a mask every field
/// present in the body is applied; with a mask only masked fields are, and a masked field absent
/// from the body is cleared.
pub async fn update(state: &AdminState, kind: KeyKind, key_id: &str, req: &Request<Bytes>) -> Handled {
    let mut mask: Option<Vec<String>> = None;
    for (name, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        if name == "update_mask" || name == "updateMask" {
            let paths = mask.get_or_insert_with(Vec::new);
            paths.extend(value.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned));
        }
    }
    // An empty mask (`update_mask=`) is no mask, as for a protobuf FieldMask with no paths.
    let mask = mask.filter(|paths| !paths.is_empty());
    if let Some(paths) = &mask {
        if paths.iter().any(|p| !UPDATABLE.contains(&p.as_str())) {
            return Err(unknown_mask_path());
        }
    }
    let mut body: Map<String, Value> = parse_body(req)?;
    // The SDK sends the resource itself; the API docs show it wrapped. Accept both.
    let wrapper = match kind {
        KeyKind::Issued => "issued_api_key",
        KeyKind::Imported => "imported_api_key",
    };
    if let Some(Value::Object(inner)) = body.remove(wrapper) {
        body = inner;
    }
    let fields: Vec<String> = match mask {
        Some(paths) => paths,
        None => {
            UPDATABLE.iter().filter(|f| body.get(**f).is_some_and(|v| !v.is_null())).map(|f| (*f).to_owned()).collect()
        }
    };
    // Validate before touching the store, so a bad body never reaches a transaction.
    let mut probe = KeyRecord::empty(kind);
    for field in &fields {
        apply_field(&mut probe, field, body.get(field))?;
    }
    let id = key_id.to_owned();
    let (record, revision) = state
        .blocking(move |s| {
            s.modify(kind, &id, &mut |record| {
                for field in &fields {
                    apply_field(record, field, body.get(field))?;
                }
                record.update_time = clock::now();
                Ok(None)
            })
        })
        .await
        .map_err(key_error(kind))?;
    state.publish(revision).await;
    Ok(respond::json(StatusCode::OK, &record.to_resource(clock::now())))
}

/// Rotation (talos-api.md §4.6, decisions.md §5.6): a new key inheriting what the request does not
/// override, and the old key revoked as SUPERSEDED — after `grace_period` if one is given — in one
/// transaction.
pub async fn rotate(state: &AdminState, key_id: &str, req: &Request<Bytes>) -> Handled {
    let body: RotateRequest = parse_body(req)?;
    let name = body.name.map(|n| validate::bounded("name", Some(n), validate::MAX_NAME)).transpose()?;
    let scopes = body.scopes.map(|s| validate::scopes(Some(s))).transpose()?;
    let metadata = body.metadata.map(|m| validate::metadata(Some(m))).transpose()?;
    let rate_limit_policy = body.rate_limit_policy.map(|p| validate::rate_limit_policy(Some(p))).transpose()?;
    let allowed_cidrs = body.ip_restriction.map(|r| validate::allowed_cidrs(Some(r))).transpose()?;
    let visibility = normalise_visibility(body.visibility);
    let grace = match body.grace_period {
        Some(g) if g.negative => return Err(ApiError::bad_request("grace_period must not be negative")),
        Some(g) => g.value,
        None => Duration::ZERO,
    };
    let now = clock::now();
    let new_id = Uuid::new_v4();
    let keyring = state.verifier.keyring.clone();
    let id = key_id.to_owned();
    let config = state.config.clone();
    let (old, revision, created) = state
        .blocking(move |s| {
            let mut created = None;
            let modified = s.modify(KeyKind::Issued, &id, &mut |old| {
                if old.status_at(now) != KeyStatus::Active {
                    return Err(ApiError::failed_precondition("cannot rotate a non-active key"));
                }
                let visibility = visibility.unwrap_or(old.visibility);
                let prefix = issue_prefix(&config.credentials.api_keys.prefix, visibility)?;
                let new = KeyRecord {
                    key_id: new_id.hyphenated().to_string(),
                    name: name.clone().unwrap_or_else(|| old.name.clone()),
                    actor_id: old.actor_id.clone(),
                    scopes: scopes.clone().unwrap_or_else(|| old.scopes.clone()),
                    metadata: metadata.clone().unwrap_or_else(|| old.metadata.clone()),
                    status: KeyStatus::Active,
                    visibility,
                    token_prefix: prefix.clone(),
                    create_time: now,
                    update_time: now,
                    expire_time: old.expire_time,
                    rate_limit_policy: rate_limit_policy.clone().unwrap_or_else(|| old.rate_limit_policy.clone()),
                    allowed_cidrs: allowed_cidrs.clone().unwrap_or_else(|| old.allowed_cidrs.clone()),
                    ..KeyRecord::empty(KeyKind::Issued)
                };
                let secret = key::generate(&prefix, clock::secs(now), new_id, &keyring);
                // The grace period never outlives the old key's own expiry.
                let effective =
                    (!grace.is_zero()).then(|| now.saturating_add(clock::from_duration(grace)).min(old.expire_time));
                old.revoke(RevocationReason::Superseded, String::new(), effective, now);
                created = Some((new.clone(), secret));
                Ok(Some(new))
            });
            modified.map(|(old, revision)| (old, revision, created))
        })
        .await
        .map_err(key_error(KeyKind::Issued))?;
    let (new, secret) = created.ok_or_else(ApiError::internal)?;
    state.publish(revision).await;
    let mut resp = respond::json(
        StatusCode::CREATED,
        &json!({
            "issued_api_key": new.to_resource(clock::now()),
            "old_issued_api_key": old.to_resource(clock::now()),
            "secret": secret,
        }),
    );
    resp.headers_mut().insert(LOCATION, location(KeyKind::Issued, &new.key_id));
    Ok(resp)
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

pub async fn list(state: &AdminState, kind: KeyKind, req: &Request<Bytes>) -> Handled {
    let mut page_size = DEFAULT_PAGE_SIZE;
    let mut after: Option<Cursor> = None;
    let mut filter = (None, None);
    for (name, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*name {
            "page_size" => {
                let n: i64 = value.parse().map_err(|_| ApiError::bad_request("page_size must be an integer"))?;
                page_size = if n <= 0 { DEFAULT_PAGE_SIZE } else { n.min(MAX_PAGE_SIZE as i64) as usize };
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
    let collection = match kind {
        KeyKind::Issued => "issued_api_keys",
        KeyKind::Imported => "imported_api_keys",
    };
    Ok(respond::json(StatusCode::OK, &json!({ collection: keys, "next_page_token": next_page_token })))
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

    #[test]
    fn dominant_error_rule() {
        use BatchError::*;
        assert_eq!(dominant(&[AlreadyExists, InvalidArgument, InvalidArgument]), InvalidArgument);
        assert_eq!(dominant(&[AlreadyExists, InvalidArgument]), AlreadyExists);
        assert_eq!(dominant(&[ResourceExhausted, Internal]), Internal);
        assert_eq!(dominant(&[FailedPrecondition, ResourceExhausted]), FailedPrecondition);
    }
}
