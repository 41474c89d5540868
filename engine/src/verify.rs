//! Verify and batch verify on the data plane: the JSON body is read in place (credentials
//! borrowed from the read buffer), verified with `common::verify` against the snapshot, and the
//! pre-rendered answer appended to the write buffer. Batch items are verified as the parser meets
//! them, so a batch needs no list of its own.
//!
//! With `Cache-Control: no-cache` (or `no-store`, or `Pragma: no-cache`) the key is read from the
//! store instead of the snapshot — a deliberate, client-requested slow path.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use common::clock::{self, Nanos};
use common::error::ApiError;
use common::metrics::{Outcome, VerifyMetrics};
use common::snapshot::Snapshot;
use common::store::Store;
use common::verify::{
    Answer, Found, Verifier, VerifyEntry, BATCH_CLOSE, BATCH_OPEN, MAX_BATCH_VERIFY, MAX_CREDENTIAL_LEN,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::respond::{self, CacheStatus, Persist};

/// Where verification reads keys from, for one request.
pub struct Source<'a> {
    pub verifier: &'a Verifier,
    pub snapshot: &'a Snapshot,
    pub store: &'a dyn Store,
    /// Read the store instead of the snapshot.
    pub bypass: bool,
    /// The client address per `serve.http.client_ip_source`, for IP allowlists.
    pub client_ip: Option<IpAddr>,
    /// Where each verification's outcome is counted.
    pub metrics: &'a VerifyMetrics,
}

impl<'a> Source<'a> {
    pub fn cache_status(&self) -> CacheStatus {
        if self.bypass {
            CacheStatus::Skip
        } else {
            CacheStatus::Hit
        }
    }

    /// Appends the `VerifyApiKeyResponse` for one credential; returns the header lines that go
    /// with a valid answer.
    fn answer(
        &self,
        credential: &str,
        audiences: &[Cow<'_, str>],
        now: Nanos,
        out: &mut Vec<u8>,
    ) -> Result<Cow<'a, [u8]>, ApiError> {
        if credential.len() > MAX_CREDENTIAL_LEN {
            return Err(ApiError::bad_request(format!("credential must be at most {MAX_CREDENTIAL_LEN} bytes")));
        }
        // Empty unless the client sent expected audiences: no allocation on the usual path.
        let audiences: Vec<&str> = audiences.iter().map(|a| a.as_ref()).collect();
        let verifier = self.verifier;
        if self.bypass {
            let fresh = self.fresh_lookup(credential, now)?;
            let found = Found(fresh.as_ref());
            let result = verifier.verify(credential, &audiences, now, self.client_ip, &found);
            self.metrics.count(result.as_ref().map_or_else(|r| Outcome::from(*r), |_| Outcome::Valid));
            out.extend_from_slice(result.as_ref().map_or_else(|r| r.body(), Answer::body));
            return Ok(Cow::Owned(result.map(|a| a.headers().to_vec()).unwrap_or_default()));
        }
        let snapshot = self.snapshot;
        Ok(match verifier.verify(credential, &audiences, now, self.client_ip, snapshot) {
            Ok(Answer::Key(entry)) => {
                self.metrics.count(Outcome::Valid);
                out.extend_from_slice(entry.valid_body());
                Cow::Borrowed(entry.valid_headers())
            }
            Ok(Answer::Derived(body)) => {
                self.metrics.count(Outcome::Valid);
                out.extend_from_slice(&body);
                Cow::Borrowed(&[])
            }
            Err(rejection) => {
                self.metrics.count(rejection.into());
                out.extend_from_slice(rejection.body());
                Cow::Borrowed(&[])
            }
        })
    }

    fn fresh_lookup(&self, credential: &str, now: Nanos) -> Result<Option<VerifyEntry>, ApiError> {
        let Ok(id) = self.verifier.precheck(credential, now) else { return Ok(None) };
        match self.store.get(id.kind(), &id.key_id()) {
            Ok(record) => Ok(record.map(|r| VerifyEntry::from_record(&r, self.verifier))),
            Err(e) => {
                tracing::error!(error = %e, "store read failed on a no-cache verify");
                Err(ApiError::internal())
            }
        }
    }
}

/// A string borrowed from the request body when it has no escapes (the usual case), owned
/// only when unescaping was needed. (serde borrows a bare `Cow<str>` field, but not one inside
/// an `Option` — which would cost an allocation per verify.)
struct BodyStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BodyStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Str<'a> {
            type Value = BodyStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<BodyStr<'a>, E> {
                Ok(BodyStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BodyStr<'a>, E> {
                Ok(BodyStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Str(std::marker::PhantomData))
    }
}

/// `VerifyApiKeyRequest`, borrowed.
#[derive(Deserialize, Default)]
struct VerifyBody<'a> {
    #[serde(borrow, default)]
    credential: Option<BodyStr<'a>>,
    #[serde(borrow, default)]
    expected_audiences: Option<Vec<Cow<'a, str>>>,
}

fn bad_body(e: serde_json::Error) -> ApiError {
    common::error::invalid_body(&e)
}

/// An empty body reads as `{}`; anything else must be a JSON object (protojson accepts no
/// other shape for a message).
fn is_blank(body: &[u8]) -> Result<bool, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(true),
        Some(b'{') => Ok(false),
        Some(_) => Err(ApiError::bad_request("invalid request body: expected a JSON object")),
    }
}

