//! A [`Store`] decorator that times every operation into [`crate::metrics::StoreMetrics`].
//!
//! Only failures of the store itself (`Backend`, `Unavailable`) count as errors; a missing key,
//! a duplicate or a refused change is an answer, not a failure.

use std::sync::Arc;
use std::time::Instant;

use super::{Changes, Inserted, ListQuery, Store, StoreError};
use crate::clock::Nanos;
use crate::error::ApiError;
use crate::metrics::{Metrics, StoreOp};
use crate::model::{KeyKind, KeyRecord};

pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn timed<T>(&self, op: StoreOp, call: impl FnOnce(&dyn Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call(&*self.inner);
        let failed = matches!(result, Err(StoreError::Backend(_) | StoreError::Unavailable(_)));
        self.metrics.store.record(op, started.elapsed(), failed);
        result
    }
}

impl Store for MeteredStore {
    fn insert(&self, record: &KeyRecord) -> Result<Inserted, StoreError> {
        self.timed(StoreOp::Insert, |s| s.insert(record))
    }

    fn get(&self, kind: KeyKind, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.timed(StoreOp::Get, |s| s.get(kind, key_id))
    }

    fn modify(
        &self,
        kind: KeyKind,
        key_id: &str,
        change: &mut dyn FnMut(&mut KeyRecord) -> Result<Option<KeyRecord>, ApiError>,
    ) -> Result<(KeyRecord, u64), StoreError> {
        self.timed(StoreOp::Modify, |s| s.modify(kind, key_id, change))
    }

    fn insert_batch(&self, records: &[KeyRecord]) -> Result<(Vec<bool>, u64), StoreError> {
        self.timed(StoreOp::InsertBatch, |s| s.insert_batch(records))
    }

    fn delete(&self, kind: KeyKind, key_id: &str) -> Result<u64, StoreError> {
        self.timed(StoreOp::Delete, |s| s.delete(kind, key_id))
    }

    fn list(&self, kind: KeyKind, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        self.timed(StoreOp::List, |s| s.list(kind, query))
    }

    fn scan(&self, kind: KeyKind, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, StoreError> {
        self.timed(StoreOp::Scan, |s| s.scan(kind, after, limit))
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.timed(StoreOp::Revision, |s| s.revision())
    }

    fn changes_since(&self, revision: u64, limit: usize) -> Result<Changes, StoreError> {
        self.timed(StoreOp::ChangesSince, |s| s.changes_since(revision, limit))
    }

    fn count_active(&self) -> Result<u64, StoreError> {
        self.timed(StoreOp::CountActive, |s| s.count_active())
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.timed(StoreOp::Ping, |s| s.ping())
    }

    fn record_last_used(&self, keys: &[(KeyKind, String)], time: Nanos) -> Result<(), StoreError> {
        self.timed(StoreOp::RecordLastUsed, |s| s.record_last_used(keys, time))
    }
}
