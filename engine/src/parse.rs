//! Strict HTTP/1.1 request framing for the data plane (RFC 9112).
//!
//! This module owns the answer to one question: where does this request's head end, and how is
//! its body delimited? [`parse_head`] turns the bytes at the front of a connection's read buffer
//! into a [`RequestHead`] whose slices borrow that buffer (no allocation), and
//! [`ChunkedDecoder`] undoes the chunked transfer coding (RFC 9112 §7.1). Both reject, rather
//! than repair, anything ambiguous: this is the boundary against request smuggling, where a
//! front proxy and this server must never disagree about where one request ends and the next
//! begins. Every rejection is a small `Copy` [`FramingError`] that maps to its status, stable
//! reason and message in one place.
//!
//! It deliberately does not route, read the body, decode percent-escapes, normalise paths, look
//! at credentials, write responses or manage the connection: it only frames. After any
//! [`FramingError`] the caller must answer and close the connection, because the framing of
//! whatever follows in the buffer is unknown (RFC 9112 §6.3 and §9.6).
//!
//! Tokenising is done by `httparse`, configured as strictly as its [`httparse::ParserConfig`]
//! allows. For requests it already refuses obsolete line folding, whitespace between a field
//! name and its colon, bare CR and control characters; what it tolerates and this module
//! therefore checks itself is: bare LF line endings, HTTP versions (it reports all unknown
//! versions alike), head and request-line size limits, and every field-level rule about
//! `Host`, `Content-Length` and `Transfer-Encoding`.

use std::fmt;

/// Header field lines accepted per request; one more is answered with 431 (RFC 6585 §5).
pub const MAX_HEADERS: usize = 64;
/// Longest request line, without its CRLF; longer is answered with 414 (RFC 9112 §3).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest head (request line, field lines and the final empty line); longer is answered with
/// 431. Also bounds the trailer section of a chunked body.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body, declared by `Content-Length` or decoded from chunks; larger is
/// answered with 413 (RFC 9110 §15.5.14).
pub const MAX_BODY: usize = 1024 * 1024;
/// Longest chunk-size line (size digits and extensions, without CRLF). RFC 9112 §7.1 sets no
/// limit; this one stops endless leading zeros or extensions from holding a connection forever.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Chunk-extension bytes accepted over a whole body. Extensions carry nothing this server
/// uses, and an unbounded allowance lets a client send megabytes of framing for a tiny body.
pub const MAX_CHUNK_EXTENSIONS: usize = 16 * 1024;

/// The request method (RFC 9110 §9). Methods are case-sensitive, so `get` is [`Method::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl Method {
    /// Classifies a method token exactly as sent.
    pub fn from_bytes(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"PATCH" => Method::Patch,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither `Content-Length` nor `Transfer-Encoding`: the body is empty (§6.3 rule 7).
    None,
    /// Exactly this many bytes follow the head (0 when `Content-Length: 0` was sent).
    Length(usize),
    /// The chunked coding follows the head; decode it with [`ChunkedDecoder`].
    Chunked,
}

/// A parsed request head; all slices borrow the connection's read buffer, except the `"/"`
/// that stands in for the empty path of an absolute-form target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'b> {
    pub method: Method,
    pub method_bytes: &'b [u8],
    /// Origin-form path and query. An absolute-form target (`http://host/path?q`, RFC 9112
    /// §3.2.2) is reduced to its path and query, with `"/"` for an empty path; in the one case
    /// where that path is empty but a query is present (`http://host?q`), `target` is `"/"` and
    /// the query is reported only in `query`. `"*"` only with OPTIONS (§3.2.4).
    pub target: &'b [u8],
    /// `target` without the query.
    pub path: &'b [u8],
    /// What follows the first `?`, without it (possibly empty).
    pub query: Option<&'b [u8]>,
    /// 0 or 1.
    pub minor_version: u8,
    /// HTTP/1.1: true unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive`
    /// (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1).
    pub expect_continue: bool,
    /// `Cache-Control` with a `no-cache` or `no-store` directive, or `Pragma: no-cache`
    /// (RFC 9111 §5.2.1, §5.4).
    pub cache_bypass: bool,
    /// The `X-Request-ID` value when sent once and 1..=128 bytes of visible ASCII.
    pub request_id: Option<&'b [u8]>,
    pub body: BodyFraming,
    /// Bytes consumed by the head, including skipped leading empty lines and the final CRLF.
    pub head_len: usize,
    /// How many entries of the headers array are filled.
    pub header_count: usize,
}

/// Why a request could not be framed. The connection must be closed after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    BadRequest,
    UriTooLong,
    HeadersTooLarge,
    PayloadTooLarge,
    /// A transfer coding other than chunked (RFC 9112 §6.1).
    NotImplemented,
    VersionNotSupported,
}

impl FramingError {
    /// The response status code (RFC 9110 §15, RFC 6585 §5 for 431).
    pub fn status(self) -> u16 {
        self.wire().0
    }

    /// A stable, lowercase snake-case reason for the error envelope.
    pub fn reason(self) -> &'static str {
        self.wire().1
    }

    /// A short human-readable message for the error envelope.
    pub fn message(self) -> &'static str {
        self.wire().2
    }

    /// The whole wire contract of each error, in one place.
    fn wire(self) -> (u16, &'static str, &'static str) {
        match self {
            FramingError::BadRequest => (400, "bad_request", "malformed http request"),
            FramingError::UriTooLong => (414, "uri_too_long", "request line exceeds 8192 bytes"),
            FramingError::HeadersTooLarge => {
                (431, "headers_too_large", "header section exceeds 16384 bytes or 64 fields")
            }
            FramingError::PayloadTooLarge => (413, "payload_too_large", "request body exceeds 1048576 bytes"),
            FramingError::NotImplemented => {
                (501, "not_implemented", "transfer coding other than chunked is not supported")
            }
            FramingError::VersionNotSupported => {
                (505, "http_version_not_supported", "http version other than 1.0 and 1.1 is not supported")
            }
        }
    }
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for FramingError {}

/// Parses the request head at the front of `buf`.
///
/// `Ok(None)` means more bytes are needed. Only the first [`MAX_HEAD`] bytes are ever looked
/// at, so the cost of a call is bounded whatever the buffer holds. Never panics on any input.
pub fn parse_head<'b>(
    buf: &'b [u8],
    headers: &mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Option<RequestHead<'b>>, FramingError> {
    // A head that fits the limit is complete within its first MAX_HEAD bytes; if it is not,
    // the head is too large whatever follows.
    let window = buf.get(..MAX_HEAD).unwrap_or(buf);
    let mut req = httparse::Request::new(&mut headers[..]);
    let head_len = match parser_config().parse_request(&mut req, window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(window),
        Err(httparse::Error::TooManyHeaders) => return Err(FramingError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(window)),
        Err(_) => return Err(FramingError::BadRequest),
    };
    let (Some(method), Some(raw_target), Some(minor_version)) = (req.method, req.path, req.version) else {
        return Err(FramingError::BadRequest);
    };
    let method_bytes = method.as_bytes();
    let raw_target = raw_target.as_bytes();

    // httparse allows no repeated spaces in the request line, so its length is exactly this.
    let request_line = method_bytes.len() + 1 + raw_target.len() + 1 + b"HTTP/1.1".len();
    if request_line > MAX_REQUEST_LINE {
        return Err(FramingError::UriTooLong);
    }
    check_head_bytes(window.get(..head_len).unwrap_or(window))?;
    if minor_version > 1 {
        return Err(FramingError::VersionNotSupported);
    }

    let method = Method::from_bytes(method_bytes);
    let (target, path, query) = split_target(method, raw_target)?;
    let fields = read_fields(req.headers)?;

    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host and to any
    // request with more than one Host field line.
    if fields.host_lines > 1 || (minor_version == 1 && fields.host_lines == 0) {
        return Err(FramingError::BadRequest);
    }
    let body = body_framing(&fields, minor_version)?;
    let keep_alive = if minor_version == 1 { !fields.conn_close } else { fields.conn_keep_alive && !fields.conn_close };

    Ok(Some(RequestHead {
        method,
        method_bytes,
        target,
        path,
        query,
        minor_version,
        keep_alive,
        // RFC 9110 §10.1.1: a server MUST ignore a 100-continue expectation in HTTP/1.0.
        expect_continue: minor_version == 1 && fields.expect_continue,
        cache_bypass: fields.cache_bypass,
        request_id: if fields.request_id_lines == 1 { fields.request_id } else { None },
        body,
        head_len,
        header_count: req.headers.len(),
    }))
}

