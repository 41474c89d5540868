//! Secrets hygiene: one run through every route, well-formed and malformed, with `log.level:
//! debug`, then a scan of everything the servers wrote (stdout and stderr) for every secret they
//! handled — the HMAC and pagination secrets, the JWT signing key, every raw key issued, imported
//! or rotated, every derived token, and every malformed credential sent. Along the way, no
//! response may echo a secret sent before it (error bodies and headers included).
//!
//! The run goes twice: through `talos serve` (engine plus the in-process admin, text logs), and
//! through `talos serve admin` + `talos serve check` on one redb file (hyper, JSON logs).

use std::net::SocketAddr;

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::*;

const PAGINATION_SECRET: &str = "hygiene-pagination-secret-0123456789abcdef";

/// The secrets seen so far, and a check of every answer against them.
#[derive(Default)]
struct Secrets {
    known: Vec<String>,
    exchanges: usize,
}

impl Secrets {
    /// Remembers `secret` (and returns it): from now on no answer and no log line may hold it.
    fn add(&mut self, secret: impl Into<String>) -> String {
        let secret = secret.into();
        assert!(secret.len() >= 8, "too short to scan for: {secret:?}");
        self.known.push(secret.clone());
        secret
    }

    /// An issued key, and its checksum alone: the part that proves possession.
    fn add_key(&mut self, key: &str) -> String {
        let checksum = &key[key.rfind('_').unwrap() + 1..];
        self.add(checksum);
        self.add(key)
    }

    /// A JWT, and its signature alone.
    fn add_jwt(&mut self, jwt: &str) -> String {
        self.add(&jwt[jwt.rfind('.').unwrap() + 1..]);
        self.add(jwt)
    }

    fn assert_not_in(&self, what: &str, text: &str) {
        for secret in &self.known {
            assert!(!text.contains(secret.as_str()), "{what} holds the secret {secret:?}:\n{text}");
        }
    }

    /// One request; its answer must not hold any secret known before it.
    fn call(&mut self, to: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let resp = request(to, method, target, headers, body);
        self.check(method, target, &resp);
        resp
    }

    fn check(&mut self, method: &str, target: &str, resp: &Resp) {
        self.exchanges += 1;
        let what = format!("the answer to {method} {target} ({})", resp.status);
        self.assert_not_in(&what, &resp.text);
        let headers: String = resp.headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
        self.assert_not_in(&what, &headers);
    }

    fn post(&mut self, to: SocketAddr, target: &str, body: &Value) -> Resp {
        self.call(to, "POST", target, &[("content-type", "application/json")], &body.to_string())
    }

    /// Raw bytes on one connection (malformed HTTP); every answer is checked.
    fn raw(&mut self, to: SocketAddr, bytes: &str) -> Vec<Resp> {
        let out = raw(to, bytes.as_bytes());
        let resps = parse_responses(&out);
        assert!(!resps.is_empty(), "no answer to {bytes:?}");
        for resp in &resps {
            self.check("raw", &bytes[..bytes.len().min(40)], resp);
        }
        resps
    }
}

