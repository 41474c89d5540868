//! One client connection on a worker: read, frame, route, answer, repeat.
//!
//! Each connection owns one read buffer and one write buffer, reused for every request. Every
//! complete request already in the read buffer is answered before the next read (pipelining), and
//! all their responses go out in one write. A framing error is answered with its 4xx and the
//! connection is closed without reading anything after it (RFC 9112 §11.2: no guessing where the
//! next request starts).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::error::ApiError;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::parse::{self, BodyFraming, ChunkedDecoder, Method, RequestHead, MAX_BODY, MAX_HEAD, MAX_HEADERS};
use crate::respond::{self, Persist, Response};

use crate::verify::{self, Reply, Source};
use crate::{Plane, Shared};

/// Initial read and write buffers. A verify request is a few hundred bytes and its answer under
/// one KiB, so 4 KiB holds several pipelined ones; a buffer grows (allocating) only for larger
/// traffic. Small buffers keep an idle keep-alive connection at about 8 KiB of memory, which is
/// what thousands of mostly idle clients cost.
const READ_BUF: usize = 4 * 1024;
const WRITE_BUF: usize = 4 * 1024;
/// Bounds of the drain after a refused request (see `linger`).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 8 * 1024 * 1024;
/// How long a shed connection may take to receive its 503.
const SHED_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest encoded body buffered: chunk framing may add overhead to the 1 MiB decoded limit.
const MAX_ENCODED_BODY: usize = 4 * MAX_BODY;

const VERIFY: &[u8] = b"/v2alpha1/admin/apiKeys:verify";
const BATCH_VERIFY: &[u8] = b"/v2alpha1/admin/apiKeys:batchVerify";
const HEALTH_ALIVE: &[u8] = b"/health/alive";
const HEALTH_READY: &[u8] = b"/health/ready";
const VERSION: &[u8] = b"/version";
const JWKS: &[u8] = b"/v2alpha1/derivedKeys/jwks.json";
const SELF_REVOKE: &[u8] = b"/v2alpha1/apiKeys:selfRevoke";

/// What to do after answering.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

/// A chunked body being received across reads: the decoder's state and how much of the encoded
/// body it has consumed, so each byte is decoded once however the body arrives.
struct ChunkedProgress {
    decoder: ChunkedDecoder,
    consumed: usize,
}

fn framing_error(e: parse::FramingError) -> ApiError {
    ApiError::new(e.status(), status_code_name(e.status()), reason(e.reason()), e.message())
}

/// Answers a connection the worker has no room for: 503 in the Talos envelope, then close.
/// (Refusing to accept would leave the client waiting in the backlog instead.)
pub async fn shed(mut stream: TcpStream) {
    let mut out = Vec::with_capacity(512);
    let err = ApiError::unavailable("the server is at its connection limit; try again later");
    respond::write_error(&mut out, &err, b"", Persist::Close, false, None);
    let _ = monoio::time::timeout(SHED_WRITE_TIMEOUT, stream.write_all(out)).await;
}

/// Counts a connection in its worker's open total (and the metrics) while it lives.
struct Held<'a>(&'a Shared);

impl<'a> Held<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.open.set(shared.open.get() + 1);
        shared.metrics.connection_opened();
        Held(shared)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
        self.0.metrics.connection_closed();
    }
}

