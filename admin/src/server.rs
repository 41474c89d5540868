//! Transports for the admin service: hyper over TCP (`talos serve admin`), and the in-process
//! bridge through which the engine hands admin requests over in `talos serve`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::error::ApiError;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::{respond, AdminService, PeerAddr, MAX_BODY};

/// Pause after a failed accept (e.g. EMFILE) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The one framing rule hyper does not hold itself: an HTTP/1.1 request names its Host (RFC
/// 9112 §3.2). The rest it holds in its own way, within what RFC 9112 allows: a Content-Length
/// beside Transfer-Encoding is dropped and the connection closed after the answer (§6.3),
/// identical duplicate Content-Lengths are folded into one and conflicting ones refused (RFC
/// 9110 §8.6). The engine in front of `talos serve` refuses all of these outright.
fn framing_problem(parts: &http::request::Parts) -> Option<&'static str> {
    (parts.version == http::Version::HTTP_11 && !parts.headers.contains_key(http::header::HOST))
        .then_some("an HTTP/1.1 request must carry a Host header")
}

async fn hyper_handle(service: AdminService, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (mut parts, body) = req.into_parts();
    if let Some(problem) = framing_problem(&parts) {
        // Refused unread, and the connection closed: nothing after it is trusted.
        let mut resp = respond::error(&ApiError::bad_request(problem));
        respond::finish(&mut resp, &respond::request_id(&parts.headers));
        resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        return resp.map(Full::new);
    }
    // A declared body over the limit is refused before any of it is waited for.
    let declared = hyper::body::Body::size_hint(&body).lower();
    let collected = if declared > MAX_BODY as u64 {
        Err(ApiError::payload_too_large())
    } else {
        Limited::new(body, MAX_BODY).collect().await.map(|c| c.to_bytes()).map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                ApiError::payload_too_large()
            } else {
                ApiError::bad_request("the request body could not be read")
            }
        })
    };
    let resp = match collected {
        Ok(bytes) => {
            parts.extensions.insert(PeerAddr(peer));
            service.handle(Request::from_parts(parts, bytes)).await
        }
        Err(err) => {
            let mut resp = respond::error(&err);
            respond::finish(&mut resp, &respond::request_id(&parts.headers));
            resp
        }
    };
    resp.map(Full::new)
}

/// Serves the admin API on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (up to a grace period).
pub async fn serve(listener: TcpListener, service: AdminService, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    // A client has `serve.http.timeouts.read_header` to send a request head (talos-api.md §1.4).
    let header_read_timeout = service.state().config.serve.timeouts.read_header;
    let mut builder = hyper::server::conn::http1::Builder::new();
    // half_close: a client that shuts down its write side after the request still gets the answer.
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout).keep_alive(true).half_close(true);
    tokio::pin!(shutdown);
    let mut last_accept_warning = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors (or similar): back off instead of spinning,
                        // and say so at most once a second.
                        if last_accept_warning.is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(1)) {
                            tracing::warn!(error = %e, "accept failed; backing off");
                            last_accept_warning = Some(std::time::Instant::now());
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let metrics = service.state().metrics.clone();
                let service = service.clone();
                let conn = builder.serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        async move { Ok::<_, std::convert::Infallible>(hyper_handle(service, peer, req).await) }
                    }),
                );
                let conn = graceful.watch(conn);
                metrics.admin_connection_opened();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "admin connection ended with an error");
                    }
                    metrics.admin_connection_closed();
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight admin requests did not finish within the grace period");
    }
}

/// A reply slot for one handed-off request.
pub type Reply = futures_channel::oneshot::Receiver<Response<Bytes>>;

/// The in-process hand-off: spawns each request on the admin's tokio runtime and returns a
/// runtime-agnostic receiver for the response, which the engine awaits on its own runtime.
pub fn in_process(
    service: AdminService,
    runtime: tokio::runtime::Handle,
) -> impl Fn(Request<Bytes>) -> Reply + Send + Sync + 'static {
    move |req| {
        let (tx, rx) = futures_channel::oneshot::channel();
        let service = service.clone();
        runtime.spawn(async move {
            let _ = tx.send(service.handle(req).await);
        });
        rx
    }
}
