//! The verification snapshot: an immutable map from lookup id to [`VerifyEntry`], published
//! through `arc-swap` by one refresher thread and read lock-free by every data-plane worker.
//!
//! A snapshot is a large shared *base* plus a small *delta* of changes since the base was built.
//! Publishing a change copies only the delta, so a publish costs O(changes), not O(keys); when
//! the delta grows past a fraction of the base, the refresher folds it into a new base (on its own
//! thread, never on a reader's). Snapshots are never mutated once published.
//!
//! The refresher reads the store's change log from the revision it holds. It wakes on its poll
//! interval, or at once when [`SnapshotCell::wake`] is called (the admin plane calls it after each
//! commit in `talos serve`), and [`SnapshotCell::wait_for`] lets a writer wait until its revision is
//! visible.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::clock;
use crate::key::parse_hex32;
use crate::model::KeyKind;
use crate::store::{Change, Store, StoreError};
use crate::verify::{Lookup, LookupId, Verifier, VerifyEntry};

/// Change-log entries read per store round trip.
const CHANGE_BATCH: usize = 10_000;
/// Records read per batch on a cold load.
const LOAD_BATCH: usize = 10_000;
/// Threads a cold load builds entries on, at most, and the fewest records worth a thread.
const MAX_LOAD_THREADS: usize = 16;
const MIN_PER_LOAD_THREAD: usize = 500;
/// The delta is folded into the base once it exceeds this many entries or a quarter of the base.
const MIN_FOLD: usize = 4_096;

/// Issued keys are indexed by their base58 identifier, as presented in the key, so a verify
/// finds the entry without decoding base58. Identifiers and imported-key digests come from
/// client input: both maps keep a keyed (DoS-resistant) hasher.
type IssuedMap<V> = HashMap<Box<[u8]>, V, RandomState>;
type ImportedMap<V> = HashMap<[u8; 32], V, RandomState>;

#[derive(Clone)]
struct Tables<V> {
    issued: IssuedMap<V>,
    imported: ImportedMap<V>,
}

impl<V> Default for Tables<V> {
    fn default() -> Self {
        Self { issued: IssuedMap::default(), imported: ImportedMap::default() }
    }
}

impl<V> Tables<V> {
    fn len(&self) -> usize {
        self.issued.len() + self.imported.len()
    }
}

/// One immutable view of every key.
pub struct Snapshot {
    revision: u64,
    base: Arc<Tables<Arc<VerifyEntry>>>,
    /// `None` marks a key deleted since the base was built.
    delta: Tables<Option<Arc<VerifyEntry>>>,
}

