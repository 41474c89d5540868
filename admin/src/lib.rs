//! The admin plane: key management over the `v2alpha1` API, on tokio.
//!
//! Handlers are written against `http::Request<Bytes>` / `http::Response<Bytes>` and know nothing
//! of the transport: [`server`] drives them with hyper in `talos serve admin`, and the engine's
//! in-process bridge ([`server::in_process`]) drives them in `talos serve`. The admin plane is the
//! only writer of keys (self-revocation aside). After each commit it wakes the snapshot refresher
//! when one runs in the same process, and waits briefly for the new revision, so a revocation is
//! visible on the data plane by the time the call returns.

mod derive;
mod keys;
pub mod ops;
mod respond;
pub mod server;
mod validate;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::clock;
use common::config::Config;
use common::error::ApiError;
use common::metrics::Metrics;
use common::model::KeyKind;
use common::page_token::PageTokens;
use common::snapshot::SnapshotCell;
use common::store::{Store, StoreError};
use common::verify::Verifier;
use http::{Method, Request, Response, StatusCode};

pub use common::verify::PeerAddr;
pub use respond::SECURITY_HEADERS;

/// How long a write waits for its revision to reach the in-process snapshot.
const SNAPSHOT_SYNC_TIMEOUT: Duration = Duration::from_millis(100);
/// Largest request body (decisions.md §5.7).
pub const MAX_BODY: usize = 1024 * 1024;

/// Everything the handlers share.
pub struct AdminState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub verifier: Verifier,
    pub page_tokens: PageTokens,
    /// The in-process snapshot (in `talos serve`), woken after each write.
    pub snapshot: Option<Arc<SnapshotCell>>,
    pub metrics: Arc<Metrics>,
}

impl AdminState {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        verifier: Verifier,
        snapshot: Option<Arc<SnapshotCell>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let legacy: Vec<&[u8]> = config
            .secrets
            .pagination
            .iter()
            .flat_map(|set| std::iter::once(&set.current).chain(set.retired.iter().map(|r| &r.value)))
            .map(|s| s.expose().as_bytes())
            .collect();
        let page_tokens = PageTokens::new(&verifier.keyring, clock::secs(clock::now()), &legacy);
        Self { config, store, verifier, page_tokens, snapshot, metrics }
    }

    /// Runs a blocking store call off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .unwrap_or_else(|e| Err(StoreError::Backend(format!("store task failed: {e}"))))
    }

    /// Makes a committed revision visible to the in-process data plane before answering.
    async fn publish(&self, revision: u64) {
        if let Some(cell) = self.snapshot.clone() {
            let visible = tokio::task::spawn_blocking(move || cell.wait_for(revision, SNAPSHOT_SYNC_TIMEOUT))
                .await
                .unwrap_or(false);
            if !visible {
                tracing::warn!(revision, "snapshot did not reach the revision in time");
            }
        }
    }
}

/// Maps a store failure to the API; backend detail goes to the log only.
fn store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::not_found("API key not found"),
        StoreError::Refused(api) => api,
        StoreError::Duplicate => ApiError::api_key_exists("An API key with this identifier already exists."),
        StoreError::Backend(detail) => {
            tracing::error!(error = %detail, "store operation failed");
            ApiError::internal()
        }
        StoreError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "store unavailable");
            ApiError::unavailable("the store is unavailable; nothing was changed, try again")
        }
    }
}

/// Which routes the admin service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// `talos serve admin`: every admin route; self-revocation belongs to the data plane (404).
    Admin,
    /// Behind the engine in `talos serve`: everything the engine does not answer itself.
    AllInOne,
}

/// The admin service: one entry point for every request.
#[derive(Clone)]
pub struct AdminService {
    state: Arc<AdminState>,
    plane: Plane,
}

type Handled = Result<Response<Bytes>, ApiError>;

impl AdminService {
    pub fn new(state: AdminState, plane: Plane) -> Self {
        Self { state: Arc::new(state), plane }
    }

    pub fn state(&self) -> &AdminState {
        &self.state
    }

