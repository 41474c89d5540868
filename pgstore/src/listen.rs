//! The change listener: one thread with its own connection (outside the pool) doing
//! `LISTEN talos_changes`, calling back with the revision each notification carries.
//!
//! Notifications are a wake-up, not the change log: they are lost while the connection is down,
//! so after every reconnect the callback gets the current revision once, and the caller reads
//! the change log from the revision it holds as usual. A burst of notifications that arrive
//! together is one call with the highest revision. The connection is checked with a round trip
//! after [`PING_EVERY`] of silence, so a peer that vanished without closing the socket is noticed.
//!
//! The thread ends soon after its store is dropped. It does not read the change log itself, and
//! it never blocks a writer: PostgreSQL queues notifications for slow listeners.

use std::sync::Weak;
use std::time::{Duration, Instant};

use common::store::StoreError;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

use crate::error::{connect_error, db};

/// The channel every write notifies, with the new revision as the payload.
pub const CHANNEL: &str = "talos_changes";

/// How often the thread looks up from waiting, to notice its store was dropped.
const TICK: Duration = Duration::from_millis(250);
/// Silence after which the connection is checked with a round trip.
const PING_EVERY: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Connects and subscribes now (so a bad DSN or a refused connection is the caller's error),
/// then hands the connection to a new thread.
pub(crate) fn spawn(
    config: Config,
    alive: Weak<()>,
    on_change: impl Fn(u64) + Send + 'static,
) -> Result<(), StoreError> {
    let client = subscribe(&config)?;
    std::thread::Builder::new()
        .name("talos-pg-listen".into())
        .spawn(move || run(&config, client, &alive, on_change))
        .map_err(|e| StoreError::Backend(format!("cannot start the change listener thread: {e}")))?;
    Ok(())
}

fn subscribe(config: &Config) -> Result<Client, StoreError> {
    let mut client = config.connect(NoTls).map_err(|e| connect_error(config, &e))?;
    client.batch_execute(&format!("LISTEN {CHANNEL}")).map_err(db)?;
    Ok(client)
}

fn run(config: &Config, client: Client, alive: &Weak<()>, on_change: impl Fn(u64)) {
    let mut client = Some(client);
    let mut backoff = BACKOFF_MIN;
    let mut heard = Instant::now();
    while alive.strong_count() > 0 {
        let Some(c) = client.as_mut() else {
            match subscribe(config).and_then(|mut c| current_revision(&mut c).map(|rev| (c, rev))) {
                Ok((c, revision)) => {
                    tracing::info!(revision, "change listener reconnected");
                    client = Some(c);
                    backoff = BACKOFF_MIN;
                    heard = Instant::now();
                    on_change(revision);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "change listener cannot reconnect");
                    pause(backoff, alive);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            continue;
        };
        match next_revision(c, &mut heard) {
            Ok(Some(revision)) => on_change(revision),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                client = None;
            }
        }
    }
}

/// Waits up to [`TICK`] for notifications; returns the highest revision among those that came.
fn next_revision(client: &mut Client, heard: &mut Instant) -> Result<Option<u64>, StoreError> {
    let first = client.notifications().timeout_iter(TICK).next().map_err(db)?;
    if let Some(first) = first {
        *heard = Instant::now();
        let mut highest = revision_of(&first);
        // Take whatever else already arrived, without waiting further.
        let mut notifications = client.notifications();
        let mut ready = notifications.iter();
        while let Some(n) = ready.next().map_err(db)? {
            highest = highest.max(revision_of(&n));
        }
        return Ok(highest);
    }
    if client.is_closed() {
        return Err(StoreError::Backend("connection closed".into()));
    }
    if heard.elapsed() >= PING_EVERY {
        client.is_valid(PING_TIMEOUT).map_err(db)?;
        *heard = Instant::now();
    }
    Ok(None)
}

fn revision_of(n: &postgres::Notification) -> Option<u64> {
    let revision = n.payload().parse::<u64>().ok().filter(|_| n.channel() == CHANNEL);
    if revision.is_none() {
        tracing::debug!(channel = n.channel(), payload = n.payload(), "ignoring a notification without a revision");
    }
    revision
}

fn current_revision(client: &mut Client) -> Result<u64, StoreError> {
    let revision: i64 =
        client.query_one("SELECT revision FROM store_revision", &[]).map_err(db)?.try_get(0).map_err(db)?;
    Ok(u64::try_from(revision).unwrap_or(0))
}

/// Sleeps `total`, in ticks, returning early once the store is gone.
fn pause(total: Duration, alive: &Weak<()>) {
    let until = Instant::now() + total;
    while alive.strong_count() > 0 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(TICK));
    }
}
