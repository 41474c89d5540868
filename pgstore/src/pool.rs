//! A small blocking connection pool: a `Mutex<Vec<Client>>` of idle connections, a count of open
//! ones and a `Condvar` for callers waiting on a full pool.
//!
//! Why not r2d2 (with `r2d2_postgres`), the usual synchronous pool: it has no cap on idle
//! connections (Go's `max_idle_conns`), its checkout against a database that is down waits the
//! whole `connection_timeout` while a background thread retries instead of failing at once (the
//! admin then answers 503 seconds late), and it brings a scheduler thread pool of its own and
//! logs through `log`. What talos needs fits in this file: a size limit, an idle cap, lifetime
//! and idleness limits applied when a connection is next taken or given back (no reaper thread),
//! and a round-trip check of a connection that sat idle long enough to have been cut.
//!
//! It does not retry anything: a query that fails on a broken connection fails the caller's
//! operation (the connection is then discarded), because a write cannot be safely replayed.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::store::StoreError;
use postgres::{Client, Config, NoTls};

use crate::dsn::PoolSettings;
use crate::error::connect_error;

/// How long a caller waits for a connection when all `max_conns` are in use.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection idle at least this long gets a round trip before it is handed out: the server,
/// a proxy or a failover may have closed it, and a sync client only notices on its next use.
const VALIDATE_AFTER_IDLE: Duration = Duration::from_secs(1);
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Pool {
    config: Config,
    settings: PoolSettings,
    acquire_timeout: Duration,
    state: Mutex<State>,
    returned: Condvar,
}

struct State {
    /// Most recently returned last: taken from the end, so the warmest connection is reused and
    /// the others age out.
    idle: Vec<Idle>,
    /// Checked-out plus idle connections, and ones being opened.
    open: usize,
}

struct Idle {
    client: Client,
    born: Instant,
    since: Instant,
}

/// A checked-out connection; dropping it gives it back (or closes it).
pub(crate) struct Conn<'p> {
    pool: &'p Pool,
    client: Option<Client>,
    born: Instant,
}

impl Pool {
    /// A pool that opens `settings.min_conns` connections now, and at least one, so that a
    /// wrong host, database or credential fails here with the driver's reason.
    pub(crate) fn open(config: Config, settings: PoolSettings) -> Result<Self, StoreError> {
        let pool = Self {
            config,
            settings,
            acquire_timeout: ACQUIRE_TIMEOUT,
            state: Mutex::new(State { idle: Vec::new(), open: 0 }),
            returned: Condvar::new(),
        };
        let warm = pool.settings.min_conns.max(1);
        let conns = (0..warm).map(|_| pool.get()).collect::<Result<Vec<_>, _>>()?;
        drop(conns);
        Ok(pool)
    }

    pub(crate) fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// A new connection outside the pool (the listener's, which it keeps for good).
    pub(crate) fn connect(&self) -> Result<Client, StoreError> {
        self.config.connect(NoTls).map_err(|e| connect_error(&self.config, &e))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock, so a poisoned one still holds consistent counts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn outlived(&self, born: Instant, now: Instant) -> bool {
        self.settings.max_conn_lifetime.is_some_and(|max| now.duration_since(born) >= max)
    }

    /// Takes an idle connection, or opens one while under `max_conns`, or waits for one.
    pub(crate) fn get(&self) -> Result<Conn<'_>, StoreError> {
        let deadline = Instant::now() + self.acquire_timeout;
        let mut state = self.lock();
        loop {
            if let Some(idle) = state.idle.pop() {
                let now = Instant::now();
                let idle_for = now.duration_since(idle.since);
                let too_idle = state.open > self.settings.min_conns
                    && self.settings.max_conn_idle_time.is_some_and(|max| idle_for >= max);
                if too_idle || self.outlived(idle.born, now) || idle.client.is_closed() {
                    state.open -= 1;
                    drop(state);
                    drop(idle); // closes the connection, outside the lock
                    state = self.lock();
                    continue;
                }
                drop(state);
                let mut conn = Conn { pool: self, client: Some(idle.client), born: idle.born };
                if idle_for < VALIDATE_AFTER_IDLE || conn.is_valid(VALIDATE_TIMEOUT).is_ok() {
                    return Ok(conn);
                }
                conn.discard();
                state = self.lock();
                continue;
            }
            if state.open < self.settings.max_conns {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(client) => Ok(Conn { pool: self, client: Some(client), born: Instant::now() }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "no database connection free within {:.1}s (all {} in use; raise max_conns in db.dsn)",
                    self.acquire_timeout.as_secs_f32(),
                    self.settings.max_conns
                )));
            }
            state = self.returned.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn give_back(&self, client: Client, born: Instant) {
        let now = Instant::now();
        let mut state = self.lock();
        if client.is_closed() || self.outlived(born, now) || state.idle.len() >= self.settings.max_idle_conns {
            state.open -= 1;
            drop(state);
            drop(client);
        } else {
            state.idle.push(Idle { client, born, since: now });
            drop(state);
        }
        self.returned.notify_one();
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.open, state.idle.len())
    }
}

