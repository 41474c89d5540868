//! Any bytes as the JSON body (or query string) of every admin route, answered by the real
//! `admin::AdminService` over an in-memory store that holds a fresh issued key (the target of
//! the key routes), an imported key and a canary key no route is pointed at.
//!
//! The first input byte picks the route; the rest is the body. In the body, `$SECRET` is
//! replaced with the target key's secret and `$RAW` with the imported key, so the fuzzer reaches
//! past "unknown key" into the handlers' own rules. Beyond "never panics":
//! - every answer is a 2xx, or a 4xx in the Talos error envelope (never a 5xx);
//! - every body is JSON (204 has none);
//! - no error body quotes a secret or raw key;
//! - the canary key is still stored, unchanged, and still verifies: a refused or odd request
//!   loses nothing already stored.
#![no_main]

use std::sync::{Arc, OnceLock};

use admin::{AdminService, AdminState, Plane};
use bytes::Bytes;
use common::metrics::Metrics;
use common::model::KeyKind;
use common::store::redb::RedbStore;
use common::store::Store;
use http::{Method, Request, Response};
use libfuzzer_sys::fuzz_target;

mod fixture;

const RAW_KEY: &str = "fuzz-imported-raw-key-0123456789";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

struct Issued {
    key_id: String,
    secret: String,
}

fn request(method: Method, uri: &str, body: impl Into<Bytes>) -> Request<Bytes> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("a request")
}

fn json(resp: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(resp.body()).unwrap_or_else(|e| panic!("{} answered non-JSON ({e})", resp.status()))
}

async fn issue(service: &AdminService, name: &str) -> Issued {
    let body = format!(r#"{{"name":"{name}","actor_id":"svc-fuzz","scopes":["read"]}}"#);
    let resp = service.handle(request(Method::POST, "/v2alpha1/admin/issuedApiKeys", body)).await;
    assert!(resp.status().is_success(), "the fixture key issues");
    let v = json(&resp);
    Issued {
        key_id: v["issued_api_key"]["key_id"].as_str().expect("key_id").to_owned(),
        secret: v["secret"].as_str().expect("secret").to_owned(),
    }
}

async fn verifies(service: &AdminService, secret: &str) -> bool {
    let body = serde_json::json!({ "credential": secret }).to_string();
    let resp = service.handle(request(Method::POST, "/v2alpha1/admin/apiKeys:verify", body)).await;
    json(&resp)["is_valid"] == true
}

/// The route the first byte picks, with the target key's id filled in.
fn route(pick: u8, target: &str, imported: &str) -> (Method, String) {
    let admin = "/v2alpha1/admin";
    match pick % 14 {
        0 => (Method::POST, format!("{admin}/issuedApiKeys")),
        1 => (Method::POST, format!("{admin}/importedApiKeys")),
        2 => (Method::POST, format!("{admin}/importedApiKeys:batchCreate")),
        3 => (Method::PATCH, format!("{admin}/issuedApiKeys/{target}")),
        4 => (Method::PATCH, format!("{admin}/importedApiKeys/{imported}")),
        5 => (Method::POST, format!("{admin}/issuedApiKeys/{target}:revoke")),
        6 => (Method::POST, format!("{admin}/importedApiKeys/{imported}:revoke")),
        7 => (Method::POST, format!("{admin}/issuedApiKeys/{target}:rotate")),
        8 => (Method::POST, format!("{admin}/apiKeys:derive")),
        9 => (Method::POST, format!("{admin}/apiKeys:verify")),
        10 => (Method::POST, format!("{admin}/apiKeys:batchVerify")),
        11 => (Method::POST, "/v2alpha1/apiKeys:selfRevoke".to_owned()),
        // The body as the query string of a list.
        12 => (Method::GET, format!("{admin}/issuedApiKeys?")),
        _ => (Method::GET, format!("{admin}/importedApiKeys?")),
    }
}

/// One service and store for the whole run (a fresh store per input would cost most of the
/// time): the canary and the imported key are made once, a new target key per input.
struct Fixture {
    service: AdminService,
    store: Arc<dyn Store>,
    canary: Issued,
    imported: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let store: Arc<dyn Store> = Arc::new(RedbStore::in_memory().expect("memory store"));
        let state = AdminState::new(fixture::config(), store.clone(), fixture::verifier(), None, Metrics::new("all"));
        let service = AdminService::new(state, Plane::AllInOne);
        runtime().block_on(async {
            let canary = issue(&service, "canary").await;
            let import = serde_json::json!({ "raw_key": RAW_KEY, "name": "imported", "actor_id": "svc-fuzz" });
            let uri = "/v2alpha1/admin/importedApiKeys";
            let resp = service.handle(request(Method::POST, uri, import.to_string())).await;
            assert!(resp.status().is_success(), "the fixture key imports");
            let imported = json(&resp)["key_id"].as_str().expect("key_id").to_owned();
            Fixture { service, store, canary, imported }
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let Fixture { service, store, canary, imported } = fixture();
    runtime().block_on(async {
        let target = issue(service, "target").await;
        let canary_before = store.get(KeyKind::Issued, &canary.key_id).expect("store").expect("the canary");

        let text = String::from_utf8_lossy(body).replace("$SECRET", &target.secret).replace("$RAW", RAW_KEY);
        let (method, mut uri) = route(pick, &target.key_id, imported);
        let req = if method == Method::GET {
            // Only what a URI can carry; anything else is not a request a client could send.
            let query: String = text.chars().filter(|c| c.is_ascii_graphic() && *c != '#').collect();
            uri.push_str(&query);
            if uri.parse::<http::Uri>().is_err() {
                return;
            }
            request(method, &uri, Bytes::new())
        } else {
            request(method, &uri, text.into_bytes())
        };
        let resp = service.handle(req).await;

        let status = resp.status().as_u16();
        assert!(status < 500, "{uri} answered {status}: {:?}", String::from_utf8_lossy(resp.body()));
        if status != 204 && !resp.body().is_empty() {
            let v = json(&resp);
            if status >= 400 {
                assert_eq!(v["error"]["code"], status, "{uri}: not the Talos envelope: {v}");
                let raw = String::from_utf8_lossy(resp.body());
                assert!(!raw.contains(&target.secret) && !raw.contains(RAW_KEY), "{uri}: an error quotes a key: {raw}");
            }
        }

        let canary_after = store.get(KeyKind::Issued, &canary.key_id).expect("store").expect("the canary is kept");
        assert_eq!(canary_after, canary_before, "the canary key changed");
        assert!(verifies(service, &canary.secret).await, "the canary key stopped verifying");
    });
});