/// A data-plane verify route ([`verify`] or [`batch_verify`]): appends the answer body to the
/// buffer and returns the extra header lines that go with it.
pub type Route = for<'a> fn(&Source<'a>, &[u8], &mut Vec<u8>) -> Result<Cow<'a, [u8]>, ApiError>;

/// How one request's response is framed.
pub struct Reply<'r> {
    pub persist: Persist,
    /// HEAD: the headers without the body.
    pub head_only: bool,
    /// The client's `x-request-id`, echoed (one is made when absent).
    pub request_id: Option<&'r [u8]>,
}

/// Answers one framed verify or batch verify request: the whole response, head and body, is
/// appended to `out`. The body is written first, then the head after it, and the two swapped in
/// place, so the answer is composed in the reused buffer without a second one.
pub fn respond(route: Route, source: &Source<'_>, body: &[u8], reply: &Reply<'_>, out: &mut Vec<u8>) {
    let body_at = out.len();
    match route(source, body, out) {
        Ok(extra) => {
            let len = out.len() - body_at;
            let extra_headers: [&[u8]; 2] = [b"content-type: application/json\r\n", &extra];
            respond::write_head(
                out,
                200,
                len,
                Some(source.cache_status()),
                reply.persist,
                reply.request_id,
                &extra_headers,
            );
            // [body][head] -> [head][body]
            out[body_at..].rotate_left(len);
            if reply.head_only {
                out.truncate(out.len() - len);
            }
        }
        Err(err) => {
            out.truncate(body_at);
            respond::write_error(out, &err, b"", reply.persist, reply.head_only, reply.request_id);
        }
    }
}

/// `POST /v2alpha1/admin/apiKeys:verify`; returns the extra header lines of the answer.
pub fn verify<'a>(source: &Source<'a>, body: &[u8], out: &mut Vec<u8>) -> Result<Cow<'a, [u8]>, ApiError> {
    let request: VerifyBody<'_> =
        if is_blank(body)? { VerifyBody::default() } else { serde_json::from_slice(body).map_err(bad_body)? };
    let credential = request.credential.as_ref().map_or("", |c| &c.0);
    source.answer(credential, request.expected_audiences.as_deref().unwrap_or_default(), clock::now(), out)
}

/// `POST /v2alpha1/admin/apiKeys:batchVerify`: answers are appended as the items are parsed.
/// Batch answers carry no per-key headers (talos-api.md §4.9).
pub fn batch_verify<'a>(source: &Source<'a>, body: &[u8], out: &mut Vec<u8>) -> Result<Cow<'a, [u8]>, ApiError> {
    let start = out.len();
    out.extend_from_slice(BATCH_OPEN);
    let mut ctx = Batch { source, out, now: clock::now(), count: 0, failure: None };
    let blank = match is_blank(body) {
        Ok(blank) => blank,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let parsed = if blank {
        Ok(())
    } else {
        let mut de = serde_json::Deserializer::from_slice(body);
        (&mut ctx).deserialize(&mut de).and_then(|()| de.end())
    };
    let failure = ctx.failure.take();
    if let Err(e) = parsed {
        out.truncate(start);
        return Err(failure.unwrap_or_else(|| bad_body(e)));
    }
    out.extend_from_slice(BATCH_CLOSE);
    Ok(Cow::Borrowed(&[]))
}

struct Batch<'s, 'o> {
    source: &'s Source<'s>,
    out: &'o mut Vec<u8>,
    now: Nanos,
    count: usize,
    /// An API error raised inside the parser (e.g. too many items), reported instead of the
    /// serde error that carried it out.
    failure: Option<ApiError>,
}

impl<'de> DeserializeSeed<'de> for &mut Batch<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut Batch<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a BatchVerifyApiKeysRequest object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(BodyStr(key)) = map.next_key::<BodyStr<'de>>()? {
            if key == "requests" && !seen {
                seen = true;
                map.next_value_seed(Items(&mut *self))?;
            } else if key == "requests" {
                return Err(de::Error::duplicate_field("requests"));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Items<'b, 's, 'o>(&'b mut Batch<'s, 'o>);

impl<'de> DeserializeSeed<'de> for Items<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Items<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of VerifyApiKeyRequest")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let batch = self.0;
        while let Some(item) = seq.next_element::<Option<VerifyBody<'de>>>()? {
            batch.count += 1;
            if batch.count > MAX_BATCH_VERIFY {
                batch.failure =
                    Some(ApiError::bad_request(format!("requests must have at most {MAX_BATCH_VERIFY} items")));
                return Err(de::Error::custom("too many items"));
            }
            if batch.count > 1 {
                batch.out.push(b',');
            }
            let item = item.unwrap_or_default();
            let credential = item.credential.as_ref().map_or("", |c| &c.0);
            let audiences = item.expected_audiences.as_deref().unwrap_or_default();
            if let Err(e) = batch.source.answer(credential, audiences, batch.now, batch.out) {
                // (The per-key headers of single verify do not apply to batch answers.)
                batch.failure = Some(e);
                return Err(de::Error::custom("item failed"));
            }
        }
        Ok(())
    }
}
