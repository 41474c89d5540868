//! A fresh schema per test, dropped afterwards, and small helpers.

use std::time::{Duration, Instant};

use common::model::{KeyKind, KeyRecord};
use pgstore::PgStore;
use postgres::{Client, NoTls};

const DEFAULT_DSN: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn server_dsn() -> String {
    std::env::var("TALOS_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_DSN.to_owned())
}

/// A connection for setting up and inspecting, outside the store.
pub fn client(dsn: &str) -> Client {
    Client::connect(dsn, NoTls).unwrap_or_else(|e| {
        panic!(
            "the pgstore tests need PostgreSQL at {dsn} (user postgres, trust auth, database test; \
             or set TALOS_TEST_POSTGRES): {e}"
        )
    })
}

/// A schema of its own for one test; every DSN it hands out puts it first on the search path
/// and names it as the application, so a test can find its own connections.
pub struct Schema {
    pub name: String,
    server: String,
}

impl Schema {
    pub fn new() -> Schema {
        let server = server_dsn();
        let name = format!("talos_test_{}", uuid::Uuid::new_v4().simple());
        client(&server).batch_execute(&format!("CREATE SCHEMA {name}")).expect("create the test schema");
        Schema { name, server }
    }

    /// The store DSN, with `extra` query parameters (`&k=v…`) appended.
    pub fn dsn(&self, extra: &str) -> String {
        let joiner = if self.server.contains('?') { '&' } else { '?' };
        format!(
            "{}{joiner}options=-csearch_path%3D{name}&application_name={name}{extra}",
            self.server,
            name = self.name
        )
    }

    /// A store on this schema, not migrated.
    pub fn connect(&self) -> PgStore {
        PgStore::connect(&self.dsn("&max_conns=4")).expect("connect to the test database")
    }

    /// A store on this schema, migrated.
    pub fn store(&self) -> PgStore {
        let store = self.connect();
        store.migrate_up().expect("migrate the test schema");
        store
    }

    /// A plain connection with this schema on its search path.
    pub fn sql(&self) -> Client {
        let mut c = client(&self.server);
        c.batch_execute(&format!("SET search_path TO {}", self.name)).expect("set the search path");
        c
    }

    /// The server connections this schema's stores hold open.
    pub fn connections(&self) -> i64 {
        client(&self.server)
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&self.name])
            .expect("read pg_stat_activity")
            .get(0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&self.server, NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// An issued-key record with a unique, valid-looking key id.
pub fn issued(n: u64, created: i64) -> KeyRecord {
    common::store::conformance::record(KeyKind::Issued, &format!("00000000-0000-4000-8000-{n:012x}"), "actor", created)
}

/// Polls `done` until it holds or `within` passes.
pub fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