impl Snapshot {
    fn empty() -> Self {
        Snapshot { revision: 0, base: Arc::default(), delta: Tables::default() }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        // Approximate while a delta is pending; exact after a fold.
        self.base.len() + self.delta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An issued key by its identifier; lock-free and allocation-free.
    pub fn issued(&self, identifier: &[u8]) -> Option<&VerifyEntry> {
        match self.delta.issued.get(identifier) {
            Some(changed) => changed.as_deref(),
            None => self.base.issued.get(identifier).map(|e| &**e),
        }
    }

    /// An imported key by its digest; lock-free and allocation-free.
    pub fn imported(&self, digest: &[u8; 32]) -> Option<&VerifyEntry> {
        match self.delta.imported.get(digest) {
            Some(changed) => changed.as_deref(),
            None => self.base.imported.get(digest).map(|e| &**e),
        }
    }

    /// A new snapshot with `changes` applied, folding the delta into the base when it is large.
    fn apply(&self, revision: u64, changes: &[Change], verifier: &Verifier) -> Snapshot {
        let mut delta = self.delta.clone();
        for change in changes {
            let entry = change.record.as_ref().map(|r| Arc::new(VerifyEntry::from_record(r, verifier)));
            match change.kind {
                KeyKind::Issued => match entry.as_ref().and_then(|e| e.identifier()) {
                    Some(identifier) => {
                        delta.issued.insert(identifier.into_bytes().into(), entry);
                    }
                    // Issued keys are revoked, never deleted: a record is always there.
                    None => tracing::warn!(key_id = %change.key_id, "issued key without a record in the change log"),
                },
                KeyKind::Imported => {
                    if let Some(digest) = parse_hex32(&change.key_id) {
                        delta.imported.insert(digest, entry);
                    }
                }
            }
        }
        if delta.len() <= MIN_FOLD.max(self.base.len() / 4) {
            return Snapshot { revision, base: self.base.clone(), delta };
        }
        let mut base = (*self.base).clone();
        for (k, v) in delta.issued {
            match v {
                Some(e) => base.issued.insert(k, e),
                None => base.issued.remove(&k),
            };
        }
        for (k, v) in delta.imported {
            match v {
                Some(e) => base.imported.insert(k, e),
                None => base.imported.remove(&k),
            };
        }
        Snapshot { revision, base: Arc::new(base), delta: Tables::default() }
    }
}

impl Lookup for Snapshot {
    /// Imported keys only: issued keys are indexed by identifier ([`Lookup::by_identifier`]),
    /// and an issued key absent from that index is absent from the snapshot.
    fn by_id(&self, id: LookupId) -> Option<&VerifyEntry> {
        match id {
            LookupId::Issued(_) => None,
            LookupId::Imported(digest) => self.imported(&digest),
        }
    }

    fn by_identifier(&self, identifier: &[u8]) -> Option<&VerifyEntry> {
        self.issued(identifier)
    }

    fn indexes_identifiers(&self) -> bool {
        true
    }
}

/// Where the current snapshot lives, shared by the refresher, the readers and the writers.
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    published: Mutex<u64>,
    published_changed: Condvar,
    wake: Sender<()>,
    /// When the refresher last read the store successfully.
    last_refresh: AtomicI64,
    /// Duration of the refreshes that published a new snapshot.
    refresh_latency: crate::metrics::Histogram,
    refresh_failures: std::sync::atomic::AtomicU64,
}

impl SnapshotCell {
    /// The current snapshot; lock-free and allocation-free.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Asks the refresher to read the store now.
    pub fn wake(&self) {
        // A full channel already holds a wake-up, which is all we need.
        let _ = self.wake.try_send(());
    }

    /// Wakes the refresher and waits until a snapshot at `revision` or later is published.
    /// Returns whether it was within `timeout`.
    pub fn wait_for(&self, revision: u64, timeout: Duration) -> bool {
        self.wake();
        let published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let (published, result) = self
            .published_changed
            .wait_timeout_while(published, timeout, |p| *p < revision)
            .unwrap_or_else(|e| e.into_inner());
        drop(published);
        !result.timed_out()
    }

    /// Time since the refresher last read the store successfully.
    pub fn age(&self) -> Duration {
        let nanos = clock::now().saturating_sub(self.last_refresh.load(Ordering::Relaxed));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    }

    /// Duration of the refreshes that found changes and published them.
    pub fn refresh_latency(&self) -> &crate::metrics::Histogram {
        &self.refresh_latency
    }

    /// Refreshes that failed (the store was unreachable or erred).
    pub fn refresh_failures(&self) -> u64 {
        self.refresh_failures.load(Ordering::Relaxed)
    }

    fn publish(&self, snapshot: Snapshot) {
        let revision = snapshot.revision;
        self.current.store(Arc::new(snapshot));
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = revision;
        self.published_changed.notify_all();
    }
}

