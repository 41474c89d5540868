//! `LISTEN/NOTIFY`: a write wakes the listener with its revision; a dropped listener connection
//! comes back and reports the current revision.

use std::sync::mpsc;
use std::time::Duration;

use common::store::{Inserted, Store};

use crate::support::{eventually, issued, Schema};

/// Notifications are database-wide and other tests write too: start this schema's revisions at
/// a number no other test reaches, so the ones this test waits for are its own.
fn distinctive_revisions(schema: &Schema) -> u64 {
    let base = 1_000_000_000 + u64::from(uuid::Uuid::new_v4().as_fields().0 % 1_000_000) * 1000;
    schema.sql().execute("UPDATE store_revision SET revision = $1", &[&(base as i64)]).unwrap();
    base
}

fn wait_for(rx: &mpsc::Receiver<u64>, revision: u64) -> bool {
    eventually(Duration::from_secs(10), || rx.try_iter().any(|r| r == revision))
}

#[test]
fn a_commit_notifies_the_listener_with_its_revision() {
    let schema = Schema::new();
    let store = schema.store();
    let base = distinctive_revisions(&schema);
    let (tx, rx) = mpsc::channel();
    store
        .listen(move |revision| {
            let _ = tx.send(revision);
        })
        .unwrap();
    let Inserted::New(rev) = store.insert(&issued(1, 1)).unwrap() else { panic!() };
    assert_eq!(rev, base + 1);
    assert!(wait_for(&rx, rev), "no notification for revision {rev}");

    // A write from another instance (another process, in production) wakes it too.
    let other = schema.store();
    let rev = other.delete(common::model::KeyKind::Issued, &issued(1, 1).key_id).unwrap();
    assert!(wait_for(&rx, rev), "no notification for revision {rev}");
}

#[test]
fn the_listener_reconnects_and_reports_the_current_revision() {
    let schema = Schema::new();
    let store = schema.store();
    let base = distinctive_revisions(&schema);
    let (tx, rx) = mpsc::channel();
    store
        .listen(move |revision| {
            let _ = tx.send(revision);
        })
        .unwrap();

    let terminated: i64 = schema
        .sql()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1 AND query = 'LISTEN talos_changes'",
            &[&schema.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(terminated, 1, "the listener's own connection");
    // Written while the listener may be down: the reconnect reports it (or its notify arrives).
    let Inserted::New(missed) = store.insert(&issued(1, 1)).unwrap() else { panic!() };
    assert_eq!(missed, base + 1);
    assert!(wait_for(&rx, missed), "the reconnected listener did not report revision {missed}");
    let Inserted::New(rev) = store.insert(&issued(2, 1)).unwrap() else { panic!() };
    assert!(wait_for(&rx, rev), "no notification after the reconnect for revision {rev}");
}
