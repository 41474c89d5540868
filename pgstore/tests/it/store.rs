//! The store's behaviour: the conformance suite every backend passes, and what it does not cover.

use common::clock::NANOS_PER_SEC;
use common::error::ApiError;
use common::model::{KeyKind, KeyStatus, RateLimitPolicy, RevocationReason, Visibility};
use common::store::conformance::{record, suite};
use common::store::{Cursor, Inserted, ListQuery, Store, StoreError};

use crate::support::{issued, Schema};

#[test]
fn passes_the_store_conformance_suite() {
    let schema = Schema::new();
    suite(&schema.store());
}

#[test]
fn records_round_trip_through_jsonb_exactly() {
    let schema = Schema::new();
    let store = schema.store();
    let mut r = issued(1, 1_700_000_000_123_456_789);
    r.metadata =
        serde_json::from_str(r#"{"b":[1,2.5,-3e-7,{"x":null}],"a":"ü 😀 \\u0000 \"q\"","n":18446744073709551615}"#)
            .unwrap();
    r.scopes = vec!["read".into(), "write:all".into()];
    r.last_used_time = Some(-5);
    r.rate_limit_policy = Some(RateLimitPolicy { quota: 10, window_secs: 60, unit: "requests".into() });
    r.allowed_cidrs = vec!["10.0.0.0/8".into(), "::1/128".into()];
    r.visibility = Visibility::Public;
    r.revocation_reason = RevocationReason::Superseded;
    r.revocation_description = "rotated".into();
    r.revocation_effective_time = Some(i64::MAX);
    r.request_id = Some("req".into());
    store.insert(&r).unwrap();
    assert_eq!(store.get(KeyKind::Issued, &r.key_id).unwrap(), Some(r.clone()));
    assert_eq!(store.scan(KeyKind::Issued, None, 10).unwrap(), [r.clone()]);
    assert_eq!(store.changes_since(0, 10).unwrap().changes[0].record, Some(r));
}

#[test]
fn nul_characters_are_refused_as_a_bad_request_and_nothing_is_written() {
    let schema = Schema::new();
    let store = schema.store();
    let mut r = issued(1, 10);
    r.name = "a\0b".into();
    let Err(StoreError::Refused(e)) = store.insert(&r) else { panic!("a NUL in a name was not refused") };
    assert_eq!(e.status, 400);
    r.name = "fine".into();
    r.metadata.insert("k".into(), "\0".into());
    assert!(matches!(store.insert_batch(&[r.clone()]), Err(StoreError::Refused(_))));
    r.metadata.clear();
    store.insert(&r).unwrap();
    let refused = store.modify(KeyKind::Issued, &r.key_id, &mut |r| {
        r.actor_id = "\0".into();
        Ok(None)
    });
    assert!(matches!(refused, Err(StoreError::Refused(_))));
    assert_eq!(store.get(KeyKind::Issued, &r.key_id).unwrap().unwrap().actor_id, "actor");
    assert_eq!(store.revision().unwrap(), 1);
}

#[test]
fn listing_computes_status_at_now_and_pages_in_byte_order() {
    let schema = Schema::new();
    let store = schema.store();
    let now = 1_000 * NANOS_PER_SEC;
    // Same create time throughout, so key ids alone order the page: byte order, where '-' sorts
    // before letters and digits (a linguistic collation would ignore it).
    let ids = ["a-z", "a0", "aa", "b"];
    let mut records = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut r = record(KeyKind::Imported, id, if i % 2 == 0 { "even" } else { "odd" }, now - 10);
        r.expire_time = if i == 1 { now } else { now + 1 }; // "a0" expired exactly at now
        records.push(r);
    }
    records[3].status = KeyStatus::Revoked;
    records[3].expire_time = now - 1; // revoked wins over expired
    assert_eq!(store.insert_batch(&records).unwrap().0, [true; 4]);

    let ids_of = |status: Option<KeyStatus>, actor: Option<&str>, after: Option<Cursor>, limit: usize| {
        let q = ListQuery { after, limit, actor_id: actor.map(str::to_owned), status, now };
        store.list(KeyKind::Imported, &q).unwrap().into_iter().map(|r| r.key_id).collect::<Vec<_>>()
    };
    assert_eq!(ids_of(None, None, None, 10), ["b", "aa", "a0", "a-z"]);
    assert_eq!(ids_of(Some(KeyStatus::Active), None, None, 10), ["aa", "a-z"]);
    assert_eq!(ids_of(Some(KeyStatus::Expired), None, None, 10), ["a0"]);
    assert_eq!(ids_of(Some(KeyStatus::Revoked), None, None, 10), ["b"]);
    assert!(ids_of(Some(KeyStatus::Unspecified), None, None, 10).is_empty());
    assert_eq!(ids_of(Some(KeyStatus::Active), Some("even"), None, 10), ["aa", "a-z"]);
    assert_eq!(ids_of(None, Some("odd"), None, 10), ["b", "a0"]);
    let cursor = Cursor { create_time: now - 10, key_id: "aa".into() };
    assert_eq!(ids_of(None, None, Some(cursor.clone()), 10), ["a0", "a-z"]);
    assert_eq!(ids_of(None, None, Some(cursor), 1), ["a0"]);
    assert!(ids_of(None, None, None, 0).is_empty());
    // A newer record sorts first; an older cursor position excludes everything newer.
    let newer = record(KeyKind::Imported, "0", "even", now);
    store.insert(&newer).unwrap();
    assert_eq!(ids_of(None, None, None, 1), ["0"]);
    assert_eq!(ids_of(None, None, Some(Cursor::of(&newer)), 1), ["b"]);

    let scanned = |after: Option<&str>| {
        store.scan(KeyKind::Imported, after, 2).unwrap().into_iter().map(|r| r.key_id).collect::<Vec<_>>()
    };
    assert_eq!(scanned(None), ["0", "a-z"]);
    assert_eq!(scanned(Some("a-z")), ["a0", "aa"]);
    assert_eq!(scanned(Some("aa")), ["b"]);
    assert_eq!(store.count_active().unwrap(), 4, "expired keys count, revoked ones do not");
}

