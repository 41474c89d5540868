//! The Talos error envelope (AIP-193, talos-api.md §1.3) and the catalogue of API errors.
//!
//! Every non-2xx answer of either plane is an [`ApiError`] rendered here, so the wire contract
//! (status, canonical code name, `reason`, domain) reads in one place. 5xx errors carry a generic
//! message; the detail goes to the log, never to the client.

use serde_json::json;

/// The ErrorInfo domain of every Talos error.
pub const ERROR_DOMAIN: &str = "www.ory.com/talos";

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// Canonical gRPC code name, e.g. `NOT_FOUND`.
    pub code: &'static str,
    /// Stable upper-snake `reason`, e.g. `API_KEY_NOT_FOUND`.
    pub reason: &'static str,
    pub message: String,
    /// String-valued details (`ErrorInfo.metadata`).
    pub metadata: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, reason, message: message.into(), metadata: Vec::new() }
    }

    pub fn with_metadata(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((key, value.into()));
        self
    }

    /// 400 `BAD_REQUEST` with a message naming what was wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", "BAD_REQUEST", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", "API_KEY_NOT_FOUND", message)
    }

    /// 404 for a route that does not exist (or is not served by this plane).
    pub fn route_not_found() -> Self {
        Self::new(404, "NOT_FOUND", "NOT_FOUND", "The requested resource could not be found")
    }

    /// Whether this is [`ApiError::route_not_found`] (not a missing key on a known route).
    pub fn is_route_not_found(&self) -> bool {
        self.status == 404 && self.reason == "NOT_FOUND"
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, "UNIMPLEMENTED", "METHOD_NOT_ALLOWED", "The method is not allowed for this resource")
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "ALREADY_EXISTS", "CONFLICT", message)
    }

    pub fn api_key_exists(message: impl Into<String>) -> Self {
        Self::new(409, "ALREADY_EXISTS", "API_KEY_EXISTS", message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(409, "FAILED_PRECONDITION", "FAILED_PRECONDITION", message)
    }

    pub fn payload_too_large() -> Self {
        Self::new(413, "INVALID_ARGUMENT", "PAYLOAD_TOO_LARGE", "The request body is too large")
    }

    /// 500 with the generic message; log the cause before returning this.
    pub fn internal() -> Self {
        Self::new(500, "INTERNAL", "INTERNAL_SERVER_ERROR", "an internal error occurred")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "UNAVAILABLE", "SERVICE_UNAVAILABLE", message)
    }

    /// The JSON body of the envelope.
    pub fn to_json(&self) -> Vec<u8> {
        let mut info = json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": self.reason,
            "domain": ERROR_DOMAIN,
        });
        if !self.metadata.is_empty() {
            let metadata: serde_json::Map<String, serde_json::Value> =
                self.metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone().into())).collect();
            info["metadata"] = metadata.into();
        }
        let body = json!({
            "error": {
                "code": self.status,
                "message": self.message,
                "status": self.code,
                "details": [info],
            }
        });
        serde_json::to_vec(&body).expect("a JSON value serialises")
    }
}

/// The 400 for a JSON body that does not parse. serde's own message can quote the offending
/// value — a raw key, when a client sends one in the wrong place — so it is only kept when it
/// quotes nothing.
pub fn invalid_body(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "malformed JSON".to_owned(),
        Category::Eof => "truncated JSON".to_owned(),
        Category::Data | Category::Io => {
            let text = e.to_string();
            let text = text.split(" at line ").next().unwrap_or("").to_owned();
            if text.contains('"') || text.contains('`') {
                "a field has the wrong type or value".to_owned()
            } else {
                text
            }
        }
    };
    ApiError::bad_request(format!("invalid request body: {what} (line {}, column {})", e.line(), e.column()))
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The envelope as a client reads it (`{"error": {...}}`); [`ApiError::to_json`] writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorStatus,
}

/// The `error` member of the envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ErrorStatus {
    pub code: u16,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub details: Vec<ErrorInfo>,
}

/// A `google.rpc.ErrorInfo` detail.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ErrorInfo {
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl ErrorStatus {
    /// The first detail's `reason`, if any.
    pub fn reason(&self) -> Option<&str> {
        self.details.first().map(|d| d.reason.as_str()).filter(|r| !r.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_body_never_quotes_the_input() {
        for body in [
            r#"{"credential": "ory_ak_v1_secret"#,
            r#"{"credential": {"k": "ory_ak_v1_secret"}}"#,
            r#"{"credential": ["ory_ak_v1_secret"]}"#,
            r#"[5, "ory_ak_v1_secret"]"#,
        ] {
            #[derive(serde::Deserialize, Debug)]
            #[allow(dead_code)]
            struct Body {
                credential: Option<String>,
            }
            let e = serde_json::from_str::<Body>(body).unwrap_err();
            let msg = invalid_body(&e).message;
            assert!(!msg.contains("ory_ak"), "{msg}");
            assert!(msg.starts_with("invalid request body: "), "{msg}");
        }
    }

    #[test]
    fn envelope_shape() {
        let err = ApiError::not_found("API key not found").with_metadata("limit", "10");
        let v: serde_json::Value = serde_json::from_slice(&err.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"error": {"code": 404, "message": "API key not found", "status": "NOT_FOUND", "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_NOT_FOUND",
                "domain": "www.ory.com/talos", "metadata": {"limit": "10"}}]}})
        );
        let v: serde_json::Value = serde_json::from_slice(&ApiError::internal().to_json()).unwrap();
        assert!(v["error"]["details"][0].get("metadata").is_none());
    }

    #[test]
    fn envelope_reads_back() {
        let err = ApiError::not_found("API key not found").with_metadata("limit", "10");
        let read: ErrorEnvelope = serde_json::from_slice(&err.to_json()).unwrap();
        assert_eq!(read.error.code, 404);
        assert_eq!(read.error.status, "NOT_FOUND");
        assert_eq!(read.error.message, "API key not found");
        assert_eq!(read.error.reason(), Some("API_KEY_NOT_FOUND"));
        assert_eq!(read.error.details[0].domain, ERROR_DOMAIN);
        assert_eq!(read.error.details[0].metadata.get("limit").map(String::as_str), Some("10"));
    }
}
