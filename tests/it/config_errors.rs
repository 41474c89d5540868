//! Configuration mistakes through the real binary, one table row each: the process exits
//! promptly and non-zero (or, for a warning, starts and says so), stderr names the key — or the
//! file, or the address — and never quotes a secret. The per-key rules themselves are unit-tested
//! in `common/src/config.rs`; this table proves the binary reports them, and covers the mistakes
//! only the running process can find: a port already in use, a store path it cannot open.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// How long a refused start may take (debug build, loaded machine).
const PROMPTLY: Duration = Duration::from_secs(10);

/// One mistake and what the binary must say about it.
struct Case {
    name: &'static str,
    /// The config file's contents; `None` runs without writing it (a missing file).
    yaml: Option<Vec<u8>>,
    env: Vec<(&'static str, String)>,
    args: &'static [&'static str],
    /// The exit code: 2 for an invalid config, 1 for a failed start, 0 for a warning only.
    code: i32,
    /// Every string stderr must contain (`{config}` stands for the config file's path).
    says: Vec<String>,
    /// Strings stderr must not contain: the secrets of the row.
    hides: Vec<&'static str>,
}

fn case(name: &'static str, yaml: impl Into<Vec<u8>>, code: i32, says: &[&str]) -> Case {
    Case {
        name,
        yaml: Some(yaml.into()),
        env: Vec::new(),
        args: &["serve"],
        code,
        says: says.iter().map(|s| (*s).to_owned()).collect(),
        hides: Vec::new(),
    }
}

impl Case {
    fn env(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.env.push((name, value.into()));
        self
    }

    fn args(mut self, args: &'static [&'static str]) -> Case {
        self.args = args;
        self
    }

    fn hides(mut self, secret: &'static str) -> Case {
        self.hides.push(secret);
        self
    }
}

/// A valid config on `dsn` with this `secrets.hmac` block, port 0.
fn with_secrets(secrets_yaml: &str) -> String {
    config("memory", secrets_yaml, "")
}

fn with_dsn(dsn: &Path) -> String {
    config(&dsn.display().to_string(), &secrets(SECRET), "")
}

fn on_port(port: u16) -> String {
    config("memory", &secrets(SECRET), "").replacen("    port: 0\n", &format!("    port: {port}\n"), 1)
}

fn metrics_on_port(port: u16) -> String {
    config("memory", &secrets(SECRET), "").replace(
        "  metrics:\n    host: 127.0.0.1\n    port: 0\n",
        &format!("  metrics:\n    host: 127.0.0.1\n    port: {port}\n"),
    )
}

/// Runs the row and checks it; returns how long the binary ran.
fn check(dir: &TempDir, case: &Case) -> Duration {
    let config_path = dir.path(&format!("{}.yaml", case.name.replace(' ', "-")));
    if let Some(yaml) = &case.yaml {
        std::fs::write(&config_path, yaml).unwrap();
    }
    let started = Instant::now();
    let mut child = Command::new(binary())
        .args(case.args)
        .arg("--config")
        .arg(&config_path)
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PROMPTLY {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{}: still running after {PROMPTLY:?}; stderr:\n{}",
                case.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::park_timeout(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status.code(), Some(case.code), "{}: exit status; stderr:\n{stderr}", case.name);
    for said in &case.says {
        let said = said.replace("{config}", &config_path.display().to_string());
        assert!(stderr.contains(&said), "{}: stderr does not say {said:?}:\n{stderr}", case.name);
    }
    for secret in &case.hides {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{}: a secret leaked:\n{stderr}{stdout}",
            case.name
        );
    }
    elapsed
}

