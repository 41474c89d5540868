//! The store: the durable home of every key record, behind one trait so both planes and every
//! backend (`redb` embedded; PostgreSQL planned) behave alike.
//!
//! Every write bumps a store-wide revision and records which key it touched, so a data plane can
//! refresh its snapshot by reading only what changed since the revision it holds
//! ([`Store::changes_since`]). A write is durable when the call returns `Ok`.
//!
//! The trait is synchronous: `common` has no async runtime. The admin plane calls it from
//! blocking tasks; the data plane never calls it on its hot path.

pub mod metered;
pub mod redb;

use crate::clock::Nanos;
use crate::error::ApiError;
use crate::model::{KeyKind, KeyRecord, KeyStatus};

/// A failure of the store itself, or a refusal by the caller's check inside a transaction.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key not found")]
    NotFound,
    /// The caller's check inside [`Store::modify`] refused the change; nothing was written.
    #[error("change refused: {0}")]
    Refused(ApiError),
    /// A key with this id already exists.
    #[error("key id already exists")]
    Duplicate,
    #[error("store backend failed: {0}")]
    Backend(String),
    /// The store cannot be reached (connection refused, dropped, or no connection free); the
    /// operation did not happen and may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// What [`Store::insert`] did.
#[derive(Debug)]
pub enum Inserted {
    /// The record was written at this revision.
    New(u64),
    /// A record with the same `request_id` already existed; it is returned unchanged.
    Existing(Box<KeyRecord>),
}

/// Listing parameters, already validated.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Exclusive cursor: the position of the last record of the previous page.
    pub after: Option<Cursor>,
    pub limit: usize,
    pub actor_id: Option<String>,
    pub status: Option<KeyStatus>,
    /// "Now" for the computed EXPIRED status.
    pub now: Nanos,
}

/// A position in the listing order (`create_time DESC, key_id DESC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub create_time: Nanos,
    pub key_id: String,
}

impl Cursor {
    pub fn of(record: &KeyRecord) -> Self {
        Self { create_time: record.create_time, key_id: record.key_id.clone() }
    }
}

/// One changed key since a revision: its current record, or `None` when it was deleted.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: KeyKind,
    pub key_id: String,
    pub record: Option<KeyRecord>,
}

/// The changes after a revision, up to `revision` (inclusive).
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub revision: u64,
    pub changes: Vec<Change>,
    /// More changes exist after `revision`; ask again.
    pub more: bool,
}