impl Conn<'_> {
    /// Closes the connection instead of returning it.
    fn discard(mut self) {
        if let Some(client) = self.client.take() {
            self.pool.lock().open -= 1;
            drop(client);
            self.pool.returned.notify_one();
        }
    }
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a checked-out connection holds its client until dropped")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a checked-out connection holds its client until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.give_back(client, self.born);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against the test PostgreSQL (see `tests/it/support.rs`); the pool needs no schema.
    use std::str::FromStr;

    use super::*;

    fn pool(settings: PoolSettings) -> Pool {
        let dsn =
            std::env::var("TALOS_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let config = Config::from_str(&dsn).expect("the test DSN parses");
        Pool::open(config, settings).unwrap_or_else(|e| panic!("the test PostgreSQL must be reachable at {dsn}: {e}"))
    }

    #[test]
    fn waits_for_a_connection_when_full_and_reuses_it() {
        let pool = pool(PoolSettings { max_conns: 1, ..PoolSettings::default() });
        assert_eq!(pool.counts(), (1, 1));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10 {
                        let mut conn = pool.get().unwrap();
                        conn.simple_query("SELECT 1").unwrap();
                    }
                });
            }
        });
        assert_eq!(pool.counts(), (1, 1));
    }

    #[test]
    fn idle_cap_and_lifetime_close_connections() {
        let pool = pool(PoolSettings { max_conns: 3, max_idle_conns: 1, ..PoolSettings::default() });
        let (a, b, c) = (pool.get().unwrap(), pool.get().unwrap(), pool.get().unwrap());
        assert_eq!(pool.counts(), (3, 0));
        drop((a, b, c));
        assert_eq!(pool.counts(), (1, 1));

        let pool = self::pool(PoolSettings { max_conn_lifetime: Some(Duration::ZERO), ..PoolSettings::default() });
        assert_eq!(pool.counts(), (0, 0), "a connection past its lifetime is not kept");
        drop(pool.get().unwrap());
        assert_eq!(pool.counts(), (0, 0));
    }

    #[test]
    fn a_closed_connection_is_replaced() {
        let pool = pool(PoolSettings { max_conns: 1, ..PoolSettings::default() });
        {
            let mut conn = pool.get().unwrap();
            let mut killer = pool.connect().unwrap();
            let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
            killer.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
            // The terminated connection fails its next query; the pool then drops it.
            assert!(conn.simple_query("SELECT 1").is_err());
        }
        assert_eq!(pool.counts(), (0, 0));
        pool.get().unwrap().simple_query("SELECT 1").unwrap();
    }

    #[test]
    fn a_full_pool_times_out_with_a_clear_error() {
        let mut pool = pool(PoolSettings { max_conns: 1, ..PoolSettings::default() });
        pool.acquire_timeout = Duration::from_millis(200);
        let _held = pool.get().unwrap();
        let started = Instant::now();
        let Err(err) = pool.get() else { panic!("a second connection from a pool of one") };
        assert!(started.elapsed() >= pool.acquire_timeout);
        assert!(err.to_string().contains("raise max_conns"), "{err}");
    }
}
