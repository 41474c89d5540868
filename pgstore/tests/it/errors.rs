//! Connection and DSN errors: clear, and never carrying the password. Pool settings from the DSN.

use std::sync::Barrier;

use common::store::Store;
use pgstore::PgStore;

use crate::support::{issued, Schema};

fn connect_error(dsn: &str) -> String {
    let err = PgStore::connect(dsn).expect_err(dsn).to_string();
    assert!(!err.contains("pa55word") && !err.contains("pa%24%24"), "the password leaked: {err}");
    err
}

#[test]
fn an_unreachable_database_fails_clearly_without_the_password() {
    let err = connect_error("postgres://talos:pa55word@127.0.0.1:1/test?connect_timeout=2");
    assert!(err.starts_with("store unavailable: cannot connect to PostgreSQL: error connecting to server"), "{err}");
    let err = connect_error("postgres://talos:pa%24%24@127.0.0.1:1/test?connect_timeout=2");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn bad_dsn_parameters_are_named() {
    let err = connect_error("postgres://talos:pa55word@127.0.0.1/test?max_conns=zero");
    assert_eq!(err, "store backend failed: db.dsn: invalid max_conns \"zero\": expected a whole number");
    let err = connect_error("postgres://talos:pa55word@127.0.0.1/test?bogus=1");
    assert_eq!(err, "store backend failed: db.dsn: invalid connection string: unknown option `bogus`");
    let err = connect_error("postgres://talos:pa55word@127.0.0.1/test?sslmode=require&connect_timeout=2");
    assert!(err.contains("no TLS implementation configured"), "TLS is not supported yet: {err}");
    let err = connect_error("postgres://postgres:pa55word@127.0.0.1/talos_no_such_database");
    assert!(err.ends_with("database \"talos_no_such_database\" does not exist"), "{err}");
}

#[test]
fn pool_settings_come_from_the_dsn_and_bound_the_connections() {
    let schema = Schema::new();
    let store = PgStore::connect(&schema.dsn("&pool_max_conns=2&pool_min_conns=2&max_conn_idle_time=1m")).unwrap();
    store.migrate_up().unwrap();
    let settings = store.pool_settings();
    assert_eq!((settings.max_conns, settings.min_conns), (2, 2));
    assert_eq!(settings.max_conn_idle_time, Some(std::time::Duration::from_secs(60)));
    assert_eq!(schema.connections(), 2, "pool_min_conns are opened at connect");

    const THREADS: u64 = 6;
    let barrier = Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, barrier) = (&store, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..10 {
                    store.insert(&issued(t * 100 + i + 1, 1)).unwrap();
                }
            });
        }
        // While six threads share two connections, no third is opened.
        for _ in 0..20 {
            assert!(schema.connections() <= 2);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    assert_eq!(store.revision().unwrap(), 60);
    assert!(schema.connections() <= 2);
}