/// Loads the whole store into a first snapshot, then starts the refresher thread.
pub fn start(store: Arc<dyn Store>, verifier: Verifier, interval: Duration) -> Result<Arc<SnapshotCell>, StoreError> {
    let (wake, woken) = crossbeam_channel::bounded(1);
    let cell = Arc::new(SnapshotCell {
        current: ArcSwap::from_pointee(Snapshot::empty()),
        published: Mutex::new(0),
        published_changed: Condvar::new(),
        wake,
        last_refresh: AtomicI64::new(clock::now()),
        refresh_latency: Default::default(),
        refresh_failures: Default::default(),
    });
    let first = cold_load(&*store, &verifier)?;
    tracing::info!(keys = first.len(), revision = first.revision, "snapshot loaded");
    cell.publish(first);
    let refresher = Refresher { store, verifier, cell: cell.clone(), woken, interval };
    std::thread::Builder::new()
        .name("talos-snapshot".into())
        .spawn(move || refresher.run())
        .map_err(|e| StoreError::Backend(format!("cannot start the snapshot refresher: {e}")))?;
    Ok(cell)
}

/// Reads every record in bounded batches. The revision is read first, so changes that race the
/// load are replayed by the first refresh (applying a change twice is harmless).
fn cold_load(store: &dyn Store, verifier: &Verifier) -> Result<Snapshot, StoreError> {
    let revision = store.revision()?;
    let mut base = Tables::default();
    for kind in [KeyKind::Issued, KeyKind::Imported] {
        let mut after: Option<String> = None;
        loop {
            let batch = store.scan(kind, after.as_deref(), LOAD_BATCH)?;
            for (record, entry) in batch.iter().zip(build_entries(&batch, verifier)) {
                match kind {
                    KeyKind::Issued => {
                        if let Some(identifier) = entry.identifier() {
                            base.issued.insert(identifier.into_bytes().into(), entry);
                        }
                    }
                    KeyKind::Imported => {
                        if let Some(digest) = parse_hex32(&record.key_id) {
                            base.imported.insert(digest, entry);
                        }
                    }
                }
            }
            if batch.len() < LOAD_BATCH {
                break;
            }
            after = batch.last().map(|r| r.key_id.clone());
        }
    }
    Ok(Snapshot { revision, base: Arc::new(base), delta: Tables::default() })
}

