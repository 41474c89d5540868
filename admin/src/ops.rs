//! The operations listener (`serve.metrics`, default port 4422), run by every serve mode:
//! `GET /metrics` (Prometheus / OpenMetrics text), `GET /health/alive` and `GET /health/ready`.
//! It serves nothing else — no key route is ever reachable on it — so it can be opened to a
//! monitoring network without exposing either plane.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::error::ApiError;
use common::metrics::{Metrics, CONTENT_TYPE};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::respond;

/// Whether the process is ready to serve: `Err` carries the 503 to answer. Called on a
/// blocking thread (it may ping the store).
pub type Readiness = Arc<dyn Fn() -> Result<(), ApiError> + Send + Sync>;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

async fn handle(req: Request<Incoming>, metrics: Arc<Metrics>, ready: Readiness) -> Response<Full<Bytes>> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let resp = match req.uri().path() {
        "/metrics" | "/health/alive" | "/health/ready" if !get => respond::error(&ApiError::method_not_allowed()),
        "/metrics" => {
            let text = tokio::task::spawn_blocking(move || metrics.render()).await.unwrap_or_default();
            let mut resp = Response::new(Bytes::from(text));
            resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        "/health/alive" => respond::json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        "/health/ready" => match tokio::task::spawn_blocking(move || ready()).await {
            Ok(Ok(())) => respond::json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
            Ok(Err(err)) => respond::error(&err),
            Err(_) => respond::error(&ApiError::internal()),
        },
        _ => respond::error(&ApiError::route_not_found()),
    };
    resp.map(Full::new)
}

/// Serves the operations endpoints on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, ready: Readiness, shutdown: impl Future<Output = ()>) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    // half_close: a client that shuts down its write side after the request still gets the answer.
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).half_close(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (metrics, ready) = (metrics.clone(), ready.clone());
                let conn = builder.serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| {
                        let (metrics, ready) = (metrics.clone(), ready.clone());
                        async move { Ok::<_, Infallible>(handle(req, metrics, ready).await) }
                    }),
                );
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
}