#[test]
fn one_write_takes_one_revision_even_across_kinds() {
    let schema = Schema::new();
    let store = schema.store();
    let a = issued(1, 1);
    let b = record(KeyKind::Imported, &"ab".repeat(32), "x", 2);
    let mut b_again = b.clone();
    b_again.name = "second copy".into();
    let (inserted, revision) = store.insert_batch(&[a.clone(), b.clone(), b_again, a.clone()]).unwrap();
    assert_eq!(inserted, [true, true, false, false]);
    assert_eq!(revision, 1);
    assert_eq!(store.get(KeyKind::Imported, &b.key_id).unwrap().unwrap().name, b.name, "the first copy wins");
    let changes = store.changes_since(0, 10).unwrap();
    assert_eq!(changes.revision, 1);
    let logged: Vec<_> = changes.changes.iter().map(|c| (c.kind, c.key_id.as_str())).collect();
    assert_eq!(logged, [(KeyKind::Issued, a.key_id.as_str()), (KeyKind::Imported, b.key_id.as_str())]);

    // A batch that inserts nothing writes nothing and reports the current revision.
    assert_eq!(store.insert_batch(std::slice::from_ref(&a)).unwrap(), (vec![false], 1));
    assert_eq!(store.insert_batch(&[]).unwrap(), (vec![], 1));
    assert_eq!(store.revision().unwrap(), 1);
}

#[test]
fn change_limits_count_changes_and_keep_revisions_whole() {
    let schema = Schema::new();
    let store = schema.store();
    store.insert_batch(&[issued(1, 1), issued(2, 1), issued(3, 1)]).unwrap(); // revision 1: 3 keys
    store.insert(&issued(4, 1)).unwrap(); // revision 2
    store.insert(&issued(5, 1)).unwrap(); // revision 3
    let c = store.changes_since(0, 2).unwrap();
    assert_eq!((c.revision, c.changes.len(), c.more), (1, 3, true));
    let c = store.changes_since(1, 1).unwrap();
    assert_eq!((c.revision, c.changes.len(), c.more), (2, 1, true));
    let c = store.changes_since(1, 2).unwrap();
    assert_eq!((c.revision, c.changes.len(), c.more), (3, 2, false));
    let c = store.changes_since(3, 5).unwrap();
    assert_eq!((c.revision, c.changes.len(), c.more), (3, 0, false));
    let c = store.changes_since(0, 0).unwrap();
    assert_eq!((c.revision, c.changes.len(), c.more), (0, 0, true));
    let c = store.changes_since(u64::MAX, 5).unwrap();
    assert_eq!((c.revision, c.changes.len(), c.more), (u64::MAX, 0, false));
}

#[test]
fn a_refused_or_clashing_rotation_leaves_the_store_as_it_was() {
    let schema = Schema::new();
    let store = schema.store();
    let (a, b) = (issued(1, 1), issued(2, 2));
    store.insert(&a).unwrap();
    store.insert(&b).unwrap();
    let refused = store.modify(KeyKind::Issued, &a.key_id, &mut |r| {
        r.name = "changed".into();
        Err(ApiError::conflict("no"))
    });
    assert!(matches!(refused, Err(StoreError::Refused(_))));
    let clash = store.modify(KeyKind::Issued, &a.key_id, &mut |r| {
        r.status = KeyStatus::Revoked;
        Ok(Some(b.clone()))
    });
    assert!(matches!(clash, Err(StoreError::Duplicate)));
    assert_eq!(store.get(KeyKind::Issued, &a.key_id).unwrap(), Some(a));
    assert_eq!(store.revision().unwrap(), 2);
    assert_eq!(store.count_active().unwrap(), 2);
}

#[test]
fn request_ids_are_per_kind_and_freed_by_delete() {
    let schema = Schema::new();
    let store = schema.store();
    let mut a = issued(1, 1);
    a.request_id = Some("r".into());
    assert!(matches!(store.insert(&a).unwrap(), Inserted::New(1)));
    // The same key id with another request id is a duplicate, not a replay.
    let mut a2 = a.clone();
    a2.request_id = Some("other".into());
    assert!(matches!(store.insert(&a2), Err(StoreError::Duplicate)));
    store.delete(KeyKind::Issued, &a.key_id).unwrap();
    let mut b = issued(2, 1);
    b.request_id = Some("r".into());
    assert!(matches!(store.insert(&b).unwrap(), Inserted::New(3)));
}
