//! Composing HTTP/1.1 responses into a connection's reused write buffer: static pieces, integer
//! formatting and a per-worker cached `Date`, no per-request allocation.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use common::error::ApiError;

/// Headers every response carries (talos-api.md §1.4, decisions.md §5.10). Kept identical to the
/// admin plane's list; `tests` compare the two.
pub const SECURITY_HEADERS: &[u8] = b"strict-transport-security: max-age=31536000; includeSubDomains\r\n\
x-frame-options: DENY\r\n\
x-content-type-options: nosniff\r\n\
referrer-policy: strict-origin-when-cross-origin\r\n\
content-security-policy: default-src 'none'\r\n";

/// `Ory-Talos-Cache` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Skip,
}

/// Whether the connection stays open after a response, and whether the response says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// The connection closes after this response, which says `connection: close`.
    Close,
    /// HTTP/1.1 persistence, the default: nothing to announce.
    KeepAlive,
    /// An HTTP/1.0 client asked for keep-alive: it must read `connection: keep-alive` back, or it
    /// waits for the close (RFC 9112 §9.3 and its Appendix C.2.2).
    KeepAliveAnnounced,
}

impl Persist {
    pub fn of(keep_alive: bool, minor_version: u8) -> Persist {
        match (keep_alive, minor_version) {
            (false, _) => Persist::Close,
            (true, 0) => Persist::KeepAliveAnnounced,
            (true, _) => Persist::KeepAlive,
        }
    }

    pub fn keeps_open(self) -> bool {
        self != Persist::Close
    }

    /// The `connection` header line, if any.
    pub fn header(self) -> &'static [u8] {
        match self {
            Persist::Close => b"connection: close\r\n",
            Persist::KeepAlive => b"",
            Persist::KeepAliveAnnounced => b"connection: keep-alive\r\n",
        }
    }
}

/// One response under construction.
pub struct Response<'a> {
    pub status: u16,
    pub body: &'a [u8],
    pub cache: Option<CacheStatus>,
    pub persist: Persist,
    /// HEAD: headers as for GET, no body.
    pub head_only: bool,
}

fn reason_phrase(status: u16) -> &'static str {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Unknown")
}

thread_local! {
    /// (unix second, formatted IMF-fixdate) — refreshed at most once a second per worker.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [b' '; 29])) };
}

pub fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            // IMF-fixdate is exactly 29 bytes; formatted into the cache, not a String.
            let mut buf = [b' '; 29];
            if std::io::Write::write_fmt(&mut &mut buf[..], format_args!("{}", httpdate::HttpDate::from(now))).is_ok() {
                cached.1 = buf;
                cached.0 = secs;
            }
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&cached.1);
        out.extend_from_slice(b"\r\n");
    });
}

pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A request id: the client's, or a fresh UUIDv4 from the worker's generator.
pub fn push_request_id(out: &mut Vec<u8>, incoming: Option<&[u8]>) {
    out.extend_from_slice(b"x-request-id: ");
    match incoming {
        Some(id) => out.extend_from_slice(id),
        None => {
            let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete JSON response.
pub fn write(out: &mut Vec<u8>, resp: &Response<'_>, request_id: Option<&[u8]>) {
    write_head(
        out,
        resp.status,
        resp.body.len(),
        resp.cache,
        resp.persist,
        request_id,
        &[b"content-type: application/json\r\n"],
    );
    if !resp.head_only {
        out.extend_from_slice(resp.body);
    }
}

/// Appends a status line and headers; `extra` holds raw header lines.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_length: usize,
    cache: Option<CacheStatus>,
    persist: Persist,
    request_id: Option<&[u8]>,
    extra: &[&[u8]],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for lines in extra {
        out.extend_from_slice(lines);
    }
    out.extend_from_slice(b"content-length: ");
    push_u64(out, content_length as u64);
    out.extend_from_slice(b"\r\n");
    push_date(out);
    match cache {
        Some(CacheStatus::Hit) => out.extend_from_slice(b"ory-talos-cache: HIT\r\n"),
        Some(CacheStatus::Skip) => out.extend_from_slice(b"ory-talos-cache: SKIP\r\n"),
        None => {}
    }
    push_request_id(out, request_id);
    out.extend_from_slice(SECURITY_HEADERS);
    out.extend_from_slice(persist.header());
    out.extend_from_slice(b"\r\n");
}

/// Appends an error in the Talos envelope, with `header`, one more raw header line or nothing
/// (allocates: error paths only).
pub fn write_error(
    out: &mut Vec<u8>,
    err: &ApiError,
    header: &[u8],
    persist: Persist,
    head_only: bool,
    request_id: Option<&[u8]>,
) {
    let body = err.to_json();
    let lines: [&[u8]; 2] = [b"content-type: application/json\r\n", header];
    write_head(out, err.status, body.len(), None, persist, request_id, &lines);
    if !head_only {
        out.extend_from_slice(&body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_a_response() {
        let mut out = Vec::new();
        write(
            &mut out,
            &Response {
                status: 200,
                body: b"{}",
                cache: Some(CacheStatus::Hit),
                persist: Persist::Close,
                head_only: false,
            },
            Some(b"abc"),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\ndate: "));
        assert!(text.contains("\r\nory-talos-cache: HIT\r\nx-request-id: abc\r\n"));
        assert!(text.ends_with("connection: close\r\n\r\n{}"));
        let mut digits = Vec::new();
        push_u64(&mut digits, 0);
        push_u64(&mut digits, 18_446_744_073_709_551_615);
        assert_eq!(digits, b"018446744073709551615");
    }

    #[test]
    fn generated_request_ids_are_uuids() {
        let mut out = Vec::new();
        push_request_id(&mut out, None);
        let line = String::from_utf8(out).unwrap();
        let id = line.trim_start_matches("x-request-id: ").trim_end();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    }
}