/// The strictest configuration httparse offers for requests. Obsolete line folding and spaces
/// before the colon have no switch for requests: httparse always rejects them there.
fn parser_config() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config
        .allow_multiple_spaces_in_request_line_delimiters(false)
        .allow_space_before_first_header_name(false)
        .ignore_invalid_headers_in_requests(false);
    config
}

/// Decides between "wait for more bytes" and a size limit for an incomplete head.
fn incomplete(window: &[u8]) -> Result<Option<RequestHead<'_>>, FramingError> {
    if window.len() > MAX_REQUEST_LINE && request_line_too_long(window) {
        return Err(FramingError::UriTooLong);
    }
    if window.len() >= MAX_HEAD {
        return Err(FramingError::HeadersTooLarge);
    }
    Ok(None)
}

/// Whether the (possibly unfinished) request line is already longer than allowed.
fn request_line_too_long(buf: &[u8]) -> bool {
    let rest = buf.get(skip_empty_lines(buf)..).unwrap_or_default();
    // Two more bytes than the limit are enough to tell: a CRLF must have started by then.
    let probe = rest.get(..MAX_REQUEST_LINE + 2).unwrap_or(rest);
    let line = match probe.iter().position(|&b| b == b'\n') {
        Some(end) => probe.get(..end).unwrap_or(probe),
        None => probe,
    };
    line.strip_suffix(b"\r").unwrap_or(line).len() > MAX_REQUEST_LINE
}

/// Where the request line starts: RFC 9112 §2.2 lets a server skip empty lines received
/// before it, and httparse does. Bare LFs are skipped here too, as httparse does, and then
/// rejected by [`check_head_bytes`] once the head is complete.
fn skip_empty_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match buf.get(at..) {
            Some([b'\r', b'\n', ..]) => at += 2,
            Some([b'\n', ..]) => at += 1,
            _ => return at,
        }
    }
}

/// httparse reports every version it does not parse as one error. A well-formed
/// `HTTP/DIGIT.DIGIT` (RFC 9112 §2.3), even unfinished, is a version this server does not
/// support (505); anything else in that place is a malformed request line (400).
fn version_error(window: &[u8]) -> FramingError {
    let line = window.get(skip_empty_lines(window)..).unwrap_or_default();
    let line_end = line.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(line.len());
    let line = line.get(..line_end).unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.nth(2).unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, rest @ ..] if major.is_ascii_digit() => match rest {
            [] | [b'.'] => FramingError::VersionNotSupported,
            [b'.', minor] if minor.is_ascii_digit() => FramingError::VersionNotSupported,
            _ => FramingError::BadRequest,
        },
        _ => FramingError::BadRequest,
    }
}

const ORDINARY: u8 = 0;
const CR: u8 = 1;
const LF: u8 = 2;
const FORBIDDEN: u8 = 3;

/// Byte classes for [`check_head_bytes`]: control characters other than HTAB, and DEL, are
/// never allowed in a head (RFC 9110 §5.5, RFC 9112 §3); CR and LF only as a CRLF pair.
static HEAD_BYTE: [u8; 256] = {
    let mut table = [ORDINARY; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = FORBIDDEN;
        b += 1;
    }
    table[0x7f] = FORBIDDEN;
    table[b'\t' as usize] = ORDINARY;
    table[b'\r' as usize] = CR;
    table[b'\n' as usize] = LF;
    table
};

/// One pass over a complete head: every line must end in CRLF (RFC 9112 §2.2 lets a server
/// accept a bare LF, but doing so is exactly the kind of disagreement smuggling feeds on), and
/// no control character may appear. httparse already refuses bare CR and controls; checking
/// them here too costs nothing in the same loop.
fn check_head_bytes(head: &[u8]) -> Result<(), FramingError> {
    let mut after_cr = false;
    for &b in head {
        let class = HEAD_BYTE[usize::from(b)];
        if after_cr != (class == LF) || class == FORBIDDEN {
            return Err(FramingError::BadRequest);
        }
        after_cr = class == CR;
    }
    if after_cr {
        return Err(FramingError::BadRequest);
    }
    Ok(())
}

type Target<'b> = (&'b [u8], &'b [u8], Option<&'b [u8]>);

/// Checks the request-target form (RFC 9112 §3.2) and splits it into target, path and query.
fn split_target(method: Method, raw: &[u8]) -> Result<Target<'_>, FramingError> {
    // A fragment is never part of a request-target, and a URI is ASCII (RFC 3986 §2); httparse
    // lets both through. Other characters RFC 3986 leaves out ({, |, ^…) are unambiguous and
    // sent by real clients, so they are left to the router.
    if raw.iter().any(|&b| b == b'#' || !b.is_ascii()) {
        return Err(FramingError::BadRequest);
    }
    let path_and_query = match raw {
        [b'/', ..] => raw,
        // §3.2.4: asterisk-form is only used with OPTIONS.
        b"*" if method == Method::Options => return Ok((raw, raw, None)),
        _ => {
            // §3.2.2: absolute-form; the scheme is case-insensitive (RFC 3986 §3.1).
            let rest = strip_prefix_ci(raw, b"http://")
                .or_else(|| strip_prefix_ci(raw, b"https://"))
                .ok_or(FramingError::BadRequest)?;
            let authority_end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
            let (authority, path_and_query) = rest.split_at(authority_end);
            // RFC 9110 §4.2.1: an http(s) URI with an empty host MUST be rejected; §4.2.4:
            // userinfo ('@', excluded by `valid_host`) SHOULD be treated as an error.
            if authority.is_empty() || !valid_host(authority) {
                return Err(FramingError::BadRequest);
            }
            match path_and_query {
                [] => return Ok((b"/", b"/", None)),
                [b'?', query @ ..] => return Ok((b"/", b"/", Some(query))),
                _ => path_and_query,
            }
        }
    };
    Ok(match path_and_query.iter().position(|&b| b == b'?') {
        Some(q) => {
            let (path, query) = path_and_query.split_at(q);
            (path_and_query, path, query.get(1..))
        }
        None => (path_and_query, path_and_query, None),
    })
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// RFC 9110 §7.2 `Host = uri-host [ ":" port ]`, checked by alphabet: reg-name, IP-literal
/// and port characters (RFC 3986 §3.2.2). Empty is allowed for the Host field (§7.2).
fn valid_host(value: &[u8]) -> bool {
    value.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            )
    })
}

