//! `last_used_time`, kept off the hot path (talos-api.md §2.3): a verification that succeeds
//! queues its key at most once per key per UTC day (per process), without blocking and without
//! allocating; a background thread writes the queue to the store in batches. When the queue is
//! full, updates are dropped — a last-used time is a hint, never worth slowing a verify.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::clock::{self, Nanos, NANOS_PER_SEC};
use crate::store::Store;
use crate::verify::{LookupId, VerifyEntry};

const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SEC;

pub fn day_of(t: Nanos) -> i64 {
    t.div_euclid(NANOS_PER_DAY)
}

#[derive(Debug)]
pub struct LastUsed {
    queue: Sender<LookupId>,
}

impl LastUsed {
    /// Starts the writer thread.
    pub fn start(store: Arc<dyn Store>, queue_size: usize, flush_size: usize, flush_interval: Duration) -> Arc<Self> {
        let (queue, pending) = crossbeam_channel::bounded(queue_size.max(1));
        let writer = Writer { store, pending, flush_size: flush_size.max(1), flush_interval };
        let spawned = std::thread::Builder::new().name("talos-last-used".into()).spawn(move || writer.run());
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the last-used writer; last_used_time will not be updated");
        }
        Arc::new(LastUsed { queue })
    }

    /// Records a successful verification of `entry` at `now`. Lock-free and allocation-free.
    pub fn touch(&self, entry: &VerifyEntry, now: Nanos) {
        let today = day_of(now);
        let seen = entry.last_used_day.load(Ordering::Relaxed);
        if seen >= today {
            return;
        }
        // One thread per key and day wins the right to queue it.
        if entry.last_used_day.compare_exchange(seen, today, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.queue.try_send(entry.id) {
            // Dropped: the next verification tomorrow (or after a restart) tries again.
            entry.last_used_day.store(seen, Ordering::Relaxed);
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    pending: Receiver<LookupId>,
    flush_size: usize,
    flush_interval: Duration,
}

impl Writer {
    fn run(self) {
        let mut batch = Vec::with_capacity(self.flush_size);
        let mut deadline = Instant::now() + self.flush_interval;
        loop {
            match self.pending.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(id) => batch.push(id),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush(&mut batch);
                    return;
                }
            }
            if batch.len() >= self.flush_size || Instant::now() >= deadline {
                self.flush(&mut batch);
                deadline = Instant::now() + self.flush_interval;
            }
        }
    }

    /// One store transaction for the whole batch, which logs no change (see
    /// `Store::record_last_used`), so recording uses never makes a snapshot refresh.
    fn flush(&self, batch: &mut Vec<LookupId>) {
        if batch.is_empty() {
            return;
        }
        let keys: Vec<(crate::model::KeyKind, String)> = batch.drain(..).map(|id| (id.kind(), id.key_id())).collect();
        if let Err(e) = self.store.record_last_used(&keys, clock::now()) {
            tracing::warn!(error = %e, keys = keys.len(), "cannot record last_used_time");
        }
    }
}