/// Drives every route on `admin` (key management, derive) and `data` (verify, self-revoke).
fn exercise(admin: SocketAddr, data: SocketAddr, s: &mut Secrets) {
    const ISSUED: &str = "/v2alpha1/admin/issuedApiKeys";
    const IMPORTED: &str = "/v2alpha1/admin/importedApiKeys";
    const VERIFY: &str = "/v2alpha1/admin/apiKeys:verify";
    const BATCH_VERIFY: &str = "/v2alpha1/admin/apiKeys:batchVerify";
    const DERIVE: &str = "/v2alpha1/admin/apiKeys:derive";
    const SELF_REVOKE: &str = "/v2alpha1/apiKeys:selfRevoke";
    let json_ct = [("content-type", "application/json")];

    // Keys: issued, imported one by one and in a batch, derived.
    let issue = |s: &mut Secrets, body: Value| {
        let resp = s.post(admin, ISSUED, &body);
        assert_eq!(resp.status, 201, "{}", resp.text);
        let json = resp.json();
        let key = s.add_key(json["secret"].as_str().unwrap());
        (json["issued_api_key"]["key_id"].as_str().unwrap().to_owned(), key)
    };
    let (key_id, key) = issue(s, json!({"name": "main", "scopes": ["read", "write"], "ttl": "1h"}));
    let (revoked_id, revoked) = issue(s, json!({"name": "to revoke"}));
    let (rotated_id, rotated) = issue(s, json!({"name": "to rotate"}));
    let (_, self_revoked) = issue(s, json!({"name": "to self-revoke"}));
    let raw_key = s.add(format!("legacy-raw-key-{}", uuid::Uuid::new_v4().simple()));
    let resp = s.post(admin, IMPORTED, &json!({"raw_key": raw_key, "name": "legacy", "actor_id": "svc"}));
    assert_eq!(resp.status, 201, "{}", resp.text);
    let imported_id = resp.json()["key_id"].as_str().unwrap().to_owned();
    let batch: Vec<String> = (0..2).map(|i| s.add(format!("batch-raw-key-{i}-{}", uuid::Uuid::new_v4()))).collect();
    let resp = s.post(
        admin,
        &format!("{IMPORTED}:batchCreate"),
        &json!({"requests": batch.iter().map(|k| json!({"raw_key": k, "name": "b", "actor_id": "svc"})).collect::<Vec<_>>()}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text);
    let batch_ids: Vec<String> = resp.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["imported_api_key"]["key_id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned())
        .collect();
    let resp = s.post(admin, DERIVE, &json!({"credential": key, "scopes": ["read"], "ttl": "10m"}));
    assert_eq!(resp.status, 200, "{}", resp.text);
    let jwt = s.add_jwt(resp.json()["token"]["token"].as_str().unwrap());
    let resp = s.post(admin, DERIVE, &json!({"credential": key, "algorithm": "TOKEN_ALGORITHM_MACAROON"}));
    assert_eq!(resp.status, 200, "{}", resp.text);
    let macaroon = s.add(resp.json()["token"]["token"].as_str().unwrap());

    // Malformed credentials: forged, truncated, foreign, tampered.
    let last = key.chars().last().unwrap();
    let forged = s.add(format!("{}{}", &key[..key.len() - 1], if last == 'z' { 'y' } else { 'z' }));
    let truncated = s.add(&key[..key.len() - 3]);
    let wrong_prefix = s.add(key.replacen("ory_ak", "sk_live", 1));
    let wrong_version = s.add(key.replacen("_v1_", "_v2_", 1));
    let padded = s.add(format!("{key}Zz"));
    let at = jwt.len() - 10; // inside the signature, clear of base64's trailing bits
    let flipped = if &jwt[at..=at] == "A" { "B" } else { "A" };
    let tampered_jwt = s.add(format!("{}{flipped}{}", &jwt[..at], &jwt[at + 1..]));
    let truncated_macaroon = s.add(&macaroon[..macaroon.len() - 6]);
    let malformed = [&forged, &truncated, &wrong_prefix, &wrong_version, &padded, &tampered_jwt, &truncated_macaroon];

    // Verification, on the data plane and the admin; a separate data plane catches up first.
    let visible = |s: &mut Secrets, credential: &str| {
        s.post(data, VERIFY, &json!({"credential": credential})).json()["is_valid"] == true
    };
    eventually(std::time::Duration::from_secs(5), || visible(s, &batch[1]).then_some(()));
    for credential in [&key, &raw_key, &jwt, &macaroon] {
        for to in [data, admin] {
            let resp = s.post(to, VERIFY, &json!({"credential": credential}));
            assert_eq!(resp.json()["is_valid"], true, "{credential}: {}", resp.text);
        }
        let resp = s.call(
            data,
            "POST",
            VERIFY,
            &[("cache-control", "no-cache")],
            &json!({"credential": credential}).to_string(),
        );
        assert_eq!(resp.json()["is_valid"], true, "{}", resp.text);
    }
    for credential in malformed {
        let resp = s.post(data, VERIFY, &json!({"credential": credential}));
        assert_eq!(resp.json()["is_valid"], false, "{credential}: {}", resp.text);
        s.post(admin, VERIFY, &json!({"credential": credential, "expected_audiences": [credential]}));
        s.post(admin, DERIVE, &json!({"credential": credential}));
        s.post(data, SELF_REVOKE, &json!({"credential": credential, "reason": "REVOCATION_REASON_KEY_COMPROMISE"}));
        s.post(admin, IMPORTED, &json!({"raw_key": credential, "name": "x", "actor_id": "y"}));
    }
    let mut all: Vec<&String> = vec![&key, &raw_key, &jwt, &macaroon];
    all.extend(malformed);
    let resp = s.post(
        data,
        BATCH_VERIFY,
        &json!({"requests": all.iter().map(|c| json!({"credential": c})).collect::<Vec<_>>()}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text);
    s.post(admin, BATCH_VERIFY, &json!({"requests": all.iter().map(|c| json!({"credential": c})).collect::<Vec<_>>()}));

    // Bodies that are not what they should be, holding a key.
    for secret in [&key, &raw_key, &jwt, &forged] {
        let bodies = [
            format!(r#"{{"credential": "{secret}"#),
            format!(r#"{{"credential": "{secret}", }}"#),
            format!(r#"{{"credential": {secret}}}"#),
            format!(r#"{{"credential": ["{secret}"]}}"#),
            format!(r#"{{"credential": {{"value": "{secret}"}}}}"#),
            format!(r#"["{secret}"]"#),
            secret.to_string(),
            format!(r#"{{"requests": "{secret}"}}"#),
            format!(r#"{{"requests": [{{"credential": "{secret}"}}, "{secret}"]}}"#),
            format!(r#"{{"raw_key": ["{secret}"]}}"#),
            format!(r#"{{"credential": "{secret}", "ttl": "{secret}"}}"#),
            format!(r#"{{"credential": "{secret}", "algorithm": "{secret}"}}"#),
            format!(r#"{{"credential": "{secret}", "reason": "{secret}"}}"#),
            format!(r#"{{"credential": "{secret}", "scopes": "{secret}"}}"#),
        ];
        for body in &bodies {
            for (to, target) in [
                (data, VERIFY),
                (admin, VERIFY),
                (data, BATCH_VERIFY),
                (data, SELF_REVOKE),
                (admin, DERIVE),
                (admin, ISSUED),
                (admin, IMPORTED),
                (admin, &format!("{IMPORTED}:batchCreate")),
            ] {
                s.call(to, "POST", target, &json_ct, body);
            }
        }
        // A key in a field where none belongs: rejected, and not quoted back.
        for body in [
            json!({"ttl": secret}),
            json!({"visibility": secret}),
            json!({"request_id": secret}),
            json!({"ip_restriction": {"allowed_cidrs": [secret]}}),
            json!({"rate_limit_policy": {"quota": secret, "window": secret}}),
            json!({"metadata": secret}),
        ] {
            let resp = s.post(admin, ISSUED, &body);
            assert_eq!(resp.status, 400, "{body}: {}", resp.text);
        }
        s.post(data, VERIFY, &json!({"key": secret, "api_key": secret}));
        s.post(admin, DERIVE, &json!({"credential": key, "scopes": [secret]}));
        s.post(admin, DERIVE, &json!({"credential": key, "audiences": secret, "custom_claims": secret}));
        s.post(admin, &format!("{ISSUED}/{revoked_id}:revoke"), &json!({"reason": secret}));
        s.post(admin, &format!("{ISSUED}/{revoked_id}:revoke"), &json!({"reason": 1, "description": secret}));
        s.post(admin, &format!("{ISSUED}/{rotated_id}:rotate"), &json!({"grace_period": secret}));
        s.post(
            admin,
            &format!("{ISSUED}/{rotated_id}:rotate"),
            &json!({"ip_restriction": {"allowed_cidrs": [secret]}}),
        );
        s.call(admin, "PATCH", &format!("{ISSUED}/{key_id}"), &json_ct, &json!({"scopes": secret}).to_string());
        s.call(admin, "PATCH", &format!("{ISSUED}/{key_id}?update_mask={secret}"), &json_ct, "{}");
        s.call(
            admin,
            "PATCH",
            &format!("{ISSUED}/{key_id}?update_mask=ip_restriction"),
            &json_ct,
            &json!({"ip_restriction": {"allowed_cidrs": [secret]}}).to_string(),
        );

        // Keys in query strings and path segments.
        for target in [
            format!("{VERIFY}?credential={secret}"),
            format!("{ISSUED}?page_token={secret}"),
            format!("{ISSUED}?filter={secret}"),
            format!("{ISSUED}?filter=actor_id%3D{secret}"),
            format!("{ISSUED}?page_size={secret}"),
            format!("{IMPORTED}?page_token={secret}"),
            format!("/health/alive?api_key={secret}"),
            format!("{ISSUED}/{secret}"),
            format!("{ISSUED}/{secret}:revoke"),
            format!("{ISSUED}/{secret}:rotate"),
            format!("{ISSUED}/{key_id}:{secret}"),
            format!("{IMPORTED}/{secret}"),
            format!("{IMPORTED}/{secret}:revoke"),
            format!("/v2alpha1/admin/{secret}"),
            format!("/v2alpha1/{secret}"),
            format!("/{secret}"),
            format!("/{secret}/{secret}"),
            format!("/v2alpha1/admin/apiKeys:{secret}"),
        ] {
            for method in ["GET", "POST", "PATCH", "DELETE"] {
                for to in [admin, data] {
                    s.call(to, method, &target, &json_ct, "");
                }
            }
        }

        // Keys in headers, well-formed or not.
        for headers in [
            vec![("authorization", format!("Bearer {secret}"))],
            vec![("x-api-key", secret.to_string())],
            vec![("cookie", format!("session={secret}"))],
            vec![(secret.as_str(), "1".to_owned())],
            vec![("content-type", secret.to_string())],
            vec![("cache-control", secret.to_string())],
            vec![("x-forwarded-for", secret.to_string())],
        ] {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            for to in [admin, data] {
                s.call(to, "POST", VERIFY, &headers, "");
                s.call(to, "POST", VERIFY, &headers, &json!({"credential": forged}).to_string());
                s.call(to, "GET", ISSUED, &headers, "");
            }
        }
        for to in [admin, data] {
            for bytes in [
                format!("POST {VERIFY} HTTP/1.1\r\nhost: a\r\nauthorization {secret}\r\ncontent-length: 2\r\n\r\n{{}}"),
                format!("POST {VERIFY} HTTP/1.1\r\nhost: a\r\ncontent-length: {secret}\r\n\r\n{{}}"),
                format!("POST {VERIFY} HTTP/1.1\r\nhost: a\r\ntransfer-encoding: {secret}\r\n\r\n"),
                format!("POST {VERIFY} HTTP/1.1\r\nhost: {secret}\r\ncontent-length: 2\r\n\r\n{{}}"),
                format!("GET /{secret} HTTP/9.9\r\nhost: a\r\n\r\n"),
                format!("{secret} {VERIFY} HTTP/1.1\r\nhost: a\r\n\r\n"),
                format!("POST {VERIFY} HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n{secret}\r\n0\r\n\r\n"),
                format!("POST {VERIFY} HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n{secret}"),
            ] {
                s.raw(to, &bytes);
            }
        }
    }
    // A derived token where a key belongs.
    s.post(admin, DERIVE, &json!({"credential": jwt})).assert_error(400, "INVALID_TOKEN_TYPE");
    s.post(admin, DERIVE, &json!({"credential": macaroon}));
    s.post(data, SELF_REVOKE, &json!({"credential": jwt, "reason": 1}));
    s.post(admin, IMPORTED, &json!({"raw_key": jwt, "name": "x", "actor_id": "y"}));

    // The rest of the management routes, used as intended.
    assert_eq!(s.call(admin, "GET", &format!("{ISSUED}/{key_id}"), &[], "").status, 200);
    let page = s.call(admin, "GET", &format!("{ISSUED}?page_size=1"), &[], "").json();
    let token = page["next_page_token"].as_str().unwrap().to_owned();
    assert_eq!(s.call(admin, "GET", &format!("{ISSUED}?page_size=1&page_token={token}"), &[], "").status, 200);
    assert_eq!(s.call(admin, "GET", IMPORTED, &[], "").status, 200);
    assert_eq!(s.call(admin, "GET", &format!("{IMPORTED}/{imported_id}"), &[], "").status, 200);
    let resp =
        s.call(admin, "PATCH", &format!("{ISSUED}/{key_id}?update_mask=name"), &json_ct, r#"{"name": "renamed"}"#);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let resp = s.call(admin, "PATCH", &format!("{IMPORTED}/{imported_id}"), &json_ct, r#"{"name": "renamed"}"#);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let resp =
        s.post(admin, &format!("{ISSUED}/{revoked_id}:revoke"), &json!({"reason": "REVOCATION_REASON_KEY_COMPROMISE"}));
    assert_eq!(resp.status, 204, "{}", resp.text);
    let resp = s.post(admin, &format!("{ISSUED}/{rotated_id}:rotate"), &json!({"grace_period": "1m"}));
    assert_eq!(resp.status, 201, "{}", resp.text);
    let new_key = s.add_key(resp.json()["secret"].as_str().unwrap());
    let resp = s.post(admin, &format!("{IMPORTED}/{}:revoke", batch_ids[0]), &json!({"reason": 1}));
    assert_eq!(resp.status, 204, "{}", resp.text);
    assert_eq!(s.call(admin, "DELETE", &format!("{IMPORTED}/{}", batch_ids[1]), &[], "").status, 204);
    eventually(std::time::Duration::from_secs(5), || (!visible(s, &batch[0]) && visible(s, &new_key)).then_some(()));
    let resp = s.post(data, SELF_REVOKE, &json!({"credential": self_revoked, "reason": 1}));
    assert_eq!(resp.status, 200, "{}", resp.text);
    for (credential, valid) in
        [(&revoked, false), (&rotated, true), (&new_key, true), (&self_revoked, false), (&batch[0], false)]
    {
        let resp =
            s.call(data, "POST", VERIFY, &[("pragma", "no-cache")], &json!({"credential": credential}).to_string());
        assert_eq!(resp.json()["is_valid"], valid, "{}", resp.text);
    }
    for to in [admin, data] {
        for target in ["/v2alpha1/derivedKeys/jwks.json", "/health/alive", "/health/ready", "/version"] {
            assert_eq!(s.call(to, "GET", target, &[], "").status, 200, "{target}");
        }
        let jwks = s.call(to, "GET", "/v2alpha1/derivedKeys/jwks.json", &[], "").json();
        for jwk in jwks["jwks"]["keys"].as_array().unwrap() {
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(jwk.get(private).is_none(), "the JWKS answer holds {private}: {jwk}");
            }
        }
    }
}

/// The config of both runs: debug logging, a retired HMAC secret, a pagination secret and a JWT
/// signing key, all of them registered as secrets.
fn hygiene_config(dsn: &str, format: &str, s: &mut Secrets) -> String {
    let out = std::process::Command::new(binary()).args(["jwk", "--url-only"]).output().unwrap();
    assert!(out.status.success());
    let url = s.add(String::from_utf8(out.stdout).unwrap().trim());
    let jwks: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD.decode(url.strip_prefix("base64://").unwrap()).unwrap(),
    )
    .unwrap();
    let private = jwks["keys"][0]["d"].as_str().expect("the generated JWKS holds its private key");
    s.add(private);
    s.add(SECRET);
    s.add(OTHER_SECRET);
    s.add(PAGINATION_SECRET);
    let secrets_yaml = format!(
        "    current: \"{SECRET}\"\n    retired: [\"{OTHER_SECRET}\"]\n  pagination:\n    current: \"{PAGINATION_SECRET}\""
    );
    config(dsn, &secrets_yaml, "")
        .replace("  level: info\n  format: text\n", &format!("  level: debug\n  format: {format}\n"))
        .replace(
            "credentials:\n",
            &format!("credentials:\n  derived_tokens:\n    jwt:\n      signing_keys:\n        urls: [\"{url}\"]\n"),
        )
}

/// Asserts `log` holds no secret, and that it did log the run (so the scan is not vacuous).
fn scan(name: &str, log: &str, s: &Secrets) {
    s.assert_not_in(&format!("the log of {name}"), log);
    assert!(log.lines().filter(|l| l.contains("request")).count() > 100, "{name} logged too little:\n{log}");
    assert!(log.contains("{key_id}"), "{name} logged no key path:\n{log}");
}

#[test]
fn no_secret_reaches_a_log_or_an_error_body() {
    let started = std::time::Instant::now();
    let mut s = Secrets::default();
    let dir = TempDir::new();
    let yaml = hygiene_config("memory", "text", &mut s);
    let server = Server::start_with(&dir.path("all.yaml"), &yaml, &[]);
    exercise(server.addr, server.addr, &mut s);
    let log = server.log();
    assert_eq!(server.terminate().code(), Some(0));
    scan("talos serve", &log, &s);
    let single = s.exchanges;

    let dsn = dir.path("talos.redb");
    let yaml = hygiene_config(dsn.to_str().unwrap(), "json", &mut s);
    let admin = Server::start_with(&dir.path("admin.yaml"), &yaml, &["admin"]);
    let check = Server::start_with(&dir.path("check.yaml"), &yaml, &["check"]);
    exercise(admin.addr, check.addr, &mut s);
    let (admin_log, check_log) = (admin.log(), check.log());
    assert_eq!(admin.terminate().code(), Some(0));
    assert_eq!(check.terminate().code(), Some(0));
    scan("talos serve admin", &admin_log, &s);
    s.assert_not_in("the log of talos serve check", &check_log);
    eprintln!(
        "{} exchanges, {} secrets, {} log bytes scanned in {:?}",
        s.exchanges,
        s.known.len(),
        log.len() + admin_log.len() + check_log.len(),
        started.elapsed()
    );
    assert!(s.exchanges > 2 * single - 10);
}
