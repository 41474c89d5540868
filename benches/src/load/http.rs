//! The load generator's own HTTP/1.1 client, as small as the job allows: request bytes composed
//! up front, a response framer, and a blocking keep-alive client for seeding.
//!
//! The framer reads a status line and headers (with `httparse`) and the body by `Content-Length`
//! (RFC 9112 §6.3), which talos always sends. It deliberately does not do chunked bodies,
//! redirects, TLS, proxies or `100 Continue`: a response it cannot frame is an error to report,
//! not something to work around. It never allocates; the caller owns the buffer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::Duration;

use anyhow::{bail, Context};

/// Response header lines the framer looks at, at most. talos sends about six.
pub const MAX_RESPONSE_HEADERS: usize = 32;
/// A response head longer than this is refused rather than buffered without end.
pub const MAX_HEAD: usize = 16 * 1024;
/// A response body longer than this is refused (a full batch answer is about 40 KiB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// The path of single verify.
pub const VERIFY_PATH: &str = "/v2alpha1/admin/apiKeys:verify";
/// The path of batch verify.
pub const BATCH_VERIFY_PATH: &str = "/v2alpha1/admin/apiKeys:batchVerify";

/// Where to send requests: the socket address, and the `Host` header naming it.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    pub host: String,
}

impl Target {
    /// Parses `http://HOST[:PORT][/]` (port 80 by default) and resolves the host to its first
    /// address. Paths, queries, user info and `https` are refused with a message saying so.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("{url:?}: https is not supported, use http://")
            } else {
                format!("{url:?} is not an http:// URL")
            }
        })?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!("{url:?} must be http://HOST:PORT without a path, query or user"));
        }
        // `[::1]:4420` keeps its brackets in the `Host` header (RFC 9110 §7.2) and for resolving.
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        let with_port = if has_port { authority.to_owned() } else { format!("{authority}:80") };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url:?}: cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url:?}: {with_port} resolves to no address"))?;
        Ok(Target { url: url.to_owned(), addr, host: authority.to_owned() })
    }

    /// Opens a connection with Nagle's algorithm off: requests are whole when written, and
    /// delaying them would only add latency to the measurement.
    pub fn connect(&self, timeout: Duration) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&self.addr, timeout)?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// A `POST` of a JSON body, with only the headers the server needs.
pub fn post_json(host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = Vec::with_capacity(head.len() + body.len());
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(body);
    request
}

/// `credential` as a JSON string literal. The secrets talos issues need no escaping, but
/// malformed test credentials might.
fn json_string(credential: &str) -> String {
    serde_json::Value::from(credential).to_string()
}

/// A single verify request for `credential`.
pub fn verify_request(host: &str, credential: &str) -> Vec<u8> {
    let body = format!(r#"{{"credential":{}}}"#, json_string(credential));
    post_json(host, VERIFY_PATH, body.as_bytes())
}

/// A batch verify request for `credentials`, in order.
pub fn batch_verify_request<'a>(host: &str, credentials: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut body = String::from(r#"{"requests":["#);
    for (i, credential) in credentials.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r#"{"credential":"#);
        body.push_str(&json_string(credential));
        body.push('}');
    }
    body.push_str("]}");
    post_json(host, BATCH_VERIFY_PATH, body.as_bytes())
}

/// One framed response: where its body lies in the buffer and how many bytes it takes in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Range<usize>,
    /// Head and body: the bytes to consume before the next pipelined response.
    pub len: usize,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// The outcome of framing the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    Complete(Response),
    /// More bytes are needed; `total` is the whole response's length once the head is known,
    /// so the caller can make room for it.
    Partial {
        total: Option<usize>,
    },
}

/// Why a response cannot be framed. The connection it came on is unusable afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    Malformed(httparse::Error),
    HeadTooLarge,
    /// Neither `Content-Length` nor a status without a body (1xx, 204, 304).
    NoContentLength,
    BadContentLength,
    BodyTooLarge(usize),
    /// `Transfer-Encoding`, which this client does not decode.
    TransferEncoding,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Malformed(e) => write!(f, "malformed response head: {e}"),
            FrameError::HeadTooLarge => write!(f, "response head longer than {MAX_HEAD} bytes"),
            FrameError::NoContentLength => write!(f, "response without content-length"),
            FrameError::BadContentLength => write!(f, "invalid or conflicting content-length"),
            FrameError::BodyTooLarge(n) => write!(f, "response body of {n} bytes is over {MAX_BODY}"),
            FrameError::TransferEncoding => write!(f, "transfer-encoding responses are not supported"),
        }
    }
}