#[test]
fn config_mistakes_stop_the_binary_with_the_key_named() {
    let dir = TempDir::new();
    let file = dir.path("regular-file");
    std::fs::write(&file, "not a directory").unwrap();
    let not_redb = dir.path("not-a-store.redb");
    std::fs::write(&not_redb, "not a redb file, just text").unwrap();
    let unreadable = dir.path("unreadable.redb");
    std::fs::write(&unreadable, "").unwrap();
    std::fs::set_permissions(&unreadable, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    // As root, permission bits do not apply: the row is kept only where they do.
    let permissions_apply = std::fs::File::open(&unreadable).is_err();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let held_at = format!("127.0.0.1:{held_port}");
    let running = Server::start();
    let running_port = running.addr.port();
    let running_at = format!("127.0.0.1:{running_port}");
    let under_file = file.join("x.redb");
    let under_file_named = under_file.display().to_string();

    #[rustfmt::skip] // one row per line
    let mut cases = vec![
        // The file itself.
        Case { yaml: None, ..case("missing file", "", 2, &["cannot read config file {config}", "No such file"]) },
        case("not YAML", "serve: [unclosed\nsecrets:\n  hmac:\n    current: \"hidden-secret-0123456789abcdef-0123\n", 2, &["{config}: invalid YAML"]).hides("hidden-secret"),
        case("not UTF-8", b"serve:\n  http: \xff\xfe\x00\n".to_vec(), 2, &["cannot read config file {config}", "UTF-8"]),
        case("not a mapping", "- serve\n- db\n", 2, &["{config}: the configuration must be a mapping, found a list"]),
        // Secrets.
        case("short secret", with_secrets("    current: \"short-hidden-secret\""), 2, &["secrets.hmac.current: must be at least 32 characters long, this one has 19"]).hides("short-hidden-secret"),
        case("empty secret", with_secrets("    current: \"\""), 2, &["secrets.hmac.current: must not be empty"]),
        case("no secret", with_secrets("    retired: []"), 2, &["secrets.hmac.current: required"]),
        case("short retired secret", with_secrets(&format!("{}\n    retired: [\"old-hidden\"]", secrets(SECRET))), 2, &["secrets.hmac.retired[0]: must be at least 32 characters long"]).hides("old-hidden"),
        case("short secret from the environment", with_secrets(&secrets(SECRET)), 2, &["secrets.hmac.current: must be at least 32 characters long"]).env("TALOS_SECRETS_HMAC_CURRENT", "env-hidden-secret").hides("env-hidden-secret"),
        case("secret read as an octal number", with_secrets("    current: 0123456701234567012345670123456701234567"), 2, &["secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a number: put it in quotes"]).hides("0123456701234567"),
        case("secret read as a boolean", with_secrets("    current: yes"), 2, &["secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a boolean: put it in quotes"]),
        case("secret read as a float", with_secrets("    current: 1e3"), 2, &["secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a number: put it in quotes"]),
        // Durations.
        case("duration without a unit", with_secrets(&secrets(SECRET)).replace("default_ttl: 720h", "default_ttl: 720"), 2, &["credentials.api_keys.default_ttl: missing unit in duration \"720\""]),
        case("duration with a wrong unit", with_secrets(&secrets(SECRET)).replace("default_ttl: 720h", "default_ttl: 30days"), 2, &["credentials.api_keys.default_ttl: unknown unit \"days\""]),
        case("duration without a unit from the environment", with_secrets(&secrets(SECRET)), 2, &["snapshot.refresh_interval: missing unit in duration \"100\" (set by TALOS_SNAPSHOT_REFRESH_INTERVAL)"]).env("TALOS_SNAPSHOT_REFRESH_INTERVAL", "100"),
        // The environment: a TALOS_ variable that names no key is a warning, and the binary runs.
        case("unknown environment override", with_dsn(&dir.path("warn.redb")), 0, &["environment variable TALOS_SERVE_HTTP_PORTT names no configuration key and is ignored"]).env("TALOS_SERVE_HTTP_PORTT", "4420").args(&["migrate", "status"]),
        // The port, held by a plain listener or by another talos.
        case("port in use", on_port(held_port), 1, &["serve.http.port", &held_at, "in use"]),
        case("port in use (admin plane)", on_port(held_port), 1, &["serve.http.port", &held_at, "in use"]).args(&["serve", "admin"]),
        case("port in use (check plane)", on_port(held_port), 1, &["serve.http.port", &held_at, "in use"]).args(&["serve", "check"]),
        case("port in use by another talos", on_port(running_port), 1, &["serve.http.port", &running_at, "in use"]),
        case("metrics port in use", metrics_on_port(held_port), 1, &["serve.metrics.port", &held_at, "in use"]),
        case("metrics port in use (check plane)", metrics_on_port(held_port), 1, &["serve.metrics.port", &held_at, "in use"]).args(&["serve", "check"]),
        // The store.
        case("store in a missing directory", with_dsn(Path::new("/nonexistent-dir/x.redb")), 1, &["db.dsn", "/nonexistent-dir/x.redb", "No such file or directory"]),
        case("store under a regular file", with_dsn(&under_file), 1, &["db.dsn", &under_file_named, "Not a directory"]),
        case("store is a directory", with_dsn(&dir.0), 1, &["db.dsn", "Is a directory"]),
        case("store is not a redb file", with_dsn(&not_redb), 1, &["db.dsn", "Not a redb database"]),
        case("PostgreSQL unreachable", config("postgres://postgres@127.0.0.1:1/test?connect_timeout=2", &secrets(SECRET), ""), 1, &["cannot connect to PostgreSQL (db.dsn)"]),
    ];
    if permissions_apply {
        cases.push(case("store without read permission", with_dsn(&unreadable), 1, &["db.dsn", "Permission denied"]));
    }
    let mut slowest = (Duration::ZERO, "");
    for case in &cases {
        let took = check(&dir, case);
        if took > slowest.0 {
            slowest = (took, case.name);
        }
    }
    eprintln!("{} cases; slowest: {:?} ({})", cases.len(), slowest.0, slowest.1);
    // The running talos kept its port and still answers.
    assert_eq!(running.get("/health/alive").status, 200);
    drop(held);
}