    /// Answers one request; never fails (errors become envelopes).
    pub async fn handle(&self, req: Request<Bytes>) -> Response<Bytes> {
        let started = std::time::Instant::now();
        let request_id = respond::request_id(req.headers());
        let method = loggable_method(req.method());
        let path = loggable_path(req.uri().path());
        let result = self.route(req).await;
        // Unknown paths share one label: a client must not be able to mint label values.
        let route = match &result {
            Err(err) if err.is_route_not_found() => "unmatched",
            _ => path.as_str(),
        };
        let status = match &result {
            Ok(resp) => resp.status().as_u16(),
            Err(err) => err.status,
        };
        self.state.metrics.admin_request(route, status, started.elapsed());
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => respond::error(&err),
        };
        respond::finish(&mut resp, &request_id);
        tracing::info!(
            target: "talos::admin",
            %method,
            path = %path,
            status = resp.status().as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
            request_id = %request_id,
            "request"
        );
        resp
    }

    async fn route(&self, req: Request<Bytes>) -> Handled {
        let path = req.uri().path().to_owned();
        let state = &*self.state;
        // Exact matching: `//v2alpha1/admin/…` is not `/v2alpha1/admin/…` (an edge proxy that
        // filters by prefix must not be bypassable with extra slashes).
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or("").split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(ApiError::route_not_found());
        }
        let method = req.method().clone();
        // (allowed methods, handler) per path shape; a known path with another method is 405.
        match segments.as_slice() {
            ["health", "alive"] => only(&method, &[Method::GET], || async { Ok(health_ok()) }).await,
            ["health", "ready"] => only(&method, &[Method::GET], || ready(state)).await,
            ["version"] => {
                only(&method, &[Method::GET], || async {
                    Ok(respond::json(StatusCode::OK, &serde_json::json!({ "version": env!("CARGO_PKG_VERSION") })))
                })
                .await
            }
            ["v2alpha1", "admin", "issuedApiKeys"] => match method {
                Method::POST => keys::issue(state, &req).await,
                Method::GET | Method::HEAD => keys::list(state, KeyKind::Issued, &req).await,
                _ => not_allowed(&[Method::GET, Method::POST]),
            },
            ["v2alpha1", "admin", "importedApiKeys"] => match method {
                Method::POST => keys::import(state, &req).await,
                Method::GET | Method::HEAD => keys::list(state, KeyKind::Imported, &req).await,
                _ => not_allowed(&[Method::GET, Method::POST]),
            },
            ["v2alpha1", "admin", "importedApiKeys:batchCreate"] => {
                only(&method, &[Method::POST], || keys::batch_import(state, &req)).await
            }
            ["v2alpha1", "admin", collection @ ("issuedApiKeys" | "importedApiKeys"), id] => {
                let kind = if *collection == "issuedApiKeys" { KeyKind::Issued } else { KeyKind::Imported };
                match (id.split_once(':'), kind) {
                    (None, KeyKind::Issued) => match method {
                        Method::GET | Method::HEAD => keys::get(state, kind, id).await,
                        Method::PATCH => keys::update(state, kind, id, &req).await,
                        _ => not_allowed(&[Method::GET, Method::PATCH]),
                    },
                    (None, KeyKind::Imported) => match method {
                        Method::GET | Method::HEAD => keys::get(state, kind, id).await,
                        Method::PATCH => keys::update(state, kind, id, &req).await,
                        Method::DELETE => keys::delete(state, kind, id).await,
                        _ => not_allowed(&[Method::GET, Method::PATCH, Method::DELETE]),
                    },
                    (Some((id, "revoke")), _) => {
                        only(&method, &[Method::POST], || keys::revoke(state, kind, id, &req)).await
                    }
                    (Some((id, "rotate")), KeyKind::Issued) => {
                        only(&method, &[Method::POST], || keys::rotate(state, id, &req)).await
                    }
                    _ => Err(ApiError::route_not_found()),
                }
            }
            ["v2alpha1", "admin", "apiKeys:derive"] => {
                only(&method, &[Method::POST], || derive::derive(state, &req)).await
            }
            ["v2alpha1", "derivedKeys", "jwks.json"] => only(&method, &[Method::GET], || derive::jwks(state)).await,
            ["v2alpha1", "apiKeys:selfRevoke"] if self.plane == Plane::AllInOne => {
                only(&method, &[Method::POST], || verify::self_revoke(state, &req)).await
            }
            ["v2alpha1", "admin", "apiKeys:verify"] => {
                only(&method, &[Method::POST], || verify::verify(state, &req)).await
            }
            ["v2alpha1", "admin", "apiKeys:batchVerify"] => {
                only(&method, &[Method::POST], || verify::batch_verify(state, &req)).await
            }
            _ => Err(ApiError::route_not_found()),
        }
    }
}

/// Runs `handler` when the method is one of `allowed` (HEAD counts as GET: hyper and the
/// engine's bridge drop the body), or answers 405.
async fn only<F, Fut>(method: &Method, allowed: &[Method], handler: F) -> Handled
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Handled>,
{
    if allowed.contains(method) || (*method == Method::HEAD && allowed.contains(&Method::GET)) {
        handler().await
    } else {
        not_allowed(allowed)
    }
}

