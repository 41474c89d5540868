//! Verify and batch verify on the admin plane (talos-api.md §4.8–§4.9). The CPU checks and the
//! rendering are `common::verify`'s, shared with the data plane, so both planes answer with the
//! same bytes; the admin plane looks keys up in the store rather than a snapshot.

use bytes::Bytes;
use common::clock;
use common::error::ApiError;
use common::metrics::Outcome;
use common::model::{BatchVerifyRequest, VerifyRequest};
use common::verify::{self, Found, LookupId, VerifyEntry, MAX_BATCH_VERIFY, MAX_CREDENTIAL_LEN};
use http::header::{HeaderName, HeaderValue};
use http::{Request, StatusCode};

use std::net::IpAddr;

use crate::{parse_body, respond, store_error, AdminState, Handled, PeerAddr};

/// `Ory-Talos-Cache`: the admin plane always reads the store.
const CACHE_SKIP: (&str, &str) = ("ory-talos-cache", "SKIP");

/// One `VerifyApiKeyResponse` body, and the header lines that go with a valid answer.
async fn verify_one(
    state: &AdminState,
    item: Option<VerifyRequest>,
    client_ip: Option<IpAddr>,
) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    let item = item.unwrap_or_default();
    let credential = item.credential.unwrap_or_default();
    if credential.len() > MAX_CREDENTIAL_LEN {
        return Err(ApiError::bad_request(format!("credential must be at most {MAX_CREDENTIAL_LEN} bytes")));
    }
    let audiences: Vec<&str> = item.expected_audiences.iter().flatten().map(String::as_str).collect();
    let now = clock::now();
    // API keys are read from the store first; derived tokens need no lookup.
    let entry = match state.verifier.precheck(&credential, now) {
        Ok(id) => lookup(state, id).await?,
        Err(_) => None,
    };
    Ok(match state.verifier.verify(&credential, &audiences, now, client_ip, &Found(entry.as_ref())) {
        Ok(answer) => {
            state.metrics.admin_verify.count(Outcome::Valid);
            (answer.body().to_vec(), answer.headers().to_vec())
        }
        Err(rejection) => {
            state.metrics.admin_verify.count(rejection.into());
            (rejection.body().to_vec(), Vec::new())
        }
    })
}

/// The client address per `serve.http.client_ip_source`.
fn client_ip(state: &AdminState, req: &Request<Bytes>) -> Option<IpAddr> {
    let peer = req.extensions().get::<PeerAddr>()?.0.ip();
    verify::client_ip(state.verifier.client_ip_source, peer, |name| req.headers().get(name).map(|v| v.as_bytes()))
}

async fn lookup(state: &AdminState, id: LookupId) -> Result<Option<VerifyEntry>, ApiError> {
    let key_id = id.key_id();
    let record = state.blocking(move |s| s.get(id.kind(), &key_id)).await.map_err(store_error)?;
    Ok(record.map(|r| VerifyEntry::from_record(&r, &state.verifier)))
}

fn with_cache_header(mut resp: http::Response<Bytes>) -> http::Response<Bytes> {
    resp.headers_mut().insert(HeaderName::from_static(CACHE_SKIP.0), HeaderValue::from_static(CACHE_SKIP.1));
    resp
}

pub async fn verify(state: &AdminState, req: &Request<Bytes>) -> Handled {
    let started = std::time::Instant::now();
    let body: VerifyRequest = parse_body(req)?;
    let (answer, headers) = verify_one(state, Some(body), client_ip(state, req)).await?;
    let mut resp = with_cache_header(respond::raw_json(StatusCode::OK, answer));
    // Pre-rendered `name: value\r\n` lines from the key's entry.
    for line in headers.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
            {
                resp.headers_mut().insert(name, value);
            }
        }
    }
    state.metrics.admin_verify.latency.observe(started.elapsed());
    Ok(resp)
}

pub async fn batch_verify(state: &AdminState, req: &Request<Bytes>) -> Handled {
    let started = std::time::Instant::now();
    let body: BatchVerifyRequest = parse_body(req)?;
    let items = body.requests.unwrap_or_default();
    if items.len() > MAX_BATCH_VERIFY {
        return Err(ApiError::bad_request(format!("requests must have at most {MAX_BATCH_VERIFY} items")));
    }
    let client_ip = client_ip(state, req);
    let mut out = verify::BATCH_OPEN.to_vec();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend(verify_one(state, item, client_ip).await?.0);
    }
    out.extend_from_slice(verify::BATCH_CLOSE);
    state.metrics.admin_verify.latency.observe(started.elapsed());
    Ok(with_cache_header(respond::raw_json(StatusCode::OK, out)))
}

/// `POST /v2alpha1/apiKeys:selfRevoke`: 200 `{}` once the key is revoked (or already was).
pub async fn self_revoke(state: &AdminState, req: &Request<Bytes>) -> Handled {
    let body: common::self_revoke::SelfRevokeRequest = parse_body(req)?;
    let store = state.store.clone();
    let verifier = state.verifier.clone();
    let revision =
        tokio::task::spawn_blocking(move || common::self_revoke::self_revoke(&*store, &verifier, body, clock::now()))
            .await
            .map_err(|_| ApiError::internal())??;
    state.publish(revision).await;
    Ok(respond::raw_json(StatusCode::OK, &b"{}"[..]))
}
