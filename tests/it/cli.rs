//! `talos keys`: every subcommand run as a subprocess of the real binary against a real server,
//! asserting what it prints and the exit codes scripts rely on (0 ok, 1 negative answer,
//! 2 usage, 3 API error, 4 unreachable).

use std::io::Write;
use std::process::{Command, Stdio};

use common::clock;
use serde_json::Value;

use crate::harness::{binary, Server};

/// What one `talos keys …` run left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Asserts exit code 0 and a silent stderr.
    fn ok(self) -> Run {
        assert_eq!((self.code, self.stderr.as_str()), (0, ""), "stdout: {}", self.stdout);
        self
    }

    fn fails(self, code: i32, stderr_has: &str) -> Run {
        assert_eq!(self.code, code, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        assert!(self.stderr.contains(stderr_has), "{:?} not in stderr: {}", stderr_has, self.stderr);
        self
    }
}

/// Variables of the caller's environment the client reads: cleared, so none leaks into a test.
const CLIENT_ENV: [&str; 8] = [
    "TALOS_API_KEY",
    "TALOS_ENDPOINT",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// Runs `talos keys --endpoint endpoint <args…>` with `stdin` and `env`.
fn keys_with(endpoint: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(binary());
    for name in CLIENT_ENV {
        command.env_remove(name);
    }
    let mut child = command
        .arg("keys")
        .args(["--endpoint", endpoint])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the talos binary starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("talos exits, not killed by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn keys(endpoint: &str, args: &[&str]) -> Run {
    keys_with(endpoint, args, "", &[])
}

/// The `field  value` line of a table.
fn field<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find_map(|line| line.strip_prefix(name).filter(|rest| rest.starts_with(' ')).map(str::trim))
        .unwrap_or_else(|| panic!("no {name} in:\n{table}"))
}

#[test]
fn every_keys_subcommand_against_a_real_server() {
    let server = Server::start();
    let ep = format!("http://{}", server.addr);
    let ep = ep.as_str();

    // issue: the request fields from the flags, the secret printed once.
    let issued = keys(
        ep,
        &[
            "issue",
            "--name=ci",
            "--actor-id=svc-builder",
            "--scope=read",
            "--scope=write",
            "--metadata={\"env\": \"prod\"}",
            "--ttl=24h",
            "--rate-limit-quota=100",
            "--rate-limit-window=1m",
            "--format=json",
        ],
    )
    .ok()
    .json();
    let key = &issued["issued_api_key"];
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    let secret = issued["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("ory_ak_v1_"), "{secret}");
    assert_eq!(key["name"], "ci");
    assert_eq!(key["actor_id"], "svc-builder");
    assert_eq!(key["scopes"], serde_json::json!(["read", "write"]));
    assert_eq!(key["metadata"], serde_json::json!({"env": "prod"}));
    assert_eq!(key["rate_limit_policy"], serde_json::json!({"quota": "100", "window": "60s"}));
    // The table format shows the same key, the secret on its own line.
    // --expire-time is sent as the ttl from now, so the key expires then (to the second, give or
    // take the call's own duration).
    let expire = clock::now() + 2 * 86_400 * clock::NANOS_PER_SEC;
    let expire_flag = format!("--expire-time={}", clock::format_rfc3339(expire));
    let table_issue = keys(ep, &["issue", "--actor-id=svc-builder", &expire_flag]).ok();
    assert!(field(&table_issue.stdout, "secret").starts_with("ory_ak_v1_"), "{}", table_issue.stdout);
    assert_eq!(field(&table_issue.stdout, "status"), "KEY_STATUS_ACTIVE");
    let expired_at = clock::parse_rfc3339(field(&table_issue.stdout, "expire_time")).unwrap();
    assert!((expired_at - expire).abs() < 5 * clock::NANOS_PER_SEC, "{}", table_issue.stdout);

    // get (table).
    let got = keys(ep, &["get", &key_id]).ok().stdout;
    assert_eq!(field(&got, "key_id"), key_id);
    assert_eq!(field(&got, "name"), "ci");
    assert_eq!(field(&got, "scopes"), "read,write");
    assert_eq!(field(&got, "metadata"), r#"{"env":"prod"}"#);

    // list (json), with the actor filter and paging.
    let listed = keys(ep, &["list", "--actor-id=svc-builder", "--format=json"]).ok().json();
    let ids: Vec<&str> =
        listed["issued_api_keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(ids.contains(&key_id.as_str()));
    let page = keys(ep, &["list", "--page-size=1", "--format=json"]).ok().json();
    assert_eq!(page["issued_api_keys"].as_array().unwrap().len(), 1);
    let token = page["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty());
    let next = keys(ep, &["list", "--page-size=1", "--page-token", token, "--format=json"]).ok().json();
    assert_ne!(next["issued_api_keys"][0]["key_id"], page["issued_api_keys"][0]["key_id"]);
    // The table lists one key per line under a header.
    let table_list = keys(ep, &["list"]).ok().stdout;
    assert!(table_list.starts_with("KEY_ID "), "{table_list}");
    assert!(table_list.lines().any(|l| l.starts_with(&key_id) && l.contains(" ACTIVE ")), "{table_list}");

    // update: only the fields given, with --clear for one to empty (yaml output).
    let updated = keys(ep, &["update", &key_id, "--name=renamed", "--clear=metadata", "--format=yaml"]).ok().stdout;
    assert!(updated.lines().any(|l| l == "name: renamed"), "{updated}");
    assert!(updated.lines().any(|l| l == "metadata: {}"), "{updated}");
    assert!(updated.lines().any(|l| l == "- write"), "scopes kept: {updated}");

    // verify from stdin: valid, exit 0.
    let verified = keys_with(ep, &["verify", "-"], &format!("{secret}\n"), &[]).ok().stdout;
    assert_eq!(field(&verified, "valid"), "true");
    assert_eq!(field(&verified, "key_id"), key_id);
    assert_eq!(field(&verified, "actor_id"), "svc-builder");

    // rotate: a new secret; the old key no longer verifies (exit 1, the error code printed).
    let rotated = keys(ep, &["rotate", &key_id, "--format=json"]).ok().json();
    let new_id = rotated["issued_api_key"]["key_id"].as_str().unwrap().to_owned();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated["old_issued_api_key"]["status"], "KEY_STATUS_REVOKED");
    assert_eq!(rotated["issued_api_key"]["name"], "renamed");
    let old = keys_with(ep, &["verify", "--key-stdin"], &secret, &[]);
    assert_eq!((old.code, old.stderr.as_str()), (1, ""));
    assert!(old.stdout.starts_with("invalid  VERIFICATION_ERROR_REVOKED"), "{}", old.stdout);
    keys_with(ep, &["verify"], "", &[("TALOS_API_KEY", &new_secret)]).ok();

    // revoke; verify again: exit 1 in json too, with the server's answer.
    let revoked = keys(ep, &["revoke", &new_id, "--reason=key-compromise"]).ok().stdout;
    assert_eq!(revoked, format!("revoked {new_id}\n"));
    let after = keys_with(ep, &["verify", "--format=json"], "", &[("TALOS_API_KEY", &new_secret)]);
    assert_eq!(after.code, 1, "{}", after.stderr);
    assert_eq!(after.json()["error_code"], "VERIFICATION_ERROR_REVOKED");
    assert_eq!(after.json()["is_valid"], false);
    // Revoking twice is the server's 409, with its message.
    keys(ep, &["revoke", &new_id, "--reason=superseded"]).fails(3, "key is already revoked");

    // import (raw key from stdin) and verify it.
    let raw_key = "legacy-system-key-0123456789";
    let imported = keys_with(
        ep,
        &["import", "--raw-key=-", "--name=legacy", "--actor-id=bob", "--scope=read", "--format=json"],
        raw_key,
        &[],
    )
    .ok()
    .json();
    let imported_id = imported["key_id"].as_str().unwrap().to_owned();
    assert_eq!(imported_id.len(), 64);
    assert_eq!(imported["actor_id"], "bob");
    let check = keys_with(ep, &["verify", "-"], raw_key, &[]).ok().stdout;
    assert_eq!(field(&check, "key_id"), imported_id);
    assert_eq!(field(&keys(ep, &["get", &imported_id]).ok().stdout, "name"), "legacy");
    let imported_list = keys(ep, &["list", "--imported", "--format=json"]).ok().json();
    assert_eq!(imported_list["imported_api_keys"][0]["key_id"], imported_id.as_str());

    // batch-import: one new, one duplicate → exit 1 with both rows; delete the new one.
    let batch = r#"[{"raw_key": "batch-key-0123456789", "name": "b", "actor_id": "x"},
                    {"raw_key": "legacy-system-key-0123456789", "name": "c", "actor_id": "x"}]"#;
    let partial = keys_with(ep, &["batch-import", "-"], batch, &[]);
    assert_eq!((partial.code, partial.stderr.as_str()), (1, ""), "{}", partial.stdout);
    assert!(partial.stdout.contains("BATCH_CREATE_IMPORTED_API_KEYS_ERROR_ALREADY_EXISTS"), "{}", partial.stdout);
    assert!(partial.stdout.ends_with("imported 1, failed 1\n"), "{}", partial.stdout);
    let batch_id = partial.stdout.lines().find_map(|l| l.strip_prefix("0 ")).unwrap().trim().to_owned();
    assert_eq!(keys(ep, &["delete", &batch_id]).ok().stdout, format!("deleted {batch_id}\n"));
    keys(ep, &["get", &batch_id]).fails(3, "imported key not found");

    // derive-token (macaroon, fewer scopes), and the token verifies.
    let parent = keys(ep, &["issue", "--scope=read", "--scope=write", "--format=json"]).ok().json();
    let parent_secret = parent["secret"].as_str().unwrap().to_owned();
    let derived = keys_with(
        ep,
        &["derive-token", "-", "--algorithm=macaroon", "--scope=read", "--ttl=15m", "--format=json"],
        &parent_secret,
        &[],
    )
    .ok()
    .json();
    let token = derived["token"]["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mc_v1_"), "{token}");
    assert_eq!(derived["token"]["scopes"], serde_json::json!(["read"]));
    let token_check = keys_with(ep, &["verify", "-"], &token, &[]).ok().stdout;
    assert_eq!(field(&token_check, "scopes"), "read");
    // A scope the parent does not have is the server's 403.
    keys_with(ep, &["derive-token", "-", "--algorithm=macaroon", "--scope=admin"], &parent_secret, &[])
        .fails(3, "not available in parent key");

    // self-revoke by possession; then the key is revoked.
    assert_eq!(
        keys_with(ep, &["self-revoke", "-", "--reason=key-compromise"], &parent_secret, &[]).ok().stdout,
        "revoked\n"
    );
    let gone = keys_with(ep, &["verify", "-"], &parent_secret, &[]);
    assert_eq!(gone.code, 1);
    assert!(gone.stdout.contains("VERIFICATION_ERROR_REVOKED"), "{}", gone.stdout);

    // The endpoint from the environment.
    let mut command = Command::new(binary());
    for name in CLIENT_ENV {
        command.env_remove(name);
    }
    let via_env = command.args(["keys", "get", &key_id, "--format=json"]).env("TALOS_ENDPOINT", ep).output().unwrap();
    assert!(via_env.status.success(), "{}", String::from_utf8_lossy(&via_env.stderr));

    // Nothing the client sent was logged by the server either.
    let log = server.log();
    for secret in [&secret, &new_secret, &parent_secret, &token, &raw_key.to_owned()] {
        assert!(!log.contains(secret.as_str()), "a key reached the server log");
    }
}

#[test]
fn failures_have_distinct_exit_codes() {
    let server = Server::start();
    let ep = format!("http://{}", server.addr);
    let ep = ep.as_str();

    // 3: an API error, its message and reason on stderr, nothing on stdout.
    let missing = keys(ep, &["get", "8d1c1d6e-2d7a-4a4e-9d53-3a3e1f0b9c11"]).fails(3, "API key not found");
    assert!(missing.stderr.contains("404") && missing.stderr.contains("API_KEY_NOT_FOUND"), "{}", missing.stderr);
    assert_eq!(missing.stdout, "");
    keys(ep, &["list", "--status=revoked"]).fails(3, "status filter must be combined with actor_id");

    // 4: nothing listens there (a port just freed).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable =
        keys(&format!("http://{free}"), &["get", "8d1c1d6e-2d7a-4a4e-9d53-3a3e1f0b9c11"]).fails(4, "cannot reach");
    assert_eq!(unreachable.stdout, "");
    keys_with(&format!("http://{free}"), &["verify", "-"], "ory_ak_v1_x_y", &[]).fails(4, "cannot reach");

    // 2: usage, before anything is sent.
    keys(ep, &["issue", "--no-such-flag"]).fails(2, "unexpected argument '--no-such-flag'");
    keys(ep, &["revoke", "8d1c1d6e-2d7a-4a4e-9d53-3a3e1f0b9c11"]).fails(2, "--reason");
    keys(ep, &["revoke", "8d1c1d6e-2d7a-4a4e-9d53-3a3e1f0b9c11", "--reason=bored"]).fails(2, "key-compromise");
    keys(ep, &["issue", "--ttl=5"]).fails(2, "--ttl");
    keys(ep, &["issue", "--metadata=[1]"]).fails(2, "JSON object");
    keys(ep, &["get", "../admin"]).fails(2, "key id");
    keys(ep, &["verify"]).fails(2, "no key given");
    keys_with(ep, &["verify", "-"], "\n", &[]).fails(2, "no key on stdin");
    keys(ep, &["update", "8d1c1d6e-2d7a-4a4e-9d53-3a3e1f0b9c11"]).fails(2, "nothing to update");
    keys(ep, &["list", "--format=xml"]).fails(2, "--format");
    keys("ftp://localhost", &["list"]).fails(2, "invalid --endpoint");

    // A usage error never reached the server: no key was created.
    let listed = keys(ep, &["list", "--format=json"]).ok().json();
    assert_eq!(listed["issued_api_keys"], serde_json::json!([]));
    // The exit codes are documented in the help.
    let help = keys(ep, &["--help"]).ok().stdout;
    for line in ["0  success", "1  a negative answer", "2  usage", "3  the server answered", "4  the server cannot"] {
        assert!(help.contains(line), "{line:?} not in help:\n{help}");
    }
}