pub async fn serve(mut stream: TcpStream, peer: SocketAddr, shared: Rc<Shared>) {
    let _held = Held::new(&shared);
    let _ = stream.set_nodelay(true);
    let mut rbuf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut wbuf: Vec<u8> = Vec::with_capacity(WRITE_BUF);
    let mut chunked_body: Vec<u8> = Vec::new();
    let mut chunked: Option<ChunkedProgress> = None;
    let mut start = 0usize;
    let mut busy = Busy { shared: &shared, counted: false };
    // Whether `100 Continue` went out for the request being received (RFC 9110 §10.1.1).
    let mut continue_sent = false;
    // Whether the connection closes because a request was refused unread (a framing error).
    let mut refused = false;
    // When the first byte of the request being received arrived: its head must be complete
    // within `timeouts.read_header` of it and the whole request within `timeouts.read`, however
    // slowly its bytes drip in (slowloris). `head_received` says which bound applies.
    let mut request_started: Option<Instant> = None;
    let mut head_received = false;
    let timeouts = shared.timeouts;
    loop {
        // Answer every complete request already buffered.
        let mut next = Next::Continue;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let head = match parse::parse_head(&rbuf[start..], &mut headers) {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(e) => {
                    respond::write_error(&mut wbuf, &framing_error(e), b"", Persist::Close, false, None);
                    next = Next::Close;
                    refused = true;
                    break;
                }
            };
            let body_start = start + head.head_len;
            head_received = true;
            let (body, consumed): (&[u8], usize) = match head.body {
                BodyFraming::None => (&[], head.head_len),
                BodyFraming::Length(n) => {
                    if rbuf.len() - body_start < n {
                        if head.expect_continue && !continue_sent {
                            wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                            continue_sent = true;
                        }
                        break;
                    }
                    (&rbuf[body_start..body_start + n], head.head_len + n)
                }
                BodyFraming::Chunked => {
                    let progress = chunked.get_or_insert_with(|| {
                        chunked_body.clear();
                        ChunkedProgress { decoder: ChunkedDecoder::new(), consumed: 0 }
                    });
                    let from = body_start + progress.consumed;
                    match progress.decoder.decode(&rbuf[from..], &mut chunked_body) {
                        Ok((used, true)) => {
                            let total = progress.consumed + used;
                            chunked = None;
                            (&chunked_body[..], head.head_len + total)
                        }
                        Ok((used, false)) => {
                            progress.consumed += used;
                            if head.expect_continue && !continue_sent {
                                wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                                continue_sent = true;
                            }
                            break;
                        }
                        Err(e) => {
                            respond::write_error(
                                &mut wbuf,
                                &framing_error(e),
                                b"",
                                Persist::Close,
                                false,
                                head.request_id,
                            );
                            next = Next::Close;
                            refused = true;
                            break;
                        }
                    }
                }
            };
            // Inside a request: shutdown waits for this answer.
            busy.set(true);
            let persist = Persist::of(head.keep_alive && !shared.shutting_down(), head.minor_version);
            let req = Incoming { head: &head, headers: &headers[..head.header_count], body, peer, persist };
            next = answer(&shared, &req, &mut wbuf).await;
            start += consumed;
            continue_sent = false;
            request_started = None;
            head_received = false;
            if next == Next::Close {
                break;
            }
        }
        if !wbuf.is_empty() {
            // A client that does not take its answers is dropped, not waited for.
            match monoio::time::timeout(timeouts.write, stream.write_all(wbuf)).await {
                Ok((Ok(_), buf)) => {
                    wbuf = buf;
                    wbuf.clear();
                }
                Ok((Err(_), _)) | Err(_) => return,
            }
        }
        busy.set(false);
        if next == Next::Close {
            if refused {
                linger(&mut stream, rbuf).await;
            }
            return;
        }
        // Keep unread bytes at the front of the buffer (a copy, no allocation).
        if start > 0 {
            rbuf.drain(..start);
            start = 0;
        }
        if rbuf.is_empty() {
            if shared.shutting_down() {
                return;
            }
            // Give back what one large request made the buffer grow to.
            if rbuf.capacity() > 4 * READ_BUF {
                rbuf = Vec::with_capacity(READ_BUF);
            }
        } else if rbuf.len() == rbuf.capacity() {
            if rbuf.len() >= MAX_HEAD + MAX_ENCODED_BODY {
                // The parser bounds the head; a body encoded this large is refused outright.
                respond::write_error(&mut wbuf, &ApiError::payload_too_large(), b"", Persist::Close, false, None);
                let (res, _) = stream.write_all(wbuf).await;
                if res.is_ok() {
                    linger(&mut stream, rbuf).await;
                }
                return;
            }
            rbuf.reserve(rbuf.capacity());
        }
        let timeout = if rbuf.is_empty() {
            timeouts.idle
        } else {
            let started = *request_started.get_or_insert_with(Instant::now);
            let bound = if head_received { timeouts.read } else { timeouts.read_header };
            bound.saturating_sub(started.elapsed())
        };
        if timeout.is_zero() {
            request_timed_out(&mut stream, wbuf).await;
            return;
        }
        let filled = rbuf.len();
        let cap = rbuf.capacity();
        let read = monoio::time::timeout(timeout, stream.read(rbuf.slice_mut(filled..cap))).await;
        match read {
            Ok((Ok(n), slice)) => {
                rbuf = slice.into_inner();
                if n == 0 {
                    return;
                }
                if filled == 0 {
                    request_started = Some(Instant::now());
                }
            }
            // A read error: nothing more to answer.
            Ok((Err(_), _)) => return,
            // An idle connection is closed silently; a request in progress is told why.
            Err(_) => {
                if filled > 0 {
                    request_timed_out(&mut stream, wbuf).await;
                }
                return;
            }
        }
    }
}

