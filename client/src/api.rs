//! The HTTP side: one blocking call to the server per command, over ureq. Sends the request
//! models of `common::model` as JSON and hands back the answer's JSON; turns the Talos error
//! envelope and transport failures into [`Error`]s. It never follows redirects: a redirected
//! verify would carry the key to another address.

use std::time::Duration;

use common::error::ErrorEnvelope;
use serde::Serialize;
use serde_json::Value;
use ureq::http::{Method, Uri};

use crate::Error;

/// How long one call may take in all (connect, send, answer).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A server's `v2alpha1` API at `endpoint`.
pub struct Api {
    agent: ureq::Agent,
    /// The endpoint without a trailing `/`; paths start with `/`.
    base: String,
}

impl Api {
    /// Checks that `endpoint` is an `http://` or `https://` URL with a host.
    pub fn new(endpoint: &str) -> Result<Api, Error> {
        let base = endpoint.trim_end_matches('/');
        let uri: Uri = base.parse().map_err(|_| Error::Usage(format!("invalid --endpoint {endpoint:?}")))?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || uri.authority().is_none() || uri.query().is_some() {
            return Err(Error::Usage(format!(
                "invalid --endpoint {endpoint:?}: expected http://host[:port] or https://host[:port]"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(TIMEOUT))
            .user_agent(concat!("talos/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Api { agent, base: base.to_owned() })
    }

    /// `GET path?query`.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Option<Value>, Error> {
        self.call(Method::GET, path, query, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &impl Serialize) -> Result<Option<Value>, Error> {
        self.call(Method::POST, path, &[], Some(to_json(body)?))
    }

    /// `PATCH path?query` with a JSON body.
    pub fn patch(&self, path: &str, query: &[(&str, String)], body: &impl Serialize) -> Result<Option<Value>, Error> {
        self.call(Method::PATCH, path, query, Some(to_json(body)?))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Option<Value>, Error> {
        self.call(Method::DELETE, path, &[], None)
    }

    /// One call. `Ok(None)` for an answer without a body (204).
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Option<Value>, Error> {
        let url = format!("{}{path}", self.base);
        let sent = match body {
            Some(body) => {
                let mut req = match method {
                    Method::PATCH => self.agent.patch(&url),
                    _ => self.agent.post(&url),
                };
                for (name, value) in query {
                    req = req.query(*name, value);
                }
                req.header("content-type", "application/json").send(&body[..])
            }
            None => {
                let mut req = match method {
                    Method::DELETE => self.agent.delete(&url),
                    _ => self.agent.get(&url),
                };
                for (name, value) in query {
                    req = req.query(*name, value);
                }
                req.call()
            }
        };
        let response = sent.map_err(|e| transport_error(&self.base, e))?;
        let status = response.status().as_u16();
        let bytes = response.into_body().read_to_vec().map_err(|e| transport_error(&self.base, e))?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
                Ok(envelope) => Error::Api(envelope.error),
                Err(_) => Error::Unexpected(format!("HTTP {status} without a Talos error envelope")),
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| Error::Unexpected(format!("HTTP {status} with a body that is not JSON")))
    }
}

fn to_json(body: &impl Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|e| Error::Usage(format!("cannot encode the request: {e}")))
}

/// A failure to reach the server or to read its answer. ureq's messages name the endpoint and
/// the cause, never the request body.
fn transport_error(endpoint: &str, e: ureq::Error) -> Error {
    match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => Error::Usage(format!("invalid --endpoint {endpoint:?}: {e}")),
        other => Error::Connection(format!("{endpoint}: {other}")),
    }
}