/// 405 in the envelope, with the `Allow` header RFC 9110 §15.5.6 requires.
fn not_allowed(allowed: &[Method]) -> Handled {
    let mut names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    if allowed.contains(&Method::GET) {
        names.push("HEAD");
    }
    let mut resp = respond::error(&ApiError::method_not_allowed());
    if let Ok(value) = http::HeaderValue::from_str(&names.join(", ")) {
        resp.headers_mut().insert(http::header::ALLOW, value);
    }
    Ok(resp)
}

/// The method for the log: an extension method is any token the client chose (a key, even), so
/// only the standard ones are logged by name.
fn loggable_method(method: &Method) -> &'static str {
    const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
    STANDARD.into_iter().find(|m| *m == method.as_str()).unwrap_or("{other}")
}

/// The request path for the log, made of the routes' fixed words only. Any other segment — a
/// key id, or a key a client put in the path by mistake — is logged as `{key_id}` (where routes
/// have one) or `{other}`, and an unknown verb after `:` as `{other}`: no client data reaches the
/// log this way.
fn loggable_path(path: &str) -> String {
    const WORDS: &[&str] = &[
        "v2alpha1",
        "admin",
        "issuedApiKeys",
        "importedApiKeys",
        "importedApiKeys:batchCreate",
        "apiKeys:derive",
        "apiKeys:verify",
        "apiKeys:batchVerify",
        "apiKeys:selfRevoke",
        "derivedKeys",
        "jwks.json",
        "health",
        "alive",
        "ready",
        "version",
    ];
    const VERBS: &[&str] = &["revoke", "rotate"];
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if segment.is_empty() || WORDS.contains(&segment) {
            out.push_str(segment);
            continue;
        }
        out.push_str(if i == 4 { "{key_id}" } else { "{other}" });
        if let Some((_, verb)) = segment.split_once(':') {
            out.push(':');
            out.push_str(if VERBS.contains(&verb) { verb } else { "{other}" });
        }
    }
    out
}

fn health_ok() -> Response<Bytes> {
    respond::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

async fn ready(state: &AdminState) -> Handled {
    match state.blocking(|s| s.ping()).await {
        Ok(()) => Ok(health_ok()),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::unavailable("the store is unavailable"))
        }
    }
}

/// Parses a JSON request body; an empty body reads as `{}`. Like grpc-gateway, any content type
/// is read as JSON.
fn parse_body<T: serde::de::DeserializeOwned + Default>(req: &Request<Bytes>) -> Result<T, ApiError> {
    let body = req.body();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("invalid request body: expected a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| common::error::invalid_body(&e))
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn loggable_paths_hold_no_client_data() {
        let check = |path: &str, expected: &str| assert_eq!(loggable_path(path), expected, "{path}");
        check("/v2alpha1/admin/issuedApiKeys", "/v2alpha1/admin/issuedApiKeys");
        check("/v2alpha1/admin/issuedApiKeys/0b7e-id", "/v2alpha1/admin/issuedApiKeys/{key_id}");
        check("/v2alpha1/admin/issuedApiKeys/0b7e-id:rotate", "/v2alpha1/admin/issuedApiKeys/{key_id}:rotate");
        check("/v2alpha1/admin/importedApiKeys/ab:revoke", "/v2alpha1/admin/importedApiKeys/{key_id}:revoke");
        check("/v2alpha1/admin/importedApiKeys:batchCreate", "/v2alpha1/admin/importedApiKeys:batchCreate");
        check("/v2alpha1/admin/issuedApiKeys/id:ory_ak_v1_x_y", "/v2alpha1/admin/issuedApiKeys/{key_id}:{other}");
        check("/v2alpha1/admin/ory_ak_v1_x_y", "/v2alpha1/admin/{other}");
        check("/ory_ak_v1_x_y/health", "/{other}/health");
        check("/v2alpha1/admin/apiKeys:ory_ak_v1_x_y", "/v2alpha1/admin/{other}:{other}");
        check("/health/ready", "/health/ready");
        check("//v2alpha1/admin/issuedApiKeys/", "//v2alpha1/admin/issuedApiKeys/");
        check("", "");
    }

    #[test]
    fn loggable_methods_are_the_standard_ones() {
        use http::Method;
        assert_eq!(super::loggable_method(&Method::PATCH), "PATCH");
        assert_eq!(super::loggable_method(&Method::from_bytes(b"ory_ak_v1_x_y").unwrap()), "{other}");
    }
}
