//! The embedded store: one redb file (or redb's in-memory backend for `db.dsn: memory`).
//!
//! Tables, per key kind: records by key id (JSON values), a listing index ordered by
//! `create_time DESC, key_id DESC`, and request ids for idempotent issue. Shared: the store-wide
//! revision and the change log (revision → kind and key id). Every write runs in one redb write
//! transaction committed with immediate durability, so an `Ok` means the write is on disk.

use std::ops::Bound;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Change, Changes, Cursor, Inserted, ListQuery, Store, StoreError};
use crate::clock::Nanos;
use crate::error::ApiError;
use crate::model::{KeyKind, KeyRecord, KeyStatus};

type Records = TableDefinition<'static, &'static str, &'static [u8]>;
type Index = TableDefinition<'static, &'static [u8], ()>;
type RequestIds = TableDefinition<'static, &'static str, &'static str>;

const ISSUED: Records = TableDefinition::new("issued_api_keys");
const IMPORTED: Records = TableDefinition::new("imported_api_keys");
const ISSUED_ORDER: Index = TableDefinition::new("issued_api_keys_by_create_time");
const IMPORTED_ORDER: Index = TableDefinition::new("imported_api_keys_by_create_time");
const ISSUED_REQUEST_IDS: RequestIds = TableDefinition::new("issued_api_keys_request_ids");
const IMPORTED_REQUEST_IDS: RequestIds = TableDefinition::new("imported_api_keys_request_ids");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("change_log");
const REVISION: &str = "revision";

fn tables(kind: KeyKind) -> (Records, Index, RequestIds) {
    match kind {
        KeyKind::Issued => (ISSUED, ISSUED_ORDER, ISSUED_REQUEST_IDS),
        KeyKind::Imported => (IMPORTED, IMPORTED_ORDER, IMPORTED_REQUEST_IDS),
    }
}

fn kind_byte(kind: KeyKind) -> u8 {
    match kind {
        KeyKind::Issued => b'i',
        KeyKind::Imported => b'm',
    }
}

/// The listing-index key: descending create time, then descending key id (each byte inverted;
/// key ids have a fixed length per kind, so the inversion orders them exactly in reverse).
fn order_key(create_time: i64, key_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key_id.len());
    // Map i64 to u64 preserving order, then invert for DESC.
    let ordered = (create_time as u64) ^ (1 << 63);
    k.extend_from_slice(&(!ordered).to_be_bytes());
    k.extend(key_id.bytes().map(|b| !b));
    k
}

fn key_id_of_order_key(k: &[u8]) -> String {
    k[8..].iter().map(|b| char::from(!b)).collect()
}

fn backend<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

fn decode(bytes: &[u8]) -> Result<KeyRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Backend(format!("corrupt key record: {e}")))
}

fn encode(record: &KeyRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("a key record serialises")
}

pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Opens (creating if absent) the store file at `path`, shared with other processes: the
    /// admin plane and any number of check planes on one host open the same file, each may write
    /// (redb's multi-writer mode, byte-range locks; one write transaction at a time), and every
    /// reader sees the others' commits.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(path)
            .map_err(backend)?;
        Self::init(db)
    }

    /// A store that lives in memory only (`db.dsn: memory`).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(backend)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(backend)?;
        for def in [ISSUED, IMPORTED] {
            txn.open_table(def).map_err(backend)?;
        }
        for def in [ISSUED_ORDER, IMPORTED_ORDER] {
            txn.open_table(def).map_err(backend)?;
        }
        for def in [ISSUED_REQUEST_IDS, IMPORTED_REQUEST_IDS] {
            txn.open_table(def).map_err(backend)?;
        }
        txn.open_table(META).map_err(backend)?;
        txn.open_table(CHANGES).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Self { db })
    }

    /// Bumps the revision once and logs every changed key under it, inside `txn`; returns the
    /// new revision. The change log maps a revision to its keys: `kind byte ‖ key id`, joined
    /// by `\n`.
    fn log_changes(txn: &redb::WriteTransaction, kind: KeyKind, key_ids: &[&str]) -> Result<u64, StoreError> {
        let mut meta = txn.open_table(META).map_err(backend)?;
        let revision = meta.get(REVISION).map_err(backend)?.map_or(0, |v| v.value()) + 1;
        meta.insert(REVISION, revision).map_err(backend)?;
        let mut entry = Vec::new();
        for (i, key_id) in key_ids.iter().enumerate() {
            if i > 0 {
                entry.push(b'\n');
            }
            entry.push(kind_byte(kind));
            entry.extend_from_slice(key_id.as_bytes());
        }
        txn.open_table(CHANGES).map_err(backend)?.insert(revision, entry.as_slice()).map_err(backend)?;
        Ok(revision)
    }
}

