//! Building admin-plane responses: JSON bodies, the Talos error envelope, and the headers every
//! response carries (security headers of talos-api.md §1.4, `X-Request-ID`).

use bytes::Bytes;
use common::error::ApiError;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

/// Security headers on every response, both planes (talos-api.md §1.4, decisions.md §5.10).
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("content-security-policy", "default-src 'none'"),
];

pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Bytes> {
    raw_json(status, serde_json::to_vec(body).expect("a JSON value serialises"))
}

pub fn raw_json(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn error(err: &ApiError) -> Response<Bytes> {
    raw_json(StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), err.to_json())
}

pub fn no_content() -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// Adds the headers every response carries.
pub fn finish(resp: &mut Response<Bytes>, request_id: &str) {
    let headers = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), v);
    }
}

/// The incoming `X-Request-ID` when it is 1..=128 visible ASCII bytes, else a new UUID.
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}