/// What the field lines say about framing and the flags of [`RequestHead`].
#[derive(Default)]
struct Fields<'b> {
    host_lines: usize,
    content_length: Option<u64>,
    te_lines: usize,
    te: TransferCodings,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
    cache_bypass: bool,
    request_id: Option<&'b [u8]>,
    request_id_lines: usize,
}

/// The `Transfer-Encoding` field lines read as one list (RFC 9110 §5.3).
#[derive(Default)]
struct TransferCodings {
    malformed: bool,
    codings: usize,
    chunked: usize,
    last_is_chunked: bool,
    other: bool,
}

fn read_fields<'b>(headers: &[httparse::Header<'b>]) -> Result<Fields<'b>, FramingError> {
    let mut fields = Fields::default();
    for header in headers {
        let name = header.name.as_bytes();
        let value = header.value;
        // Matching on the length first keeps the common, uninteresting fields cheap.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                fields.host_lines += 1;
                if !valid_host(value) {
                    return Err(FramingError::BadRequest);
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                // RFC 9110 §10.1.1: the Expect value is case-insensitive. Other expectations
                // are ignored, which §10.1.1 permits ("MAY respond with 417").
                fields.expect_continue |= list(value).any(|e| e.eq_ignore_ascii_case(b"100-continue"));
            }
            6 if name.eq_ignore_ascii_case(b"pragma") => {
                // RFC 9111 §5.4, which only defines no-cache.
                fields.cache_bypass |= list(value).any(|e| directive_name(e).eq_ignore_ascii_case(b"no-cache"));
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                // RFC 9110 §7.6.1: a list of case-insensitive connection options.
                for option in list(value) {
                    fields.conn_close |= option.eq_ignore_ascii_case(b"close");
                    fields.conn_keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            12 if name.eq_ignore_ascii_case(b"x-request-id") => {
                fields.request_id_lines += 1;
                let visible = value.iter().all(|&b| (0x21..=0x7e).contains(&b));
                if (1..=128).contains(&value.len()) && visible {
                    fields.request_id = Some(value);
                }
            }
            13 if name.eq_ignore_ascii_case(b"cache-control") => {
                // RFC 9111 §5.2: directives are case-insensitive, in a list that may span
                // several field lines; arguments may be quoted-strings holding commas.
                fields.cache_bypass |= list(value).any(|e| {
                    let name = directive_name(e);
                    name.eq_ignore_ascii_case(b"no-cache") || name.eq_ignore_ascii_case(b"no-store")
                });
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // RFC 9112 §6.3 rule 5 lets a recipient accept repeated identical values; a
                // proxy in front may not, so any repetition is refused. The value is 1*DIGIT
                // (RFC 9110 §8.6): no sign, no list, no inner whitespace.
                if fields.content_length.is_some() {
                    return Err(FramingError::BadRequest);
                }
                fields.content_length = Some(parse_content_length(value).ok_or(FramingError::BadRequest)?);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                fields.te_lines += 1;
                fields.te.add(value);
            }
            // Some proxies and CGI gateways treat '_' as '-' in field names, so a
            // `Content_Length` could frame the body for them while meaning nothing here.
            14 | 17 if dash_lookalike(name, b"content-length") || dash_lookalike(name, b"transfer-encoding") => {
                return Err(FramingError::BadRequest);
            }
            _ => {}
        }
    }
    Ok(fields)
}

/// Whether `name` equals `lower` (lowercase, with dashes) once each '_' is read as '-'.
fn dash_lookalike(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name.iter().zip(lower).all(|(&n, &l)| n.to_ascii_lowercase() == l || (n == b'_' && l == b'-'))
}

fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) {
        for element in list(value) {
            // RFC 9112 §7: transfer-coding = token *( OWS ";" OWS transfer-parameter ).
            let (name, has_params) = match element.iter().position(|&b| b == b';') {
                Some(semi) => (trim_ows(element.get(..semi).unwrap_or_default()), true),
                None => (element, false),
            };
            self.codings += 1;
            if !is_token(name) {
                self.malformed = true;
            } else if name.eq_ignore_ascii_case(b"chunked") {
                // chunked defines no parameters (RFC 9112 §7.1).
                self.malformed |= has_params;
                self.chunked += 1;
                self.last_is_chunked = true;
                continue;
            } else {
                self.other = true;
            }
            self.last_is_chunked = false;
        }
    }
}

/// RFC 9112 §6.3, with every case where two implementations could disagree refused.
fn body_framing(fields: &Fields<'_>, minor_version: u8) -> Result<BodyFraming, FramingError> {
    if fields.te_lines > 0 {
        // §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing; Content-Length beside it
        // is the classic smuggling vector, which §6.1 lets a server reject.
        if minor_version == 0 || fields.content_length.is_some() {
            return Err(FramingError::BadRequest);
        }
        let te = &fields.te;
        // §6.3 rule 4: chunked not final in a request is a 400; §7.1: chunked MUST NOT be
        // applied twice. An empty list frames nothing and is as malformed.
        if te.malformed || te.codings == 0 || te.chunked > 1 || (te.chunked == 1 && !te.last_is_chunked) {
            return Err(FramingError::BadRequest);
        }
        // §6.1: a transfer coding the server does not understand SHOULD get a 501.
        if te.other {
            return Err(FramingError::NotImplemented);
        }
        return Ok(BodyFraming::Chunked);
    }
    match fields.content_length {
        None => Ok(BodyFraming::None),
        Some(len) => match usize::try_from(len) {
            Ok(len) if len <= MAX_BODY => Ok(BodyFraming::Length(len)),
            _ => Err(FramingError::PayloadTooLarge),
        },
    }
}

/// The elements of an RFC 9110 §5.6.1 list, OWS-trimmed, empty elements dropped (which §5.6.1
/// requires recipients to accept). Commas inside quoted-strings (§5.6.4) do not split.
fn list(value: &[u8]) -> ListElements<'_> {
    ListElements { rest: value }
}

struct ListElements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ListElements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let mut quoted = false;
            let mut escaped = false;
            let mut end = self.rest.len();
            for (i, &b) in self.rest.iter().enumerate() {
                if escaped {
                    escaped = false;
                    continue;
                }
                match b {
                    b'\\' if quoted => escaped = true,
                    b'"' => quoted = !quoted,
                    b',' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let element = trim_ows(self.rest.get(..end).unwrap_or_default());
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            if !element.is_empty() {
                return Some(element);
            }
        }
        None
    }
}