impl Store for RedbStore {
    fn insert(&self, record: &KeyRecord) -> Result<Inserted, StoreError> {
        let (records_def, order_def, request_ids_def) = tables(record.kind);
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut records = txn.open_table(records_def).map_err(backend)?;
            if let Some(request_id) = &record.request_id {
                let mut request_ids = txn.open_table(request_ids_def).map_err(backend)?;
                if let Some(existing_id) = request_ids.get(request_id.as_str()).map_err(backend)? {
                    let existing = records.get(existing_id.value()).map_err(backend)?;
                    if let Some(existing) = existing {
                        return Ok(Inserted::Existing(Box::new(decode(existing.value())?)));
                    }
                }
                request_ids.insert(request_id.as_str(), record.key_id.as_str()).map_err(backend)?;
            }
            if records.get(record.key_id.as_str()).map_err(backend)?.is_some() {
                return Err(StoreError::Duplicate);
            }
            records.insert(record.key_id.as_str(), encode(record).as_slice()).map_err(backend)?;
            txn.open_table(order_def)
                .map_err(backend)?
                .insert(order_key(record.create_time, &record.key_id).as_slice(), ())
                .map_err(backend)?;
        }
        let revision = Self::log_changes(&txn, record.kind, &[&record.key_id])?;
        txn.commit().map_err(backend)?;
        Ok(Inserted::New(revision))
    }

    fn get(&self, kind: KeyKind, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let records = txn.open_table(tables(kind).0).map_err(backend)?;
        let found = records.get(key_id).map_err(backend)?;
        found.map(|v| decode(v.value())).transpose()
    }

    fn modify(
        &self,
        kind: KeyKind,
        key_id: &str,
        change: &mut dyn FnMut(&mut KeyRecord) -> Result<Option<KeyRecord>, ApiError>,
    ) -> Result<(KeyRecord, u64), StoreError> {
        let (records_def, order_def, _) = tables(kind);
        let txn = self.db.begin_write().map_err(backend)?;
        // Dropping `txn` without commit aborts it: a refusal or a clash writes nothing.
        let (record, added) = {
            let mut records = txn.open_table(records_def).map_err(backend)?;
            let mut record = match records.get(key_id).map_err(backend)? {
                Some(v) => decode(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            let added = change(&mut record).map_err(StoreError::Refused)?;
            records.insert(key_id, encode(&record).as_slice()).map_err(backend)?;
            if let Some(new) = &added {
                if records.get(new.key_id.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Duplicate);
                }
                records.insert(new.key_id.as_str(), encode(new).as_slice()).map_err(backend)?;
                txn.open_table(order_def)
                    .map_err(backend)?
                    .insert(order_key(new.create_time, &new.key_id).as_slice(), ())
                    .map_err(backend)?;
            }
            (record, added)
        };
        let mut changed = vec![key_id];
        changed.extend(added.as_ref().map(|n| n.key_id.as_str()));
        let revision = Self::log_changes(&txn, kind, &changed)?;
        txn.commit().map_err(backend)?;
        Ok((record, revision))
    }

    fn record_last_used(&self, keys: &[(KeyKind, String)], time: Nanos) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(backend)?;
        for kind in [KeyKind::Issued, KeyKind::Imported] {
            let (records_def, _, _) = tables(kind);
            let mut records = txn.open_table(records_def).map_err(backend)?;
            for (_, key_id) in keys.iter().filter(|(k, _)| *k == kind) {
                let stored = records.get(key_id.as_str()).map_err(backend)?.map(|v| decode(v.value())).transpose()?;
                let Some(mut record) = stored else { continue };
                if record.last_used_time.is_some_and(|t| t >= time) {
                    continue;
                }
                record.last_used_time = Some(time);
                records.insert(key_id.as_str(), encode(&record).as_slice()).map_err(backend)?;
            }
        }
        // No revision, no change log: see the trait.
        txn.commit().map_err(backend)
    }

    fn insert_batch(&self, batch: &[KeyRecord]) -> Result<(Vec<bool>, u64), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        let mut inserted = Vec::with_capacity(batch.len());
        let mut logged: Vec<(KeyKind, &str)> = Vec::new();
        for record in batch {
            let (records_def, order_def, _) = tables(record.kind);
            let mut records = txn.open_table(records_def).map_err(backend)?;
            if records.get(record.key_id.as_str()).map_err(backend)?.is_some() {
                inserted.push(false);
                continue;
            }
            records.insert(record.key_id.as_str(), encode(record).as_slice()).map_err(backend)?;
            txn.open_table(order_def)
                .map_err(backend)?
                .insert(order_key(record.create_time, &record.key_id).as_slice(), ())
                .map_err(backend)?;
            inserted.push(true);
            logged.push((record.kind, &record.key_id));
        }
        let mut revision = 0;
        for kind in [KeyKind::Issued, KeyKind::Imported] {
            let ids: Vec<&str> = logged.iter().filter(|(k, _)| *k == kind).map(|(_, id)| *id).collect();
            if !ids.is_empty() {
                revision = Self::log_changes(&txn, kind, &ids)?;
            }
        }
        if revision == 0 {
            return Ok((inserted, self.revision()?));
        }
        txn.commit().map_err(backend)?;
        Ok((inserted, revision))
    }

    fn delete(&self, kind: KeyKind, key_id: &str) -> Result<u64, StoreError> {
        let (records_def, order_def, request_ids_def) = tables(kind);
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut records = txn.open_table(records_def).map_err(backend)?;
            let record = match records.remove(key_id).map_err(backend)? {
                Some(v) => decode(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            txn.open_table(order_def)
                .map_err(backend)?
                .remove(order_key(record.create_time, key_id).as_slice())
                .map_err(backend)?;
            if let Some(request_id) = &record.request_id {
                txn.open_table(request_ids_def).map_err(backend)?.remove(request_id.as_str()).map_err(backend)?;
            }
        }
        let revision = Self::log_changes(&txn, kind, &[key_id])?;
        txn.commit().map_err(backend)?;
        Ok(revision)
    }

    fn list(&self, kind: KeyKind, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        let (records_def, order_def, _) = tables(kind);
        let txn = self.db.begin_read().map_err(backend)?;
        let records = txn.open_table(records_def).map_err(backend)?;
        let order = txn.open_table(order_def).map_err(backend)?;
        let start = query.after.as_ref().map(|c: &Cursor| order_key(c.create_time, &c.key_id));
        let range = match &start {
            Some(s) => order.range((Bound::Excluded(s.as_slice()), Bound::Unbounded)),
            None => order.iter(),
        }
        .map_err(backend)?;
        let mut out = Vec::new();
        for entry in range {
            if out.len() >= query.limit {
                break;
            }
            let (k, _) = entry.map_err(backend)?;
            let key_id = key_id_of_order_key(k.value());
            let Some(v) = records.get(key_id.as_str()).map_err(backend)? else { continue };
            let record = decode(v.value())?;
            if query.actor_id.as_ref().is_some_and(|a| *a != record.actor_id) {
                continue;
            }
            if query.status.is_some_and(|s| s != record.status_at(query.now)) {
                continue;
            }
            out.push(record);
        }
        Ok(out)
    }

    fn scan(&self, kind: KeyKind, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let records = txn.open_table(tables(kind).0).map_err(backend)?;
        let range = match after {
            Some(a) => records.range((Bound::Excluded(a), Bound::Unbounded)),
            None => records.iter(),
        }
        .map_err(backend)?;
        range.take(limit).map(|entry| decode(entry.map_err(backend)?.1.value())).collect()
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let revision = meta.get(REVISION).map_err(backend)?.map_or(0, |v| v.value());
        Ok(revision)
    }

    fn changes_since(&self, revision: u64, limit: usize) -> Result<Changes, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let log = txn.open_table(CHANGES).map_err(backend)?;
        let issued = txn.open_table(ISSUED).map_err(backend)?;
        let imported = txn.open_table(IMPORTED).map_err(backend)?;
        let mut out = Changes { revision, changes: Vec::new(), more: false };
        for entry in log.range(revision + 1..).map_err(backend)? {
            if out.changes.len() >= limit {
                out.more = true;
                break;
            }
            let (rev, what) = entry.map_err(backend)?;
            for item in what.value().split(|&b| b == b'\n') {
                let (kind, records) = match item.first() {
                    Some(b'i') => (KeyKind::Issued, &issued),
                    Some(b'm') => (KeyKind::Imported, &imported),
                    _ => {
                        return Err(StoreError::Backend(format!(
                            "corrupt change log entry at revision {}",
                            rev.value()
                        )))
                    }
                };
                let key_id = String::from_utf8_lossy(&item[1..]).into_owned();
                let record = records.get(key_id.as_str()).map_err(backend)?.map(|v| decode(v.value())).transpose()?;
                out.changes.push(Change { kind, key_id, record });
            }
            out.revision = rev.value();
        }
        Ok(out)
    }

    fn count_active(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let mut count = 0;
        for def in [ISSUED, IMPORTED] {
            let records = txn.open_table(def).map_err(backend)?;
            for entry in records.iter().map_err(backend)? {
                let (_, v) = entry.map_err(backend)?;
                if decode(v.value())?.status != KeyStatus::Revoked {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    fn ping(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        txn.open_table(META).map_err(backend)?.len().map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_backend_passes_the_store_suite() {
        super::super::conformance::suite(&RedbStore::in_memory().unwrap());
    }

    #[test]
    fn file_backend_passes_the_store_suite_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("talos-redb-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("talos.redb");
        {
            let store = RedbStore::open(&path).unwrap();
            super::super::conformance::suite(&store);
        }
        let reopened = RedbStore::open(&path).unwrap();
        assert!(reopened.revision().unwrap() > 0);
        assert_eq!(reopened.list(KeyKind::Issued, &ListQuery { limit: 10, ..Default::default() }).unwrap().len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_handles_on_one_file_see_each_others_writes() {
        let dir = std::env::temp_dir().join(format!("talos-redb-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shared.redb");
        let writer = RedbStore::open(&path).unwrap();
        let reader = RedbStore::open(&path).unwrap();
        let record = super::super::conformance::record(KeyKind::Issued, "00000000-0000-4000-8000-00000000000a", "a", 1);
        let Inserted::New(revision) = writer.insert(&record).unwrap() else { panic!("a new key") };
        assert_eq!(reader.revision().unwrap(), revision);
        assert_eq!(reader.changes_since(0, 10).unwrap().changes.len(), 1);
        let (_, revision) = reader
            .modify(KeyKind::Issued, &record.key_id, &mut |r| {
                r.name = "by the other handle".into();
                Ok(None)
            })
            .unwrap();
        assert_eq!(writer.revision().unwrap(), revision);
        assert_eq!(writer.get(KeyKind::Issued, &record.key_id).unwrap().unwrap().name, "by the other handle");
        drop((writer, reader));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn order_key_sorts_descending() {
        let a = order_key(10, "00000000-0000-4000-8000-00000000000a");
        let b = order_key(10, "00000000-0000-4000-8000-00000000000b");
        let c = order_key(11, "00000000-0000-4000-8000-00000000000a");
        let d = order_key(-5, "00000000-0000-4000-8000-00000000000a");
        assert!(c < b && b < a && a < d);
        assert_eq!(key_id_of_order_key(&a), "00000000-0000-4000-8000-00000000000a");
    }
}