/// Builds the entries of `records` on every available core: rendering each answer and its
/// checksum under each secret is most of a cold load, and the records are independent.
fn build_entries(records: &[crate::model::KeyRecord], verifier: &Verifier) -> Vec<Arc<VerifyEntry>> {
    let build = |chunk: &[crate::model::KeyRecord]| -> Vec<Arc<VerifyEntry>> {
        chunk.iter().map(|r| Arc::new(VerifyEntry::from_record(r, verifier))).collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_LOAD_THREADS);
    if threads == 1 || records.len() < 2 * MIN_PER_LOAD_THREAD {
        return build(records);
    }
    let chunk = records.len().div_ceil(threads).max(MIN_PER_LOAD_THREAD);
    std::thread::scope(|scope| {
        let parts: Vec<_> = records.chunks(chunk).map(|part| scope.spawn(move || build(part))).collect();
        // A panic while building an entry is a bug; it resurfaces here rather than vanishing.
        parts.into_iter().flat_map(|part| part.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

struct Refresher {
    store: Arc<dyn Store>,
    verifier: Verifier,
    cell: Arc<SnapshotCell>,
    woken: Receiver<()>,
    interval: Duration,
}

impl Refresher {
    fn run(self) {
        loop {
            match self.woken.recv_timeout(self.interval) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if let Err(e) = self.refresh() {
                self.cell.refresh_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "snapshot refresh failed; serving the last snapshot");
            }
        }
    }

    fn refresh(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let current = self.cell.current.load_full();
        let mut next: Option<Snapshot> = None;
        loop {
            let from = next.as_ref().unwrap_or(&current);
            let changes = self.store.changes_since(from.revision, CHANGE_BATCH)?;
            if changes.changes.is_empty() {
                break;
            }
            next = Some(from.apply(changes.revision, &changes.changes, &self.verifier));
            if !changes.more {
                break;
            }
        }
        self.cell.last_refresh.store(clock::now(), Ordering::Relaxed);
        if let Some(snapshot) = next {
            self.cell.publish(snapshot);
            self.cell.refresh_latency.observe(started.elapsed());
        }
        Ok(())
    }
}

/// For tests and benchmarks: a snapshot built straight from records.
pub fn from_records<'a>(
    records: impl IntoIterator<Item = &'a crate::model::KeyRecord>,
    verifier: &Verifier,
) -> Snapshot {
    let changes: Vec<Change> = records
        .into_iter()
        .map(|r| Change { kind: r.kind, key_id: r.key_id.clone(), record: Some(r.clone()) })
        .collect();
    Snapshot::empty().apply(1, &changes, verifier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::secs;
    use crate::store::conformance::record;
    use crate::store::redb::RedbStore;

    fn verifier() -> Verifier {
        let yaml = "credentials:\n  issuer: http://t\nsecrets:\n  hmac:\n    current: \"snapshot-test-secret-0123456789abcdef\"\n";
        let (config, _) = crate::config::Config::from_yaml_str(yaml, &Vec::<(String, String)>::new()).unwrap();
        Verifier::new(&config).unwrap()
    }

    #[test]
    fn a_cold_load_over_many_threads_finds_every_key() {
        // More than one load batch, and enough per batch for the entries to be built in parallel.
        let count = LOAD_BATCH + 2 * MIN_PER_LOAD_THREAD + 7;
        let now = clock::now();
        let records: Vec<_> = (0..count)
            .map(|i| record(KeyKind::Issued, &uuid::Uuid::from_u128(i as u128 + 1).hyphenated().to_string(), "a", now))
            .collect();
        let store = Arc::new(RedbStore::in_memory().unwrap());
        for chunk in records.chunks(5_000) {
            store.insert_batch(chunk).unwrap();
        }
        let verifier = verifier();
        let cell = start(store, verifier.clone(), Duration::from_secs(3600)).unwrap();
        let snapshot = cell.load();
        assert_eq!(snapshot.len(), count);
        for (i, r) in records.iter().enumerate().step_by(97) {
            let id = uuid::Uuid::parse_str(&r.key_id).unwrap();
            let key = crate::key::generate("ory_ak", secs(now), id, &verifier.keyring);
            let answer = verifier.verify(&key, &[], now, None, &**snapshot);
            let Ok(crate::verify::Answer::Key(entry)) = answer else { panic!("key {i}: {answer:?}") };
            assert_eq!(entry.id, crate::verify::LookupId::Issued(id), "key {i}");
        }
    }

    /// A genuine issued key (right checksum) that the snapshot does not hold is NOT_FOUND, as is
    /// a forged one, while an imported key shaped nothing like an issued one is still found by
    /// its digest: the identifier index's miss ends only the issued route.
    #[test]
    fn an_identifier_the_index_misses_is_not_found() {
        use crate::verify::{Answer, Rejection};
        let now = clock::now();
        let verifier = verifier();
        let held = uuid::Uuid::from_u128(1);
        let imported_raw = "sk-live-imported-0123456789";
        let digest = crate::key::imported_key_id(crate::key::NIL_NID, imported_raw.as_bytes());
        let imported = record(KeyKind::Imported, &crate::key::hex32(&digest), "a", now);
        let records = [record(KeyKind::Issued, &held.hyphenated().to_string(), "a", now), imported];
        let snapshot = from_records(&records, &verifier);
        let key = |id| crate::key::generate("ory_ak", secs(now), id, &verifier.keyring);
        assert!(matches!(verifier.verify(&key(held), &[], now, None, &snapshot), Ok(Answer::Key(_))));
        let absent = key(uuid::Uuid::from_u128(2));
        assert_eq!(verifier.verify(&absent, &[], now, None, &snapshot).err(), Some(Rejection::NotFound));
        let mut forged = absent.clone();
        forged.pop();
        forged.push('z');
        assert_eq!(verifier.verify(&forged, &[], now, None, &snapshot).err(), Some(Rejection::NotFound));
        assert!(matches!(verifier.verify(imported_raw, &[], now, None, &snapshot), Ok(Answer::Key(_))));
    }
}