/// A request that did not arrive within its read deadline: 408 and a close (RFC 9110 §15.5.9).
async fn request_timed_out(stream: &mut TcpStream, mut wbuf: Vec<u8>) {
    let err = ApiError::new(408, "DEADLINE_EXCEEDED", "REQUEST_TIMEOUT", "The request was not received in time");
    wbuf.clear();
    respond::write_error(&mut wbuf, &err, b"", Persist::Close, false, None);
    let _ = monoio::time::timeout(SHED_WRITE_TIMEOUT, stream.write_all(wbuf)).await;
}

/// After refusing a request, the client may still be sending it. Closing at once would make the
/// kernel reset the connection, which can destroy the error answer before the client reads it
/// (RFC 9112 §9.6): so the write side is shut, and what still arrives is read and discarded —
/// at most LINGER_BYTES, for at most LINGER_TIME.
async fn linger(stream: &mut TcpStream, mut buf: Vec<u8>) {
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        buf.clear();
        match monoio::time::timeout(left, stream.read(buf)).await {
            Ok((Ok(n), returned)) if n > 0 => {
                drained += n;
                buf = returned;
            }
            _ => return,
        }
    }
}

/// Counts this connection in the worker's busy total while it is inside a request.
struct Busy<'a> {
    shared: &'a Shared,
    counted: bool,
}