/// The name of a `name[=argument]` directive.
fn directive_name(element: &[u8]) -> &[u8] {
    match element.iter().position(|&b| b == b'=') {
        Some(eq) => trim_ows(element.get(..eq).unwrap_or_default()),
        None => element,
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Where the decoder is in the chunked grammar (RFC 9112 §7.1):
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before the first hex digit of a chunk-size.
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// BWS that must lead to ';'.
    ExtSpace,
    /// After ';', before the extension name.
    ExtNameStart,
    ExtName,
    /// BWS after an extension name.
    ExtNameSpace,
    /// After '=', before the value.
    ExtValueStart,
    ExtValueToken,
    ExtValueQuoted,
    /// After a backslash inside a quoted value.
    ExtValueEscape,
    /// After the closing quote of a value.
    ExtValueEnd,
    /// CR of the chunk-size line seen.
    SizeLf,
    /// `remaining` bytes of chunk-data to copy.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer field line or of the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen.
    EndLf,
    Done,
    Failed(FramingError),
}

/// Incremental chunked-body decoder (RFC 9112 §7.1). Feed it the bytes after the head, in as
/// many pieces as they arrive; the result does not depend on how the input is split. Chunk
/// extensions are checked against the grammar and discarded, as are trailer fields (§7.1.2
/// lets a recipient discard them). After an error every later call returns the same error.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: Chunk,
    /// The chunk size being read, then the chunk-data still to copy.
    remaining: u64,
    /// Bytes of the current chunk-size line so far.
    line_len: usize,
    /// Chunk-extension bytes seen over the whole body.
    extension_len: usize,
    /// Bytes of the trailer section so far, final CRLF included.
    trailer_len: usize,
    /// Decoded body bytes so far.
    decoded: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: Chunk::SizeStart,
            remaining: 0,
            line_len: 0,
            extension_len: 0,
            trailer_len: 0,
            decoded: 0,
        }
    }

    /// Whether the last-chunk and trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Body bytes decoded so far.
    pub fn decoded_len(&self) -> usize {
        self.decoded
    }

    /// Decodes as much of `input` as possible, appending data to `out`. Returns
    /// `Ok((consumed, done))`; once `done`, `consumed` stops just after the final CRLF and
    /// whatever follows belongs to the next request.
    ///
    /// Errors: malformed or overflowing chunk size, non-hex digits, bare LF or stray bytes in
    /// chunk extensions or trailers, chunk-data not followed by CRLF, a chunk-size line over
    /// [`MAX_CHUNK_LINE`] or extensions over [`MAX_CHUNK_EXTENSIONS`] → `BadRequest`; decoded
    /// total over [`MAX_BODY`] → `PayloadTooLarge`; trailer section over [`MAX_HEAD`] →
    /// `HeadersTooLarge`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), FramingError> {
        let mut consumed = 0;
        loop {
            match self.state {
                Chunk::Done => return Ok((consumed, true)),
                Chunk::Failed(err) => return Err(err),
                Chunk::Data => {
                    let rest = input.get(consumed..).unwrap_or_default();
                    // `remaining` never exceeds MAX_BODY, so it fits a usize.
                    let take = rest.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    if take == 0 {
                        return Ok((consumed, false));
                    }
                    out.extend_from_slice(rest.get(..take).unwrap_or_default());
                    consumed += take;
                    self.decoded += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = Chunk::DataCr;
                    }
                }
                _ => {
                    let Some(&b) = input.get(consumed) else {
                        return Ok((consumed, false));
                    };
                    consumed += 1;
                    if let Err(err) = self.step(b) {
                        self.state = Chunk::Failed(err);
                        return Err(err);
                    }
                }
            }
        }
    }

    /// Counts one byte of the chunk-size line (its CRLF excluded) against [`MAX_CHUNK_LINE`].
    fn count_line_byte(&mut self) -> Result<(), FramingError> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE {
            return Err(FramingError::BadRequest);
        }
        Ok(())
    }

    /// Advances the state machine by one byte outside chunk-data.
    fn step(&mut self, b: u8) -> Result<(), FramingError> {
        use Chunk::*;
        const BAD: FramingError = FramingError::BadRequest;
        // Size limits first, so that no state can be held open indefinitely.
        match self.state {
            // The CR that ends the chunk-size line is not part of it.
            SizeStart | Size | ExtName | ExtValueToken | ExtValueEnd if b == b'\r' => {}
            SizeStart | Size => self.count_line_byte()?,
            ExtSpace | ExtNameStart | ExtName | ExtNameSpace | ExtValueStart | ExtValueToken | ExtValueQuoted
            | ExtValueEscape | ExtValueEnd => {
                self.count_line_byte()?;
                self.extension_len += 1;
                if self.extension_len > MAX_CHUNK_EXTENSIONS {
                    return Err(BAD);
                }
            }
            TrailerStart | TrailerName | TrailerValue | TrailerLf | EndLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_HEAD {
                    return Err(FramingError::HeadersTooLarge);
                }
            }
            SizeLf | Data | DataCr | DataLf | Done | Failed(_) => {}
        }
        self.state = match (self.state, b) {
            (SizeStart, _) => {
                let digit = hex_value(b).ok_or(BAD)?;
                self.remaining = u64::from(digit);
                Size
            }
            (Size, _) if b.is_ascii_hexdigit() => {
                let digit = hex_value(b).ok_or(BAD)?;
                self.remaining =
                    self.remaining.checked_mul(16).and_then(|n| n.checked_add(u64::from(digit))).ok_or(BAD)?;
                Size
            }
            (Size, _) => {
                // The size is known once its digits end; refuse an over-budget chunk before
                // reading any of it.
                let budget = MAX_BODY.saturating_sub(self.decoded);
                if usize::try_from(self.remaining).map_or(true, |size| size > budget) {
                    return Err(FramingError::PayloadTooLarge);
                }
                match b {
                    b';' => ExtNameStart,
                    b' ' | b'\t' => ExtSpace,
                    b'\r' => SizeLf,
                    _ => return Err(BAD),
                }
            }
            (ExtSpace, b' ' | b'\t') => ExtSpace,
            (ExtSpace, b';') => ExtNameStart,
            (ExtNameStart, b' ' | b'\t') => ExtNameStart,
            (ExtNameStart | ExtName, _) if is_tchar(b) => ExtName,
            (ExtName | ExtNameSpace, b' ' | b'\t') => ExtNameSpace,
            (ExtName | ExtNameSpace, b'=') => ExtValueStart,
            (ExtName | ExtNameSpace | ExtValueToken | ExtValueEnd, b';') => ExtNameStart,
            (ExtName | ExtValueToken | ExtValueEnd, b'\r') => SizeLf,
            (ExtValueStart, b' ' | b'\t') => ExtValueStart,
            (ExtValueStart, b'"') => ExtValueQuoted,
            (ExtValueStart | ExtValueToken, _) if is_tchar(b) => ExtValueToken,
            (ExtValueToken | ExtValueEnd, b' ' | b'\t') => ExtSpace,
            // RFC 9110 §5.6.4: qdtext and quoted-pair.
            (ExtValueQuoted, b'"') => ExtValueEnd,
            (ExtValueQuoted, b'\\') => ExtValueEscape,
            (ExtValueQuoted, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff) => ExtValueQuoted,
            (ExtValueEscape, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff) => ExtValueQuoted,
            (SizeLf, b'\n') => {
                self.line_len = 0;
                if self.remaining == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => SizeStart,
            // Trailer fields have the grammar of header fields (RFC 9112 §7.1.2, §5): no
            // obsolete folding, no space before the colon, no control characters.
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, b'\t' | 0x20..=0x7e | 0x80..=0xff) => TrailerValue,
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            _ => return Err(BAD),
        };
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(buf: &[u8]) -> Result<Option<RequestHead<'_>>, FramingError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse_head(buf, &mut headers)
    }

    fn show(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// `show`, cut short for failure messages.
    fn brief(bytes: &[u8]) -> String {
        let mut text = show(&bytes[..bytes.len().min(120)]);
        if bytes.len() > 120 {
            text += &format!("… ({} bytes)", bytes.len());
        }
        text
    }

    /// One line per outcome, so that the table below reads like a conformance list.
    fn render(result: Result<Option<RequestHead<'_>>, FramingError>) -> String {
        let head = match result {
            Err(err) => return format!("err {}", err.reason()),
            Ok(None) => return "incomplete".to_owned(),
            Ok(Some(head)) => head,
        };
        let mut out = match head.method {
            Method::Other => format!("Other:{}", show(head.method_bytes)),
            method => format!("{method:?}"),
        };
        out += &format!(" {} path={}", show(head.target), show(head.path));
        if let Some(query) = head.query {
            out += &format!(" query={}", show(query));
        }
        out += &format!(" 1.{}", head.minor_version);
        out += if head.keep_alive { " keep-alive" } else { " close" };
        if head.expect_continue {
            out += " continue";
        }
        if head.cache_bypass {
            out += " bypass";
        }
        if let Some(id) = head.request_id {
            out += &format!(" id={}", show(id));
        }
        out += &match head.body {
            BodyFraming::None => " body=none".to_owned(),
            BodyFraming::Length(len) => format!(" body=len:{len}"),
            BodyFraming::Chunked => " body=chunked".to_owned(),
        };
        out
    }

    #[track_caller]
    fn check(input: &[u8], expected: &str) {
        let result = parse(input);
        assert_eq!(render(result), expected, "input: {:?}", brief(input));
        if let Ok(Some(head)) = result {
            // The head ends with the empty line and parses alone to the same result; no strict
            // prefix of it is enough.
            let head_bytes = &input[..head.head_len];
            assert!(head_bytes.ends_with(b"\r\n\r\n"));
            assert_eq!(parse(head_bytes), result);
            if head.head_len < 1024 {
                for end in 0..head.head_len {
                    assert_eq!(parse(&input[..end]), Ok(None), "prefix of {end} bytes");
                }
            }
        }
    }

    #[test]
    fn valid_requests() {
        check(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(
            b"GET /v1/keys?x=1&y=2 HTTP/1.1\r\nHost: a\r\n\r\n",
            "Get /v1/keys?x=1&y=2 path=/v1/keys query=x=1&y=2 1.1 keep-alive body=none",
        );
        check(b"GET /a?b?c HTTP/1.1\r\nHost: a\r\n\r\n", "Get /a?b?c path=/a query=b?c 1.1 keep-alive body=none");
        check(b"GET /? HTTP/1.1\r\nHost: a\r\n\r\n", "Get /? path=/ query= 1.1 keep-alive body=none");
        check(b"GET //x HTTP/1.1\r\nHost: a\r\n\r\n", "Get //x path=//x 1.1 keep-alive body=none");
        check(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", "Head / path=/ 1.1 keep-alive body=none");
        check(b"PUT / HTTP/1.1\r\nHost: a\r\n\r\n", "Put / path=/ 1.1 keep-alive body=none");
        check(b"PATCH / HTTP/1.1\r\nHost: a\r\n\r\n", "Patch / path=/ 1.1 keep-alive body=none");
        check(b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", "Delete / path=/ 1.1 keep-alive body=none");
        check(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "Options * path=* 1.1 keep-alive body=none");
        check(b"OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n", "Options /x path=/x 1.1 keep-alive body=none");
        // Methods are case-sensitive (RFC 9110 §9.1).
        check(b"get / HTTP/1.1\r\nHost: a\r\n\r\n", "Other:get / path=/ 1.1 keep-alive body=none");
        check(b"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n", "Other:PURGE / path=/ 1.1 keep-alive body=none");
        // The body and any pipelined request stay in the buffer.
        check(
            b"POST /verify HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n",
            "Post /verify path=/verify 1.1 keep-alive body=len:5",
        );
        check(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "Post / path=/ 1.1 keep-alive body=len:0");
        check(b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length:007\r\n\r\n", "Post / path=/ 1.1 keep-alive body=len:7");
        check(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t5 \t\r\n\r\n",
            "Post / path=/ 1.1 keep-alive body=len:5",
        );
        check(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n",
            "Post / path=/ 1.1 keep-alive body=len:1048576",
        );
        check(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Post / path=/ 1.1 keep-alive body=chunked",
        );
        check(
            b"POST / HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: Chunked , \r\n\r\n",
            "Post / path=/ 1.1 keep-alive body=chunked",
        );
        check(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Post / path=/ 1.1 keep-alive body=chunked",
        );
        // Values may carry HTAB and obs-text (RFC 9110 §5.5).
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb \xff\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        // RFC 9112 §2.2: empty lines before the request line may be skipped.
        check(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
    }

    #[test]
    fn host() {
        check(b"GET / HTTP/1.1\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(b"GET / HTTP/1.1\r\nHOST: [::1]:8080\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(b"GET / HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
    }

    #[test]
    fn connection_and_expect() {
        check(b"GET / HTTP/1.0\r\n\r\n", "Get / path=/ 1.0 close body=none");
        check(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "Get / path=/ 1.0 keep-alive body=none");
        check(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "Get / path=/ 1.0 keep-alive body=none");
        check(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", "Get / path=/ 1.0 close body=none");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "Get / path=/ 1.1 close body=none");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", "Get / path=/ 1.1 close body=none");
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            "Get / path=/ 1.1 close body=none",
        );
        check(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            "Post / path=/ 1.1 keep-alive continue body=len:3",
        );
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n",
            "Get / path=/ 1.1 keep-alive continue body=none",
        );
        check(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        // RFC 9110 §10.1.1: ignored in HTTP/1.0.
        check(b"GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", "Get / path=/ 1.0 close body=none");
    }

    #[test]
    fn cache_bypass() {
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nCache-Control: max-age=0, No-Cache\r\n\r\n",
            "Get / path=/ 1.1 keep-alive bypass body=none",
        );
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nCache-Control: no-store\r\n\r\n",
            "Get / path=/ 1.1 keep-alive bypass body=none",
        );
        check(b"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", "Get / path=/ 1.1 keep-alive bypass body=none");
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\npragma: x, NO-CACHE\r\n\r\n",
            "Get / path=/ 1.1 keep-alive bypass body=none",
        );
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nCache-Control: max-age=0\r\ncache-control: no-cache\r\n\r\n",
            "Get / path=/ 1.1 keep-alive bypass body=none",
        );
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nCache-Control: no-cache=\"x\"\r\n\r\n",
            "Get / path=/ 1.1 keep-alive bypass body=none",
        );
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nCache-Control: max-age=0\r\n\r\n",
            "Get / path=/ 1.1 keep-alive body=none",
        );
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nCache-Control: no-cachex, xno-store\r\n\r\n",
            "Get / path=/ 1.1 keep-alive body=none",
        );
        // A comma inside a quoted argument does not start a directive (RFC 9110 §5.6.4).
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nCache-Control: private=\"a, no-cache\"\r\n\r\n",
            "Get / path=/ 1.1 keep-alive body=none",
        );
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nCache-Control: private=\"a\\\", no-cache\"\r\n\r\n",
            "Get / path=/ 1.1 keep-alive body=none",
        );
        check(b"GET / HTTP/1.1\r\nHost: a\r\nPragma: nocache\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
    }

    #[test]
    fn request_id() {
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc-123\r\n\r\n",
            "Get / path=/ 1.1 keep-alive id=abc-123 body=none",
        );
        check(b"GET / HTTP/1.1\r\nHost: a\r\nx-request-id: ~!\r\n\r\n", "Get / path=/ 1.1 keep-alive id=~! body=none");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: a b\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID:\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: \xc3\xa9\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: a\r\nX-Request-ID: b\r\n\r\n",
            "Get / path=/ 1.1 keep-alive body=none",
        );
        let id = "i".repeat(128);
        check(
            format!("GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: {id}\r\n\r\n").as_bytes(),
            &format!("Get / path=/ 1.1 keep-alive id={id} body=none"),
        );
        let id = "i".repeat(129);
        check(
            format!("GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: {id}\r\n\r\n").as_bytes(),
            "Get / path=/ 1.1 keep-alive body=none",
        );
    }

    #[test]
    fn targets() {
        check(
            b"GET http://example.com/v1/keys?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            "Get /v1/keys?q=1 path=/v1/keys query=q=1 1.1 keep-alive body=none",
        );
        check(b"GET HTTPS://example.com:8443 HTTP/1.1\r\nHost: a\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(b"GET http://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", "Get / path=/ 1.1 keep-alive body=none");
        check(
            b"GET http://example.com?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            "Get / path=/ query=x=1 1.1 keep-alive body=none",
        );
        check(b"GET http://[::1]/a HTTP/1.1\r\nHost: a\r\n\r\n", "Get /a path=/a 1.1 keep-alive body=none");
        check(b"GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET http://u:p@example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET http:/a HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"CONNECT example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
    }

    #[test]
    fn incomplete_heads() {
        check(b"", "incomplete");
        check(b"\r\n", "incomplete");
        check(b"G", "incomplete");
        check(b"GET / HTTP/1.", "incomplete");
        check(b"GET / HTTP/1.1\r\nHost: a\r\n", "incomplete");
        check(b"GET / HTTP/1.1\r\nHost: a\r\n\r", "incomplete");
    }

    #[test]
    fn content_length_strictness() {
        for value in [
            "+5",
            "-1",
            "0x5",
            "5,6",
            "5, 5",
            "5 6",
            "5;",
            "",
            "1e3",
            "\u{664}",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            check(
                format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n").as_bytes(),
                "err bad_request",
            );
        }
        check(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "err bad_request");
        check(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", "err bad_request");
        check(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", "err payload_too_large");
        check(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", "err payload_too_large");
        // Names that '_'-normalising intermediaries would read as framing fields.
        check(b"POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n", "err bad_request");
        check(b"POST / HTTP/1.1\r\nHost: a\r\ntransfer_encoding: chunked\r\n\r\n", "err bad_request");
    }

    #[test]
    fn transfer_encoding_strictness() {
        let te = |lines: &str, expected: &str| {
            check(format!("POST / HTTP/1.1\r\nHost: a\r\n{lines}\r\n").as_bytes(), expected);
        };
        te("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "err bad_request");
        te("Content-Length: 5\r\nTransfer-Encoding: gzip\r\n", "err bad_request");
        te("Transfer-Encoding: gzip, chunked\r\n", "err not_implemented");
        te("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", "err not_implemented");
        te("Transfer-Encoding: gzip\r\n", "err not_implemented");
        te("Transfer-Encoding: identity\r\n", "err not_implemented");
        te("Transfer-Encoding: chunked, gzip\r\n", "err bad_request");
        te("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", "err bad_request");
        te("Transfer-Encoding: chunked, chunked\r\n", "err bad_request");
        te("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "err bad_request");
        te("Transfer-Encoding: chunked;q=1\r\n", "err bad_request");
        te("Transfer-Encoding: chun ked\r\n", "err bad_request");
        te("Transfer-Encoding: \"chunked\"\r\n", "err bad_request");
        te("Transfer-Encoding:\r\n", "err bad_request");
        te("Transfer-Encoding: ,\r\n", "err bad_request");
        check(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "err bad_request");
    }

    #[test]
    fn line_and_byte_strictness() {
        // Obsolete line folding (RFC 9112 §5.2).
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", "err bad_request");
        // Whitespace between field name and colon (RFC 9112 §5.1).
        check(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", "err bad_request");
        // Bare CR and bare LF (RFC 9112 §2.2).
        check(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\rHost: a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\nHost: a\n\n", "err bad_request");
        check(b"GET / HTTP/1.1\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\r\n\n", "err bad_request");
        check(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        // Control characters (RFC 9110 §5.5).
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[0m\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0b\r\n\r\n", "err bad_request");
        check(b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET /\t HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        // Request-line delimiters are single spaces (RFC 9112 §3).
        check(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "err bad_request");
        check(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET /\r\n\r\n", "err bad_request");
    }

    #[test]
    fn versions() {
        check(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", "err http_version_not_supported");
        check(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "err http_version_not_supported");
        check(b"GET / HTTP/0.9\r\n\r\n", "err http_version_not_supported");
        check(b"GET / HTTP/3", "err http_version_not_supported");
        check(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "err http_version_not_supported");
        check(b"GET / http/1.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/11.1\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET / HTTP/1.x\r\nHost: a\r\n\r\n", "err bad_request");
        check(b"GET / FOO\r\n\r\n", "err bad_request");
    }

    fn request_line_of(len: usize) -> String {
        let fixed = "GET / HTTP/1.1".len();
        format!("GET /{} HTTP/1.1", "a".repeat(len - fixed))
    }

    #[test]
    fn request_line_limit() {
        let line = request_line_of(MAX_REQUEST_LINE);
        check(
            format!("{line}\r\nHost: a\r\n\r\n").as_bytes(),
            &format!("Get {0} path={0} 1.1 keep-alive body=none", &line[4..line.len() - 9]),
        );
        let line = request_line_of(MAX_REQUEST_LINE + 1);
        check(format!("{line}\r\nHost: a\r\n\r\n").as_bytes(), "err uri_too_long");
        // Unfinished: exactly the limit may still be followed by CRLF, one more byte may not.
        let line = request_line_of(MAX_REQUEST_LINE);
        check(format!("{line}\r").as_bytes(), "incomplete");
        check(format!("{line}\r\r").as_bytes(), "err bad_request");
        let unfinished = format!("GET /{}", "a".repeat(MAX_REQUEST_LINE - 5));
        check(unfinished.as_bytes(), "incomplete");
        check(format!("{unfinished}a").as_bytes(), "err uri_too_long");
        check(format!("{unfinished}a\r").as_bytes(), "err bad_request");
        let path = "a".repeat(MAX_HEAD);
        check(format!("GET /{path}").as_bytes(), "err uri_too_long");
        check(format!("\r\n\r\nGET /{}", &path[..MAX_REQUEST_LINE - 5]).as_bytes(), "incomplete");
        check(format!("\r\n\r\nGET /{}", &path[..MAX_REQUEST_LINE - 4]).as_bytes(), "err uri_too_long");
    }

    /// A request whose head is exactly `len` bytes, padded with one header.
    fn head_of(len: usize) -> String {
        let fixed = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".len();
        format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "p".repeat(len - fixed))
    }

    #[test]
    fn head_limits() {
        check(head_of(MAX_HEAD).as_bytes(), "Get / path=/ 1.1 keep-alive body=none");
        check(format!("{}trailing body", head_of(MAX_HEAD)).as_bytes(), "Get / path=/ 1.1 keep-alive body=none");
        check(head_of(MAX_HEAD + 1).as_bytes(), "err headers_too_large");
        let unfinished = head_of(MAX_HEAD + 2);
        check(&unfinished.as_bytes()[..MAX_HEAD - 1], "incomplete");
        check(&unfinished.as_bytes()[..MAX_HEAD], "err headers_too_large");
        check(&unfinished.as_bytes()[..MAX_HEAD + 1], "err headers_too_large");

        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..MAX_HEADERS {
            many += &format!("X-{i}: v\r\n");
        }
        check(format!("{many}\r\n").as_bytes(), "Get / path=/ 1.1 keep-alive body=none");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let full = format!("{many}\r\n");
        let head = parse_head(full.as_bytes(), &mut headers).unwrap().unwrap();
        assert_eq!((head.header_count, head.head_len), (MAX_HEADERS, full.len()));
        check(format!("{many}X-last: v\r\n\r\n").as_bytes(), "err headers_too_large");
    }

    #[test]
    fn framing_errors_wire_contract() {
        let all = [
            (FramingError::BadRequest, 400, "bad_request"),
            (FramingError::UriTooLong, 414, "uri_too_long"),
            (FramingError::HeadersTooLarge, 431, "headers_too_large"),
            (FramingError::PayloadTooLarge, 413, "payload_too_large"),
            (FramingError::NotImplemented, 501, "not_implemented"),
            (FramingError::VersionNotSupported, 505, "http_version_not_supported"),
        ];
        for (err, status, reason) in all {
            assert_eq!((err.status(), err.reason()), (status, reason));
            let message = err.message();
            assert!(!message.is_empty() && !message.ends_with('.'));
            assert!(!message.starts_with(|c: char| c.is_uppercase()));
            assert_eq!(err.to_string(), message);
        }
    }

    /// Feeds `pieces` in order, as a connection would, and renders the outcome.
    fn decode_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> String {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut left_over = 0;
        let mut done = false;
        for piece in pieces {
            if done {
                left_over += piece.len();
                continue;
            }
            match decoder.decode(piece, &mut out) {
                Ok((consumed, now_done)) => {
                    assert!(consumed <= piece.len());
                    assert!(now_done || consumed == piece.len(), "stopped early without finishing");
                    done = now_done;
                    left_over += piece.len() - consumed;
                }
                Err(err) => {
                    // Once failed, always failed.
                    assert_eq!(decoder.decode(b"0\r\n\r\n", &mut out), Err(err));
                    return format!("err {}", err.reason());
                }
            }
        }
        assert_eq!(decoder.is_done(), done);
        assert_eq!(decoder.decoded_len(), out.len());
        let body = String::from_utf8_lossy(&out);
        if done {
            format!("done {body:?} rest={left_over}")
        } else {
            format!("partial {body:?}")
        }
    }

    /// Decodes `input` whole, then split in two at every boundary and byte by byte, and
    /// requires the same outcome from each.
    #[track_caller]
    fn check_chunked(input: &[u8], expected: &str) {
        let whole = decode_pieces([input]);
        assert_eq!(whole, expected, "input: {:?}", brief(input));
        if input.len() <= 512 {
            for at in 0..=input.len() {
                let (a, b) = input.split_at(at);
                assert_eq!(decode_pieces([a, b]), whole, "split at {at}");
            }
        }
        assert_eq!(decode_pieces(input.chunks(1)), whole, "byte by byte");
    }

    #[test]
    fn chunked_valid() {
        check_chunked(b"5\r\nhello\r\n0\r\n\r\n", r#"done "hello" rest=0"#);
        check_chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", r#"done "hello world" rest=0"#);
        check_chunked(b"0\r\n\r\n", r#"done "" rest=0"#);
        check_chunked(b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", r#"done "0123456789abcdefghij" rest=0"#);
        check_chunked(b"005\r\nhello\r\n000\r\n\r\n", r#"done "hello" rest=0"#);
        check_chunked(b"3\r\n\r\n\r\r\n0\r\n\r\n", r#"done "\r\n\r" rest=0"#);
        // Chunk extensions (RFC 9112 §7.1.1), including BWS and quoted values.
        check_chunked(b"5;name=value\r\nhello\r\n0;last\r\n\r\n", r#"done "hello" rest=0"#);
        check_chunked(b"5 ;a ; b = c\t;d=\"x;y, \\\"z\"\r\nhello\r\n0\r\n\r\n", r#"done "hello" rest=0"#);
        check_chunked(b"5;a=\"\"\r\nhello\r\n0\r\n\r\n", r#"done "hello" rest=0"#);
        check_chunked(b"5;a=\"\xff\"\r\nhello\r\n0\r\n\r\n", r#"done "hello" rest=0"#);
        // Trailers are read and discarded (RFC 9112 §7.1.2).
        check_chunked(b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum:1\r\nEmpty:\r\n\r\n", r#"done "hello" rest=0"#);
        // What follows the body belongs to the next request.
        check_chunked(b"0\r\n\r\nGET / HTTP/1.1\r\n", r#"done "" rest=16"#);
        check_chunked(b"", r#"partial """#);
        check_chunked(b"5\r\nhel", r#"partial "hel""#);
        check_chunked(b"5\r\nhello\r\n0\r\n\r", r#"partial "hello""#);
        check_chunked(b"5\r\nhello\r\n0\r\nX: y\r\n", r#"partial "hello""#);
        check_chunked(b"100000\r\n", r#"partial """#);
    }

    #[test]
    fn chunked_malformed() {
        for input in [
            &b"\r\n"[..],
            b"x\r\n",
            b"g\r\nabc",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            // Bare LF and bare CR around the size line.
            b"5\nhello\r\n0\r\n\r\n",
            b"5\rhello\r\n0\r\n\r\n",
            b"5;a\nhello\r\n0\r\n\r\n",
            // Chunk data not followed by CRLF.
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\r\n0\r\n\r\n",
            b"5\r\nhello0\r\n\r\n",
            // More than 64 bits of size.
            b"10000000000000000\r\n",
            b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n",
            // Junk in extensions.
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;;a\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a \r\nhello\r\n0\r\n\r\n",
            b"5;a=b \r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"5;a=b\x01\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\\\x00\"\r\nhello\r\n0\r\n\r\n",
            b"5;a@b\r\nhello\r\n0\r\n\r\n",
            b"5;\xff\r\nhello\r\n0\r\n\r\n",
            // Malformed trailers and end of body.
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nName : x\r\n\r\n",
            b"0\r\n: x\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\nName: a\x00\r\n\r\n",
            b"0\r\nName: a\n\r\n",
            b"0\r\nName: a\r\n\n",
            b"0\r\n\n",
            b"0\r\n\r\r",
            b"0\r\nX\r",
        ] {
            check_chunked(input, "err bad_request");
        }
    }

    #[test]
    fn chunked_limits() {
        // One chunk over the whole budget, refused before its data arrives.
        check_chunked(b"100001\r\n", "err payload_too_large");
        check_chunked(b"FFFFFFFFFFFFFFFF\r\n", "err payload_too_large");
        // Exactly MAX_BODY over two chunks, then one byte more.
        let half = MAX_BODY / 2;
        let data = vec![b'x'; half];
        let mut body = format!("{half:x}\r\n").into_bytes();
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n{half:x}\r\n").as_bytes());
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
        let mut exact = body.clone();
        exact.extend_from_slice(b"0\r\n\r\n");
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(decoder.decode(&exact, &mut out), Ok((exact.len(), true)));
        assert_eq!(out.len(), MAX_BODY);
        let mut over = body;
        over.extend_from_slice(b"1\r\n");
        check_chunked(&over, "err payload_too_large");

        // The chunk-size line, leading zeros and extensions included.
        let zeros = "0".repeat(MAX_CHUNK_LINE - 1);
        check_chunked(format!("{zeros}5\r\nhello\r\n0\r\n\r\n").as_bytes(), r#"done "hello" rest=0"#);
        check_chunked(format!("{zeros}05\r\nhello\r\n0\r\n\r\n").as_bytes(), "err bad_request");
        let long_ext = format!("5;a={}\r\nhello\r\n0\r\n\r\n", "v".repeat(MAX_CHUNK_LINE));
        check_chunked(long_ext.as_bytes(), "err bad_request");
        // Extensions summed over the body.
        let chunk = format!("1;e={}\r\nx\r\n", "v".repeat(1000));
        let fits = format!("{}0\r\n\r\n", chunk.repeat(MAX_CHUNK_EXTENSIONS / 1003));
        check_chunked(fits.as_bytes(), &format!("done {:?} rest=0", "x".repeat(MAX_CHUNK_EXTENSIONS / 1003)));
        let too_many = format!("{}0\r\n\r\n", chunk.repeat(MAX_CHUNK_EXTENSIONS / 1003 + 1));
        check_chunked(too_many.as_bytes(), "err bad_request");
        // The trailer section, final CRLF included.
        let trailer = |len: usize| format!("0\r\nT: {}\r\n\r\n", "t".repeat(len - "T: \r\n\r\n".len()));
        check_chunked(trailer(MAX_HEAD).as_bytes(), r#"done "" rest=0"#);
        check_chunked(trailer(MAX_HEAD + 1).as_bytes(), "err headers_too_large");
    }

    /// A valid request and what parsing it must yield.
    #[derive(Debug, Clone)]
    struct Generated {
        bytes: Vec<u8>,
        method: &'static str,
        path: String,
        query: Option<String>,
        minor: u8,
        body: BodyFraming,
        header_count: usize,
    }

    fn valid_request() -> impl Strategy<Value = Generated> {
        (
            prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PURGE"]),
            "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,8}){1,4}",
            proptest::option::of("[a-zA-Z0-9=&%/?-]{0,12}"),
            0u8..=1,
            prop::collection::vec(("[A-Za-z0-9-]{1,10}", "[!-~]([ -~\t]{0,20}[!-~])?"), 0..8),
            proptest::option::of(prop_oneof![(0..=MAX_BODY).prop_map(BodyFraming::Length), Just(BodyFraming::Chunked)]),
            0usize..3,
        )
            .prop_map(|(method, path, query, minor, extra, body, leading)| {
                let mut text = "\r\n".repeat(leading);
                text += &format!("{method} {path}");
                if let Some(query) = &query {
                    text += &format!("?{query}");
                }
                text += &format!(" HTTP/1.{minor}\r\nHost: example.com\r\n");
                for (name, value) in &extra {
                    text += &format!("X-P-{name}: {value}\r\n");
                }
                let body = match (body, minor) {
                    (Some(BodyFraming::Length(len)), _) => {
                        text += &format!("Content-Length: {len}\r\n");
                        BodyFraming::Length(len)
                    }
                    (Some(BodyFraming::Chunked), 1) => {
                        text += "Transfer-Encoding: chunked\r\n";
                        BodyFraming::Chunked
                    }
                    _ => BodyFraming::None,
                };
                text += "\r\n";
                Generated {
                    bytes: text.into_bytes(),
                    method,
                    path,
                    query,
                    minor,
                    header_count: 1 + extra.len() + usize::from(body != BodyFraming::None),
                    body,
                }
            })
    }

    /// Arbitrary bytes, half of them behind a plausible request line.
    fn noise() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            prop::collection::vec(any::<u8>(), 0..600).prop_map(|tail| {
                let mut bytes = b"POST / HTTP/1.1\r\nHost: a\r\n".to_vec();
                bytes.extend(tail);
                bytes
            }),
        ]
    }

    proptest! {
        #[test]
        fn valid_request_parses_for_any_extension(request in valid_request(), suffix in prop::collection::vec(any::<u8>(), 0..64)) {
            let expected = parse(&request.bytes);
            let head = match expected {
                Ok(Some(head)) => head,
                other => return Err(TestCaseError::fail(format!("{other:?} for {:?}", show(&request.bytes)))),
            };
            prop_assert_eq!(head.method_bytes, request.method.as_bytes());
            prop_assert_eq!(head.path, request.path.as_bytes());
            prop_assert_eq!(head.query, request.query.as_deref().map(str::as_bytes));
            prop_assert_eq!(head.minor_version, request.minor);
            prop_assert_eq!(head.body, request.body);
            prop_assert_eq!(head.head_len, request.bytes.len());
            prop_assert_eq!(head.header_count, request.header_count);
            let mut extended = request.bytes.clone();
            extended.extend_from_slice(&suffix);
            prop_assert_eq!(parse(&extended), expected);
            for end in 0..request.bytes.len() {
                prop_assert_eq!(parse(&request.bytes[..end]), Ok(None), "prefix of {} bytes", end);
            }
        }

        #[test]
        fn parse_head_never_panics(bytes in noise(), suffix in prop::collection::vec(any::<u8>(), 0..32)) {
            // A complete head is final: more bytes never change it.
            if let Ok(Some(head)) = parse(&bytes) {
                prop_assert!(head.head_len <= bytes.len());
                let mut extended = bytes.clone();
                extended.extend_from_slice(&suffix);
                prop_assert_eq!(parse(&extended), Ok(Some(head)));
            }
        }

        #[test]
        fn corrupted_request_never_panics(
            request in valid_request(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..4),
        ) {
            let mut bytes = request.bytes;
            for (at, byte, insert) in edits {
                let at = at.index(bytes.len());
                if insert { bytes.insert(at, byte) } else { bytes[at] = byte }
            }
            if let Ok(Some(head)) = parse(&bytes) {
                prop_assert!(head.head_len <= bytes.len());
                prop_assert!(check_head_bytes(&bytes[..head.head_len]).is_ok());
            }
        }

        #[test]
        fn chunked_never_panics_and_ignores_splits(bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(prop::sample::select(b"0123456789aF;= \"\\\r\nx:".to_vec()), 0..300),
        ], at in any::<prop::sample::Index>()) {
            let (a, b) = bytes.split_at(at.index(bytes.len() + 1));
            prop_assert_eq!(decode_pieces([a, b]), decode_pieces([&bytes[..]]));
        }

        #[test]
        fn chunked_round_trip(
            body in prop::collection::vec(any::<u8>(), 0..2000),
            sizes in prop::collection::vec(1usize..300, 1..20),
            extensions in any::<bool>(),
            trailers in any::<bool>(),
            split in any::<prop::sample::Index>(),
        ) {
            let mut encoded = Vec::new();
            let mut rest = &body[..];
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                encoded.extend_from_slice(format!("{:X}", chunk.len()).as_bytes());
                if extensions {
                    encoded.extend_from_slice(b";n=v;q=\"a,b\"");
                }
                encoded.extend_from_slice(b"\r\n");
                encoded.extend_from_slice(chunk);
                encoded.extend_from_slice(b"\r\n");
                rest = tail;
            }
            encoded.extend_from_slice(b"0\r\n");
            if trailers {
                encoded.extend_from_slice(b"X-Checksum: abc\r\n");
            }
            encoded.extend_from_slice(b"\r\n");
            let (a, b) = encoded.split_at(split.index(encoded.len() + 1));
            let mut decoder = ChunkedDecoder::new();
            let mut out = Vec::new();
            let first = decoder.decode(a, &mut out);
            let second = decoder.decode(b, &mut out);
            prop_assert_eq!(first, Ok((a.len(), b.is_empty())));
            prop_assert_eq!(second, Ok((b.len(), true)));
            prop_assert_eq!(out, body);
        }
    }
}