impl std::error::Error for FrameError {}

/// `true` if the comma-separated header value lists `token` (case-insensitive, RFC 9110 §5.6.1).
fn lists_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// Frames the response at the start of `buf`.
pub fn frame(buf: &[u8]) -> Result<Framed, FrameError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf).map_err(FrameError::Malformed)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial if buf.len() > MAX_HEAD => return Err(FrameError::HeadTooLarge),
        httparse::Status::Partial => return Ok(Framed::Partial { total: None }),
    };
    if head_len > MAX_HEAD {
        return Err(FrameError::HeadTooLarge);
    }
    // Complete implies both are set.
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let mut content_length: Option<usize> = None;
    let mut close = false;
    let mut keep_alive = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = header.value.trim_ascii();
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::BadContentLength);
            }
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(FrameError::BadContentLength)?;
            // Repeated Content-Length must agree (RFC 9112 §6.3 item 5).
            if content_length.is_some_and(|m| m != n) {
                return Err(FrameError::BadContentLength);
            }
            content_length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(FrameError::TransferEncoding);
        } else if header.name.eq_ignore_ascii_case("connection") {
            close |= lists_token(header.value, b"close");
            keep_alive |= lists_token(header.value, b"keep-alive");
        }
    }
    // An HTTP/1.0 server closes unless it says otherwise (RFC 9112 §9.3).
    close |= http10 && !keep_alive;
    let body_len = match (status, content_length) {
        // These never carry a body, whatever the headers say (RFC 9112 §6.3 item 1).
        (100..=199 | 204 | 304, _) => 0,
        (_, Some(n)) => n,
        (_, None) => return Err(FrameError::NoContentLength),
    };
    if body_len > MAX_BODY {
        return Err(FrameError::BodyTooLarge(body_len));
    }
    let len = head_len + body_len;
    if buf.len() < len {
        return Ok(Framed::Partial { total: Some(len) });
    }
    Ok(Framed::Complete(Response { status, body: head_len..len, len, close }))
}

/// A blocking keep-alive client for the few thousand admin calls of seeding; it reconnects when
/// the server closes. Not used under load.
pub struct Client {
    target: Target,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    pub fn new(target: Target, timeout: Duration) -> Client {
        Client { target, timeout, stream: None, buf: Vec::with_capacity(16 * 1024) }
    }

    /// Sends `request` (whole bytes, e.g. from [`post_json`]) and returns the status and body.
    /// A request is never retried: issuing a key is not idempotent.
    pub fn send(&mut self, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = self
                    .target
                    .connect(self.timeout)
                    .with_context(|| format!("cannot connect to {}", self.target.url))?;
                stream.set_read_timeout(Some(self.timeout))?;
                stream.set_write_timeout(Some(self.timeout))?;
                self.stream.insert(stream)
            }
        };
        let result = exchange(stream, &mut self.buf, request);
        match &result {
            Ok((_, _, false)) => {}
            // After an error or `Connection: close` the connection is not reused.
            _ => self.stream = None,
        }
        result.map(|(status, body, _)| (status, body)).with_context(|| format!("request to {} failed", self.target.url))
    }
}

