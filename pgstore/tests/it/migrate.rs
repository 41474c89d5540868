//! Migrations: status on an empty schema, idempotence, two processes migrating at once.

use std::sync::Barrier;

use common::store::Store;
use pgstore::MIGRATIONS;

use crate::support::Schema;

fn all(applied: bool) -> Vec<(u32, String, bool)> {
    MIGRATIONS.iter().map(|m| (m.version, m.name.to_owned(), applied)).collect()
}

fn versions() -> Vec<u32> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

#[test]
fn an_empty_schema_is_unmigrated_until_migrate_up_which_is_idempotent() {
    let schema = Schema::new();
    let store = schema.connect();
    assert!(!store.is_migrated().unwrap());
    assert_eq!(store.migration_status().unwrap(), all(false));
    let unmigrated = store.ping().expect_err("ping must fail on an unmigrated schema").to_string();
    assert!(unmigrated.contains("store_revision"), "{unmigrated}");

    assert_eq!(store.migrate_up().unwrap(), versions());
    assert!(store.is_migrated().unwrap());
    assert_eq!(store.migration_status().unwrap(), all(true));
    assert_eq!(store.migrate_up().unwrap(), Vec::<u32>::new());
    assert_eq!(store.migration_status().unwrap(), all(true));
    store.ping().unwrap();
    assert_eq!(store.revision().unwrap(), 0);

    let rows = schema.sql().query("SELECT version, applied_at <= now() FROM schema_migrations", &[]).unwrap();
    assert_eq!(rows.len(), MIGRATIONS.len());
    assert!(rows.iter().all(|r| r.get::<_, bool>(1)));
}

#[test]
fn concurrent_migrations_apply_each_version_once() {
    let schema = Schema::new();
    let (a, b) = (schema.connect(), schema.connect());
    let barrier = Barrier::new(2);
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| {
            barrier.wait();
            a.migrate_up()
        });
        let tb = s.spawn(|| {
            barrier.wait();
            b.migrate_up()
        });
        (ta.join().unwrap().unwrap(), tb.join().unwrap().unwrap())
    });
    let mut applied = [ra, rb].concat();
    applied.sort_unstable();
    assert_eq!(applied, versions(), "every version applied exactly once between the two");
    assert!(a.is_migrated().unwrap() && b.is_migrated().unwrap());
}

#[test]
fn versions_unknown_to_this_build_are_reported_and_left_alone() {
    let schema = Schema::new();
    let store = schema.store();
    schema.sql().batch_execute("INSERT INTO schema_migrations (version) VALUES (9999)").unwrap();
    let mut expected = all(true);
    expected.push((9999, "unknown".into(), true));
    assert_eq!(store.migration_status().unwrap(), expected);
    assert!(store.is_migrated().unwrap());
    assert!(store.migrate_up().unwrap().is_empty());
}