/// The store of key records.
pub trait Store: Send + Sync + 'static {
    /// Inserts a new record. When `record.request_id` is set and already used by a record of
    /// the same kind, returns that record instead of writing (idempotent replay).
    fn insert(&self, record: &KeyRecord) -> Result<Inserted, StoreError>;

    fn get(&self, kind: KeyKind, key_id: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Reads the record, lets `change` edit or refuse it, and writes it back, in one
    /// transaction. `change` may return a new record of the same kind to insert in that same
    /// transaction (rotation). Returns the stored record and the revision of the write.
    fn modify(
        &self,
        kind: KeyKind,
        key_id: &str,
        change: &mut dyn FnMut(&mut KeyRecord) -> Result<Option<KeyRecord>, ApiError>,
    ) -> Result<(KeyRecord, u64), StoreError>;

    /// Inserts every record whose key id is new, in one transaction; returns, per record,
    /// whether it was inserted (false: the key id already existed), and the revision.
    fn insert_batch(&self, records: &[KeyRecord]) -> Result<(Vec<bool>, u64), StoreError>;

    /// Deletes a record for good. Returns the revision of the write.
    fn delete(&self, kind: KeyKind, key_id: &str) -> Result<u64, StoreError>;

    /// Records in listing order after `query.after`, filtered, at most `query.limit`.
    fn list(&self, kind: KeyKind, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError>;

    /// Every record of `kind` after `after` (by key id), at most `limit`: for a cold snapshot
    /// load in bounded batches.
    fn scan(&self, kind: KeyKind, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, StoreError>;

    /// The current store-wide revision (0 for an empty store).
    fn revision(&self) -> Result<u64, StoreError>;

    /// The keys changed after `revision`, at most `limit` change-log entries.
    fn changes_since(&self, revision: u64, limit: usize) -> Result<Changes, StoreError>;

    /// Number of non-revoked keys of both kinds (for `quota.api_keys_max`).
    fn count_active(&self) -> Result<u64, StoreError>;

    /// A cheap round trip proving the store answers (for `/health/ready`).
    fn ping(&self) -> Result<(), StoreError>;

    /// Records that `keys` were used at `time` (`last_used_time`), in one transaction. A record
    /// whose `last_used_time` is already `time` or later is left alone; unknown keys are
    /// skipped. Unlike every other write, this bumps no revision and logs no change: nothing
    /// verification reads has changed, so no snapshot needs to refresh for it (at a million keys
    /// used daily, logging it would rebuild a million snapshot entries a day on every data plane).
    fn record_last_used(&self, keys: &[(KeyKind, String)], time: Nanos) -> Result<(), StoreError>;
}

pub mod conformance {
    //! The behaviour every backend must show; each backend's tests call [`suite`] on a fresh,
    //! empty store. Public so that backends in other crates run the very same checks.

    use super::*;
    use crate::model::{RevocationReason, Visibility};

    pub fn record(kind: KeyKind, key_id: &str, actor: &str, created: Nanos) -> KeyRecord {
        KeyRecord {
            kind,
            key_id: key_id.to_owned(),
            name: format!("name of {key_id}"),
            actor_id: actor.to_owned(),
            scopes: vec!["read".into()],
            metadata: Default::default(),
            status: KeyStatus::Active,
            visibility: Visibility::Secret,
            token_prefix: "ory_ak".into(),
            create_time: created,
            update_time: created,
            expire_time: created + 1_000_000_000_000,
            last_used_time: None,
            rate_limit_policy: None,
            allowed_cidrs: vec![],
            revocation_reason: RevocationReason::Unspecified,
            revocation_description: String::new(),
            revocation_effective_time: None,
            request_id: None,
        }
    }

    pub fn suite(store: &dyn Store) {
        assert_eq!(store.revision().unwrap(), 0);
        store.ping().unwrap();
        let a = record(KeyKind::Issued, "00000000-0000-4000-8000-00000000000a", "alice", 10);
        let b = record(KeyKind::Issued, "00000000-0000-4000-8000-00000000000b", "bob", 20);
        let mut c = record(KeyKind::Issued, "00000000-0000-4000-8000-00000000000c", "alice", 20);
        c.request_id = Some("req-1".into());
        let rev_a = match store.insert(&a).unwrap() {
            Inserted::New(rev) => rev,
            other => panic!("{other:?}"),
        };
        assert!(rev_a > 0);
        assert!(matches!(store.insert(&b).unwrap(), Inserted::New(_)));
        assert!(matches!(store.insert(&c).unwrap(), Inserted::New(_)));
        assert!(matches!(store.insert(&a), Err(StoreError::Duplicate)));

        // Idempotent replay by request_id returns the stored record, writes nothing.
        let rev_before = store.revision().unwrap();
        let mut replay = record(KeyKind::Issued, "00000000-0000-4000-8000-0000000000ff", "alice", 30);
        replay.request_id = Some("req-1".into());
        match store.insert(&replay).unwrap() {
            Inserted::Existing(existing) => assert_eq!(existing.key_id, c.key_id),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.revision().unwrap(), rev_before);
        // The same request_id in the other table is independent.
        let mut imported = record(KeyKind::Imported, &"ab".repeat(32), "carol", 5);
        imported.request_id = Some("req-1".into());
        assert!(matches!(store.insert(&imported).unwrap(), Inserted::New(_)));

        assert_eq!(store.get(KeyKind::Issued, &a.key_id).unwrap().as_ref(), Some(&a));

        // Last use: recorded without a revision or a change, never moved backwards, unknown
        // keys skipped.
        let rev_before = store.revision().unwrap();
        let unknown = (KeyKind::Issued, "00000000-0000-4000-8000-0000000000ee".to_owned());
        let used = [(KeyKind::Issued, a.key_id.clone()), unknown.clone(), (KeyKind::Imported, imported.key_id.clone())];
        store.record_last_used(&used, 500).unwrap();
        store.record_last_used(&used[..1], 400).unwrap();
        assert_eq!(store.get(KeyKind::Issued, &a.key_id).unwrap().unwrap().last_used_time, Some(500));
        assert_eq!(store.get(KeyKind::Imported, &imported.key_id).unwrap().unwrap().last_used_time, Some(500));
        assert_eq!(store.get(KeyKind::Issued, &b.key_id).unwrap().unwrap().last_used_time, None);
        assert!(store.get(KeyKind::Issued, &unknown.1).unwrap().is_none());
        assert_eq!(store.revision().unwrap(), rev_before);
        assert!(store.changes_since(rev_before, 100).unwrap().changes.is_empty());
        store.record_last_used(&[], 600).unwrap();
        // The rest of the suite compares whole records.
        let a = store.get(KeyKind::Issued, &a.key_id).unwrap().unwrap();
        let imported = store.get(KeyKind::Imported, &imported.key_id).unwrap().unwrap();
        assert_eq!(store.get(KeyKind::Imported, &a.key_id).unwrap(), None);

        // Listing order: create_time DESC, key_id DESC; paging by cursor; filters.
        let q = |after: Option<Cursor>, limit, actor: Option<&str>| ListQuery {
            after,
            limit,
            actor_id: actor.map(str::to_owned),
            status: None,
            now: 0,
        };
        let ids = |v: Vec<KeyRecord>| v.into_iter().map(|r| r.key_id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.list(KeyKind::Issued, &q(None, 10, None)).unwrap()),
            [c.key_id.clone(), b.key_id.clone(), a.key_id.clone()]
        );
        let page1 = store.list(KeyKind::Issued, &q(None, 2, None)).unwrap();
        assert_eq!(ids(page1.clone()), [c.key_id.clone(), b.key_id.clone()]);
        let page2 = store.list(KeyKind::Issued, &q(Some(Cursor::of(&page1[1])), 2, None)).unwrap();
        assert_eq!(ids(page2), vec![a.key_id.clone()]);
        assert_eq!(
            ids(store.list(KeyKind::Issued, &q(None, 10, Some("alice"))).unwrap()),
            [c.key_id.clone(), a.key_id.clone()]
        );
        let mut revoked_only = q(None, 10, Some("alice"));
        revoked_only.status = Some(KeyStatus::Revoked);
        assert!(store.list(KeyKind::Issued, &revoked_only).unwrap().is_empty());
        assert_eq!(store.count_active().unwrap(), 4);

        // Modify: refused changes write nothing; accepted ones bump the revision.
        let rev_before = store.revision().unwrap();
        let refused = store.modify(KeyKind::Issued, &a.key_id, &mut |_| Err(ApiError::conflict("no")));
        assert!(matches!(refused, Err(StoreError::Refused(_))));
        assert_eq!(store.revision().unwrap(), rev_before);
        assert!(matches!(
            store.modify(KeyKind::Issued, "00000000-0000-4000-8000-000000000999", &mut |_| Ok(None)),
            Err(StoreError::NotFound)
        ));
        let (revoked, rev) = store
            .modify(KeyKind::Issued, &a.key_id, &mut |r| {
                r.status = KeyStatus::Revoked;
                Ok(None)
            })
            .unwrap();
        assert_eq!(revoked.status, KeyStatus::Revoked);
        assert!(rev > rev_before);
        assert_eq!(store.get(KeyKind::Issued, &a.key_id).unwrap().unwrap().status, KeyStatus::Revoked);
        assert_eq!(store.list(KeyKind::Issued, &revoked_only).unwrap().len(), 1);
        assert_eq!(store.count_active().unwrap(), 3);

        // The change log: everything since 0, then only the revoke since rev_before.
        let all = store.changes_since(0, 100).unwrap();
        assert_eq!(all.revision, store.revision().unwrap());
        assert!(!all.more);
        assert!(all.changes.len() >= 4);
        let since = store.changes_since(rev_before, 100).unwrap();
        assert_eq!(since.changes.len(), 1);
        assert_eq!(since.changes[0].key_id, a.key_id);
        assert_eq!(since.changes[0].record.as_ref().unwrap().status, KeyStatus::Revoked);
        let limited = store.changes_since(0, 1).unwrap();
        assert!(limited.more);
        assert_eq!(limited.changes.len(), 1);

        // Rotation-style modify: the old record changes and a new one appears, atomically.
        let d = record(KeyKind::Issued, "00000000-0000-4000-8000-00000000000d", "alice", 40);
        let (_, rev) = store
            .modify(KeyKind::Issued, &b.key_id, &mut |r| {
                r.name = "superseded".into();
                Ok(Some(d.clone()))
            })
            .unwrap();
        assert_eq!(store.get(KeyKind::Issued, &d.key_id).unwrap().as_ref(), Some(&d));
        assert_eq!(store.get(KeyKind::Issued, &b.key_id).unwrap().unwrap().name, "superseded");
        let both = store.changes_since(rev - 1, 10).unwrap();
        assert_eq!((both.revision, both.changes.len()), (rev, 2), "both keys under one revision");
        // A rotation whose new key id exists is refused whole.
        let clash = store.modify(KeyKind::Issued, &b.key_id, &mut |r| {
            r.name = "clash".into();
            Ok(Some(a.clone()))
        });
        assert!(matches!(clash, Err(StoreError::Duplicate)));
        assert_eq!(store.get(KeyKind::Issued, &b.key_id).unwrap().unwrap().name, "superseded");

        // Batch insert: new ids go in, existing ones are reported, in one transaction.
        let e = record(KeyKind::Imported, &"cd".repeat(32), "erin", 50);
        let (inserted, _) = store.insert_batch(&[e.clone(), imported.clone()]).unwrap();
        assert_eq!(inserted, [true, false]);
        assert_eq!(store.get(KeyKind::Imported, &e.key_id).unwrap().as_ref(), Some(&e));

        // Delete: gone from reads, listings and (as a deletion) the change log.
        let rev = store.delete(KeyKind::Imported, &e.key_id).unwrap();
        assert_eq!(store.get(KeyKind::Imported, &e.key_id).unwrap(), None);
        assert!(matches!(store.delete(KeyKind::Imported, &e.key_id), Err(StoreError::NotFound)));
        let deleted = store.changes_since(rev - 1, 10).unwrap();
        assert_eq!(deleted.changes.len(), 1);
        assert!(deleted.changes[0].record.is_none());
        let imported_ids = store.list(KeyKind::Imported, &q(None, 10, None)).unwrap();
        assert_eq!(imported_ids.len(), 1);

        // Cold scan in batches sees every record once.
        let first = store.scan(KeyKind::Issued, None, 2).unwrap();
        let rest = store.scan(KeyKind::Issued, Some(&first[1].key_id), 10).unwrap();
        assert_eq!(first.len() + rest.len(), 4);
    }
}