/// Writes `request` and reads one response: status, body, and whether the server closes.
fn exchange(stream: &mut TcpStream, buf: &mut Vec<u8>, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>, bool)> {
    stream.write_all(request)?;
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        match frame(buf)? {
            Framed::Complete(response) => {
                if response.len != buf.len() {
                    bail!("the server sent more than one response");
                }
                return Ok((response.status, buf[response.body].to_vec(), response.close));
            }
            Framed::Partial { .. } => {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    bail!("the server closed the connection mid-response");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Framed, FrameError>) {
        assert_eq!(frame(input.as_bytes()), expected, "{input:?}");
    }

    /// `input` is exactly one response: its body is whatever follows the head.
    fn whole(input: &str, status: u16, close: bool) {
        let head_len = input.find("\r\n\r\n").expect("a head") + 4;
        let response = Response { status, body: head_len..input.len(), len: input.len(), close };
        check(input, Ok(Framed::Complete(response)));
    }

    #[test]
    fn frames_responses() {
        whole("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}", 200, false);
        whole("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, false);
        whole("HTTP/1.1 204 No Content\r\n\r\n", 204, false);
        whole("HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n", 304, false);
        whole("HTTP/1.1 404 Not Found\r\ncontent-length: 1\r\n\r\nx", 404, false);
        whole("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 200, false);
        whole("HTTP/1.1 200 OK\r\ncontent-length:  3 \r\n\r\nabc", 200, false);
    }

    #[test]
    fn frames_connection_close() {
        whole("HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n", 200, true);
        whole("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\ncontent-length: 0\r\n\r\n", 200, true);
        whole("HTTP/1.1 200 OK\r\nConnection: closed\r\ncontent-length: 0\r\n\r\n", 200, false);
        whole("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", 200, true);
        whole("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n", 200, false);
    }

    #[test]
    fn frames_partial_input() {
        let input = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        for cut in 0..input.len() {
            // Once the head is in, the framer knows the whole length.
            let total = if cut >= input.len() - 5 { Some(input.len()) } else { None };
            check(&input[..cut], Ok(Framed::Partial { total }));
        }
        whole(input, 200, false);
    }

    #[test]
    fn frames_pipelined_responses_one_at_a_time() {
        let two = "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\naHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nbc";
        let Ok(Framed::Complete(first)) = frame(two.as_bytes()) else { panic!("the first response frames") };
        assert_eq!(&two[first.body.clone()], "a");
        let Ok(Framed::Complete(second)) = frame(&two.as_bytes()[first.len..]) else { panic!("the second frames") };
        assert_eq!(&two[first.len..][second.body], "bc");
        assert_eq!(first.len + second.len, two.len());
    }

    #[test]
    fn refuses_unframeable_responses() {
        check("HTTP/1.1 200 OK\r\n\r\n", Err(FrameError::NoContentLength));
        check("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", Err(FrameError::BadContentLength));
        check("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", Err(FrameError::BadContentLength));
        check("HTTP/1.1 200 OK\r\ncontent-length: 1, 1\r\n\r\n", Err(FrameError::BadContentLength));
        check("HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n", Err(FrameError::BadContentLength));
        check("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", Err(FrameError::BadContentLength));
        check("HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n", Err(FrameError::BodyTooLarge(99_999_999)));
        check("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", Err(FrameError::TransferEncoding));
        assert!(matches!(frame(b"HTTP/1.1 2x0 OK\r\n\r\n"), Err(FrameError::Malformed(_))));
        assert!(matches!(frame(b"GET / HTTP/1.1\r\n\r\n"), Err(FrameError::Malformed(_))));
        let endless = format!("HTTP/1.1 200 OK\r\nx-pad: {}", "a".repeat(MAX_HEAD));
        check(&endless, Err(FrameError::HeadTooLarge));
    }

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:4420").expect("parses");
        assert_eq!((t.addr.to_string().as_str(), t.host.as_str()), ("127.0.0.1:4420", "127.0.0.1:4420"));
        let t = Target::parse("http://127.0.0.1/").expect("parses");
        assert_eq!((t.addr.port(), t.host.as_str()), (80, "127.0.0.1"));
        let t = Target::parse("http://[::1]:8080").expect("parses");
        assert_eq!((t.addr.to_string().as_str(), t.host.as_str()), ("[::1]:8080", "[::1]:8080"));
        for (bad, fragment) in [
            ("https://127.0.0.1:4420", "https is not supported"),
            ("127.0.0.1:4420", "not an http:// URL"),
            ("http://", "no host"),
            ("http://127.0.0.1:4420/v2alpha1", "without a path"),
            ("http://127.0.0.1:notaport", "cannot resolve"),
        ] {
            let e = Target::parse(bad).expect_err(bad);
            assert!(e.contains(fragment), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn builds_requests() {
        let request = verify_request("h:1", "ory_ak_v1_a_b");
        let body = br#"{"credential":"ory_ak_v1_a_b"}"#;
        let head = format!(
            "POST {VERIFY_PATH} HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        assert_eq!(request, [head.as_bytes(), body].concat());
        let batch = batch_verify_request("h", ["a", "q\"uote"]);
        assert!(batch.ends_with(br#"{"requests":[{"credential":"a"},{"credential":"q\"uote"}]}"#));
    }
}