impl Busy<'_> {
    fn set(&mut self, busy: bool) {
        if busy != self.counted {
            let n = self.shared.busy.get();
            self.shared.busy.set(if busy { n + 1 } else { n - 1 });
            self.counted = busy;
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

fn status_code_name(status: u16) -> &'static str {
    match status {
        400 | 413 | 414 | 431 => "INVALID_ARGUMENT",
        501 => "UNIMPLEMENTED",
        505 => "UNIMPLEMENTED",
        _ => "UNKNOWN",
    }
}

fn reason(snake: &'static str) -> &'static str {
    match snake {
        "bad_request" => "BAD_REQUEST",
        "uri_too_long" => "URI_TOO_LONG",
        "headers_too_large" | "request_header_fields_too_large" => "REQUEST_HEADER_FIELDS_TOO_LARGE",
        "payload_too_large" => "PAYLOAD_TOO_LARGE",
        "not_implemented" => "NOT_IMPLEMENTED",
        "version_not_supported" | "http_version_not_supported" => "HTTP_VERSION_NOT_SUPPORTED",
        _ => "BAD_REQUEST",
    }
}

/// One complete request, borrowed from the read buffer, and whether its connection stays open:
/// everything a route needs to answer it.
struct Incoming<'r, 'b> {
    head: &'r RequestHead<'b>,
    headers: &'r [httparse::Header<'b>],
    body: &'r [u8],
    peer: SocketAddr,
    persist: Persist,
}

impl Incoming<'_, '_> {
    /// HEAD: the answer's headers without its body.
    fn head_only(&self) -> bool {
        self.head.method == Method::Head
    }

    fn json(&self, out: &mut Vec<u8>, status: u16, body: &[u8]) {
        let response = Response { status, body, cache: None, persist: self.persist, head_only: self.head_only() };
        respond::write(out, &response, self.head.request_id);
    }

    fn error(&self, out: &mut Vec<u8>, err: &ApiError) {
        respond::write_error(out, err, b"", self.persist, self.head_only(), self.head.request_id);
    }

    /// 405 with the `Allow` header the route takes (RFC 9110 §15.5.6).
    fn not_allowed(&self, out: &mut Vec<u8>, allow: &'static [u8]) {
        respond::write_error(
            out,
            &ApiError::method_not_allowed(),
            allow,
            self.persist,
            self.head_only(),
            self.head.request_id,
        );
    }
}

const ALLOW_POST: &[u8] = b"allow: POST\r\n";
const ALLOW_GET: &[u8] = b"allow: GET, HEAD\r\n";

/// Routes one request and appends its response.
async fn answer(shared: &Shared, req: &Incoming<'_, '_>, out: &mut Vec<u8>) -> Next {
    let log = shared.sample_log().then(|| (Instant::now(), out.len()));
    let (head, method) = (req.head, req.head.method);
    let readable = matches!(method, Method::Get | Method::Head);
    let route: Option<verify::Route> = match head.path {
        VERIFY => Some(verify::verify),
        BATCH_VERIFY => Some(verify::batch_verify),
        _ => None,
    };
    match route {
        Some(_) if method != Method::Post => req.not_allowed(out, ALLOW_POST),
        Some(route) => data_plane(shared, req, out, route),
        None if head.path == JWKS => match &shared.jwks {
            _ if !readable => req.not_allowed(out, ALLOW_GET),
            Some(jwks) => req.json(out, 200, jwks),
            None => {
                let mut err = ApiError::internal();
                err.message = "no active signing keys found".into();
                req.error(out, &err);
            }
        },
        None if shared.plane == Plane::Check && head.path == SELF_REVOKE => match method {
            Method::Post => self_revoke(shared, req, out).await,
            _ => req.not_allowed(out, ALLOW_POST),
        },
        None if shared.plane == Plane::Check && matches!(head.path, HEALTH_ALIVE | HEALTH_READY | VERSION) => {
            if readable {
                health(shared, req, out);
            } else {
                req.not_allowed(out, ALLOW_GET);
            }
        }
        None => match &shared.fallback {
            Some(fallback) => hand_off(fallback, req, out).await,
            None => req.error(out, &ApiError::route_not_found()),
        },
    }
    if let Some((started, at)) = log {
        log_request(shared, head, &out[at..], started);
    }
    if req.persist.keeps_open() {
        Next::Continue
    } else {
        Next::Close
    }
}

/// One sampled request-log line: the route (data-plane paths by name, anything else as
/// `other`) and a standard method name or `OTHER`, so nothing a client chose reaches the log
/// but its request id; then the status and duration.
fn log_request(shared: &Shared, head: &RequestHead<'_>, response: &[u8], started: Instant) {
    let route = match head.path {
        VERIFY => "/v2alpha1/admin/apiKeys:verify",
        BATCH_VERIFY => "/v2alpha1/admin/apiKeys:batchVerify",
        SELF_REVOKE => "/v2alpha1/apiKeys:selfRevoke",
        JWKS => "/v2alpha1/derivedKeys/jwks.json",
        HEALTH_ALIVE => "/health/alive",
        HEALTH_READY => "/health/ready",
        VERSION => "/version",
        _ => "other",
    };
    let method = match head.method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Other => "OTHER",
    };
    let status = response.get(9..12).and_then(|s| std::str::from_utf8(s).ok()).unwrap_or("");
    let request_id = head.request_id.map(String::from_utf8_lossy).unwrap_or_default();
    tracing::info!(
        target: "talos::engine",
        plane = if shared.plane == Plane::Check { "check" } else { "all" },
        method,
        route,
        status,
        duration_us = started.elapsed().as_micros() as u64,
        request_id = %request_id,
        "request"
    );
}

/// Verify or batch verify from the snapshot, composed into `out` by [`verify::respond`].
fn data_plane(shared: &Shared, req: &Incoming<'_, '_>, out: &mut Vec<u8>, route: verify::Route) {
    let started = Instant::now();
    let snapshot = shared.snapshot.load();
    let client_ip = common::verify::client_ip(shared.verifier.client_ip_source, req.peer.ip(), |name| {
        req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    });
    let source = Source {
        verifier: &shared.verifier,
        snapshot: &snapshot,
        store: &*shared.store,
        bypass: req.head.cache_bypass,
        client_ip,
        metrics: &shared.metrics.verify,
    };
    let reply = Reply { persist: req.persist, head_only: req.head_only(), request_id: req.head.request_id };
    verify::respond(route, &source, req.body, &reply, out);
    shared.metrics.verify.latency.observe(started.elapsed());
}

