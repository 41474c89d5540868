//! Derived tokens end to end: derive through the admin, verify offline on the data plane, and the
//! ways a token or a derivation must fail.

use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::*;

fn jwk_url(rsa: bool) -> String {
    let mut cmd = Command::new(binary());
    cmd.args(["jwk", "--url-only", "--kid"]).arg(if rsa { "rsa-1" } else { "ed-1" });
    if rsa {
        cmd.arg("--rsa");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn server_with_keys(urls: &[String]) -> (TempDir, Server) {
    let dir = TempDir::new();
    let list = urls.iter().map(|u| format!("          - \"{u}\"\n")).collect::<String>();
    let yaml = config("memory", &secrets(SECRET), "").replace(
        "credentials:\n",
        &format!("credentials:\n  derived_tokens:\n    jwt:\n      signing_keys:\n        urls:\n{list}"),
    );
    let server = Server::start_with(&dir.path("talos.yaml"), &yaml, &[]);
    (dir, server)
}

fn derive(server: &Server, body: Value) -> Resp {
    server.post("/v2alpha1/admin/apiKeys:derive", &body)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn jwt_and_macaroon_derive_and_verify() {
    let (_dir, server) = server_with_keys(&[jwk_url(false)]);
    let (parent_id, parent) = server
        .issue(&json!({"actor_id": "agent-7", "scopes": ["read", "write"], "metadata": {"team": "core"}, "ttl": "1h"}));

    let resp = derive(
        &server,
        json!({"credential": parent, "scopes": ["read"], "ttl": "600s", "custom_claims": {"job": "ci-42", "exp": 1, "sub": "evil"}}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text);
    let token = resp.json()["token"].clone();
    let jwt = token["token"].as_str().unwrap().to_owned();
    assert!(jwt.starts_with("eyJ"));
    assert_eq!(token["scopes"], json!(["read"]));
    assert_eq!(token["claims"], json!({"team": "core", "job": "ci-42"}), "reserved claims are stripped");

    let v = server.post("/v2alpha1/admin/apiKeys:verify", &json!({"credential": jwt}));
    let body = v.json();
    assert_eq!(body["is_valid"], true, "{body}");
    assert_eq!(body["key_id"], parent_id);
    assert_eq!(body["actor_id"], "agent-7");
    assert_eq!(body["scopes"], json!(["read"]));
    assert_eq!(body["metadata"], json!({"team": "core", "job": "ci-42"}));
    assert_eq!(body["issuer"], "http://talos.test");

    let resp = derive(&server, json!({"credential": parent, "algorithm": "TOKEN_ALGORITHM_MACAROON"}));
    assert_eq!(resp.status, 200, "{}", resp.text);
    let macaroon = resp.json()["token"]["token"].as_str().unwrap().to_owned();
    assert!(macaroon.starts_with("mc_v1_"));
    let body = server.verify(&macaroon);
    assert_eq!(body["is_valid"], true, "{body}");
    assert_eq!(body["scopes"], json!(["read", "write"]));

    // Batch verify mixes keys and tokens.
    let batch = server
        .post(
            "/v2alpha1/admin/apiKeys:batchVerify",
            &json!({"requests": [{"credential": jwt}, {"credential": macaroon}, {"credential": parent}]}),
        )
        .json();
    for r in batch["results"].as_array().unwrap() {
        assert_eq!(r["is_valid"], true, "{r}");
    }

    // JWKS: public keys only, wrapped.
    let jwks = server.get("/v2alpha1/derivedKeys/jwks.json").json();
    let keys = jwks["jwks"]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], "ed-1");
    assert_eq!(keys[0]["kty"], "OKP");
    assert!(keys[0].get("d").is_none());

    // Derived tokens outlive a parent's revocation (they are verified offline, by design).
    let resp = server.post(&format!("/v2alpha1/admin/issuedApiKeys/{parent_id}:revoke"), &json!({"reason": 1}));
    assert_eq!(resp.status, 204);
    assert_eq!(server.verify(&jwt)["is_valid"], true);
    derive(&server, json!({"credential": parent})).assert_error(403, "FORBIDDEN");
}

#[test]
fn forged_and_tampered_tokens_fail() {
    let (_dir, server) = server_with_keys(&[jwk_url(false)]);
    let (_, parent) = server.issue(&json!({"scopes": ["read"]}));
    let jwt = derive(&server, json!({"credential": parent})).json()["token"]["token"].as_str().unwrap().to_owned();
    let (header, rest) = jwt.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let sig_invalid = |token: &str| {
        let v = server.verify(token);
        assert_eq!(v["error_code"], "VERIFICATION_ERROR_SIGNATURE_INVALID", "{token}: {v}");
    };
    // More scopes in a re-signed-by-nobody payload.
    let mut escalated = claims.clone();
    escalated["scp"] = json!(["admin"]);
    sig_invalid(&format!("{header}.{}.{signature}", b64(&escalated.to_string())));
    // alg: none, HS256 and an unknown kid.
    sig_invalid(&format!("{}.{payload}.AA", b64(r#"{"alg":"none","kid":"ed-1"}"#)));
    sig_invalid(&format!("{}.{payload}.{signature}", b64(r#"{"alg":"HS256","kid":"ed-1","typ":"JWT"}"#)));
    sig_invalid(&format!("{}.{payload}.{signature}", b64(r#"{"alg":"EdDSA","kid":"other","typ":"JWT"}"#)));
    // Wrongly typed claim.
    let mut typed = claims.clone();
    typed["exp"] = json!("2099-01-01");
    sig_invalid(&format!("{header}.{}.{signature}", b64(&typed.to_string())));
    // A macaroon with a flipped byte.
    let mac = derive(&server, json!({"credential": parent, "algorithm": 2})).json()["token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bytes = mac.into_bytes();
    let i = bytes.len() - 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    sig_invalid(&String::from_utf8(bytes).unwrap());
}

#[test]
fn derivation_rules() {
    let (_dir, server) = server_with_keys(&[jwk_url(true)]);
    let (_, parent) = server.issue(&json!({"scopes": ["read"], "ttl": "1h"}));
    derive(&server, json!({"credential": parent, "scopes": ["write"]})).assert_error(403, "FORBIDDEN");
    derive(&server, json!({"credential": parent, "ttl": "2h"})).assert_error(400, "BAD_REQUEST");
    derive(&server, json!({"credential": parent, "ttl": "9000h"})).assert_error(400, "BAD_REQUEST");
    derive(&server, json!({"credential": "ory_ak_v1_nope"})).assert_error(401, "UNAUTHORIZED");
    derive(&server, json!({"credential": ""})).assert_error(400, "CREDENTIAL_REQUIRED");
    let rs = derive(&server, json!({"credential": parent, "ttl": "60s", "audiences": ["api.example"]}));
    assert_eq!(rs.status, 200, "{}", rs.text);
    let jwt = rs.json()["token"]["token"].as_str().unwrap().to_owned();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    derive(&server, json!({"credential": jwt})).assert_error(400, "INVALID_TOKEN_TYPE");
    // Audiences: a restricted token needs a matching expectation.
    let with = |aud: Value| {
        server.post("/v2alpha1/admin/apiKeys:verify", &json!({"credential": jwt, "expected_audiences": aud})).json()
    };
    assert_eq!(with(json!(["api.example"]))["is_valid"], true);
    assert_eq!(with(json!(["api.example"]))["audiences"], json!(["api.example"]));
    assert_eq!(with(json!(["other"]))["error_code"], "VERIFICATION_ERROR_AUDIENCE_MISMATCH");
    assert_eq!(with(json!([]))["error_code"], "VERIFICATION_ERROR_AUDIENCE_MISMATCH");
}

#[test]
fn without_signing_keys_jwt_derivation_fails_cleanly() {
    let server = Server::start();
    let (_, parent) = server.issue(&json!({}));
    derive(&server, json!({"credential": parent})).assert_error(500, "INTERNAL_SERVER_ERROR");
    server.get("/v2alpha1/derivedKeys/jwks.json").assert_error(500, "INTERNAL_SERVER_ERROR");
    // Macaroons need only the HMAC secret.
    let resp = derive(&server, json!({"credential": parent, "algorithm": "TOKEN_ALGORITHM_MACAROON"}));
    assert_eq!(resp.status, 200, "{}", resp.text);
}
