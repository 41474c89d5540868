//! The split deployment over PostgreSQL (127.0.0.1:5432, user postgres, database `test`), each
//! test in a schema of its own. These tests fail, never skip, when PostgreSQL is unreachable.

use std::process::Command;

use crate::harness::*;
use crate::planes::split_planes;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh schema, dropped when the guard goes.
pub struct Schema {
    name: String,
}

impl Schema {
    pub fn new() -> Schema {
        let name = format!("talos_it_{}", uuid::Uuid::new_v4().simple());
        let mut client = postgres::Client::connect(SERVER, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL must be running at {SERVER}: {e}"));
        client.batch_execute(&format!("CREATE SCHEMA {name}")).unwrap();
        Schema { name }
    }

    pub fn dsn(&self) -> String {
        format!("{SERVER}?options=-csearch_path%3D{}", self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(SERVER, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
        }
    }
}

#[test]
fn split_planes_share_one_postgres_database() {
    let schema = Schema::new();
    let dir = TempDir::new();
    split_planes(&dir, &config(&schema.dsn(), &secrets(SECRET), ""));
}

#[test]
fn migrations_and_an_unmigrated_check_plane() {
    let schema = Schema::new();
    let dir = TempDir::new();
    let path = dir.path("talos.yaml");
    std::fs::write(&path, config(&schema.dsn(), &secrets(SECRET), "")).unwrap();
    let talos = |args: &[&str]| Command::new(binary()).args(args).arg("--config").arg(&path).output().unwrap();

    // A check plane never migrates: it refuses to start, with a clear error, and exits.
    let out = talos(&["serve", "check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("talos migrate up"), "{err}");

    let status = String::from_utf8(talos(&["migrate", "status"]).stdout).unwrap();
    assert!(status.contains("pending"), "{status}");
    let up = talos(&["migrate", "up"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    assert!(String::from_utf8_lossy(&up.stdout).contains("applied migration 1"));
    let again = String::from_utf8(talos(&["migrate", "up"]).stdout).unwrap();
    assert!(again.contains("up to date"), "{again}");
    let status = String::from_utf8(talos(&["migrate", "status"]).stdout).unwrap();
    assert!(status.contains("applied") && !status.contains("pending"), "{status}");

    // Now the check plane starts.
    let check = Server::start_with(&path, &config(&schema.dsn(), &secrets(SECRET), ""), &["check"]);
    assert_eq!(check.get("/health/ready").json()["status"], "ok");
}

/// A TCP forwarder to PostgreSQL that the test can cut: it closes every open connection and
/// refuses new ones until restored — the database "disappears" without touching the real one.
struct Proxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start() -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused, in effect
                }
                let Ok(upstream) = std::net::TcpStream::connect("127.0.0.1:5432") else { continue };
                let mut conns = open2.lock().unwrap();
                conns.push(client.try_clone().unwrap());
                conns.push(upstream.try_clone().unwrap());
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), upstream.try_clone().unwrap()), (upstream, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for conn in self.open.lock().unwrap().drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn the_database_disappears_and_returns() {
    use serde_json::json;
    use std::time::Duration;
    let schema = Schema::new();
    let proxy = Proxy::start();
    let dsn = format!(
        "postgres://postgres@127.0.0.1:{}/test?options=-csearch_path%3D{}&connect_timeout=1",
        proxy.port, schema.name
    );
    let dir = TempDir::new();
    let yaml = config(&dsn, &secrets(SECRET), "")
        .replace("  refresh_interval: 50ms\n", "  refresh_interval: 50ms\n  max_staleness: 1s\n");
    let admin = Server::start_with(&dir.path("admin.yaml"), &yaml, &["admin"]);
    let check = Server::start_with(&dir.path("check.yaml"), &yaml, &["check"]);
    let (_, before) = admin.issue(&json!({"actor_id": "outage"}));
    eventually(Duration::from_secs(5), || (check.verify(&before)["is_valid"] == true).then_some(()));

    proxy.cut();
    // A write while the store is gone: 503 in the envelope, and nothing happens.
    let failed = admin.post("/v2alpha1/admin/issuedApiKeys", &json!({"actor_id": "outage", "name": "lost"}));
    failed.assert_error(503, "SERVICE_UNAVAILABLE");
    // A self-revocation on the check plane cannot be written either: 503 too, the key stays valid.
    let failed = check.post("/v2alpha1/apiKeys:selfRevoke", &json!({"credential": before, "reason": 1}));
    failed.assert_error(503, "SERVICE_UNAVAILABLE");
    // The check plane keeps answering from its snapshot, and says it is stale.
    assert_eq!(check.verify(&before)["is_valid"], true);
    eventually(Duration::from_secs(10), || (check.get("/health/ready").status == 503).then_some(()));
    assert_eq!(check.verify(&before)["is_valid"], true);

    proxy.restore();
    let (_, after) = eventually(Duration::from_secs(20), || {
        let resp = admin.post("/v2alpha1/admin/issuedApiKeys", &json!({"actor_id": "outage"}));
        (resp.status == 201).then(|| {
            (resp.json()["issued_api_key"]["key_id"].clone(), resp.json()["secret"].as_str().unwrap().to_owned())
        })
    });
    eventually(Duration::from_secs(10), || (check.verify(&after)["is_valid"] == true).then_some(()));
    eventually(Duration::from_secs(10), || (check.get("/health/ready").status == 200).then_some(()));
    // Exactly the two acknowledged keys exist; the refused write left nothing.
    let listed = admin.get("/v2alpha1/admin/issuedApiKeys?filter=actor_id%3D%22outage%22").json();
    assert_eq!(listed["issued_api_keys"].as_array().unwrap().len(), 2, "{listed}");
}