/// Self-revocation on the check plane: the store write runs on its own thread (never on the
/// worker), and the worker's snapshot holds the revocation before the answer goes out.
async fn self_revoke(shared: &Shared, req: &Incoming<'_, '_>, out: &mut Vec<u8>) {
    let request: common::self_revoke::SelfRevokeRequest = if req.body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        match serde_json::from_slice(req.body) {
            Ok(r) => r,
            Err(e) => return req.error(out, &common::error::invalid_body(&e)),
        }
    };
    let (tx, rx) = futures_channel::oneshot::channel();
    let store = shared.store.clone();
    let verifier = shared.verifier.clone();
    let snapshot = shared.snapshot.clone();
    let spawned = std::thread::Builder::new().name("talos-self-revoke".into()).spawn(move || {
        let result = common::self_revoke::self_revoke(&*store, &verifier, request, common::clock::now());
        if let Ok(revision) = result {
            snapshot.wait_for(revision, Duration::from_millis(100));
        }
        let _ = tx.send(result);
    });
    let result = match spawned {
        Ok(_) => rx.await.unwrap_or_else(|_| Err(ApiError::internal())),
        Err(_) => Err(ApiError::internal()),
    };
    match result {
        Ok(_) => req.json(out, 200, b"{}"),
        Err(err) => req.error(out, &err),
    }
}

/// `/health/alive`, `/health/ready` and `/version` on the check plane.
fn health(shared: &Shared, req: &Incoming<'_, '_>, out: &mut Vec<u8>) {
    match req.head.path {
        HEALTH_ALIVE => req.json(out, 200, br#"{"status":"ok"}"#),
        HEALTH_READY => {
            // Ready while the snapshot is fresh: the store answered within max_staleness.
            let age = shared.snapshot.age();
            let snapshot = shared.snapshot.load();
            if age > shared.max_staleness {
                let err = ApiError::unavailable("the snapshot is older than snapshot.max_staleness")
                    .with_metadata("snapshot_age_ms", age.as_millis().to_string())
                    .with_metadata("snapshot_revision", snapshot.revision().to_string());
                return req.error(out, &err);
            }
            let body = format!(
                r#"{{"status":"ok","snapshot":{{"revision":{},"keys":{},"age_ms":{}}}}}"#,
                snapshot.revision(),
                snapshot.len(),
                age.as_millis()
            );
            req.json(out, 200, body.as_bytes());
        }
        _ => req.json(out, 200, concat!(r#"{"version":""#, env!("CARGO_PKG_VERSION"), r#""}"#).as_bytes()),
    }
}

/// Hands a non-data-plane request to the in-process admin service (`talos serve`).
async fn hand_off(fallback: &crate::Fallback, req: &Incoming<'_, '_>, out: &mut Vec<u8>) {
    let request = match build_request(req.head, req.headers, req.body, req.peer) {
        Ok(r) => r,
        Err(err) => return req.error(out, &err),
    };
    let Ok(response) = fallback(request).await else {
        return req.error(out, &ApiError::internal());
    };
    let (parts, body) = response.into_parts();
    out.extend_from_slice(b"HTTP/1.1 ");
    respond::push_u64(out, u64::from(parts.status.as_u16()));
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection" | "date") {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let no_body = parts.status == http::StatusCode::NO_CONTENT || parts.status == http::StatusCode::NOT_MODIFIED;
    if !no_body {
        out.extend_from_slice(b"content-length: ");
        respond::push_u64(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    respond::push_date(out);
    out.extend_from_slice(req.persist.header());
    out.extend_from_slice(b"\r\n");
    if !req.head_only() && !no_body {
        out.extend_from_slice(&body);
    }
}

fn build_request(
    head: &RequestHead<'_>,
    raw_headers: &[httparse::Header<'_>],
    body: &[u8],
    peer: SocketAddr,
) -> Result<http::Request<Bytes>, ApiError> {
    let bad = || ApiError::bad_request("malformed request");
    let mut builder = http::Request::builder()
        .method(http::Method::from_bytes(head.method_bytes).map_err(|_| bad())?)
        .uri(http::Uri::try_from(head.target).map_err(|_| bad())?);
    let headers = builder.headers_mut().ok_or_else(bad)?;
    for h in raw_headers {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad())?;
        let value = http::HeaderValue::from_bytes(h.value).map_err(|_| bad())?;
        headers.append(name, value);
    }
    let mut request = builder.body(Bytes::copy_from_slice(body)).map_err(|_| bad())?;
    request.extensions_mut().insert(common::verify::PeerAddr(peer));
    Ok(request)
}
