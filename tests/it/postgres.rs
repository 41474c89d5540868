//! The split deployment over PostgreSQL (127.0.0.1:5432, user postgres, database `test`), each
//! test in a schema of its own. These tests fail, never skip, when PostgreSQL is unreachable.

use std::process::Command;

use crate::harness::*;
use crate::planes::split_planes;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh schema, dropped when the guard goes.
struct Schema {
    name: String,
}

impl Schema {
    fn new() -> Schema {
        let name = format!("talos_it_{}", uuid::Uuid::new_v4().simple());
        let mut client = postgres::Client::connect(SERVER, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL must be running at {SERVER}: {e}"));
        client.batch_execute(&format!("CREATE SCHEMA {name}")).unwrap();
        Schema { name }
    }

    fn dsn(&self) -> String {
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
