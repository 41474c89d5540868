//! The PostgreSQL store backend: [`PgStore`] implements [`common::store::Store`] over a shared
//! PostgreSQL database (`db.dsn: postgres://…`), the multi-node deployment of decisions.md §4.
//!
//! It owns the schema (versioned migrations embedded from `migrations/`, see
//! [`PgStore::migrate_up`]), a small blocking connection pool configured from the DSN's query
//! string ([`PoolSettings`]), the store-wide revision and change log, and the `LISTEN/NOTIFY`
//! wake-up ([`PgStore::listen`]). It behaves like `common::store::redb` in every respect the
//! conformance suite checks.
//!
//! It lives outside `common` because the driver runs on tokio, and `common` links no async
//! runtime (the data-plane crate `engine` must never link tokio). The `Store` trait is
//! synchronous, so this crate uses the synchronous `postgres` client, which drives
//! `tokio-postgres` on a small current-thread runtime per connection; no tokio appears in its
//! API. It does not speak TLS yet (`sslmode=require` fails to connect; `disable` or the default
//! `prefer` connect in plain text), does not retry failed writes, and does not decide when to
//! migrate: the binary does (`talos migrate up`, and `serve` on an empty database).
//!
//! # Revisions
//!
//! Every write transaction (READ COMMITTED) takes its revision as its last statement before
//! COMMIT, by incrementing the single row of `store_revision`. The row lock is held until the
//! transaction ends, so a second writer's increment waits for the first to commit (or roll back,
//! reusing the number) and then reads the committed value. Revisions are therefore gap-free and
//! commit in increasing order: any snapshot sees revisions `1..=r` and nothing above, and a reader
//! of [`Store::changes_since`] that advanced to `r` can never later find a change below `r`.
//! Writers serialise only for that last statement and the commit; their other locks (the key
//! rows) are always taken before the counter's, so they cannot deadlock on it.

mod dsn;
mod error;
mod listen;
mod migrate;
mod pool;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::clock::Nanos;
use common::error::ApiError;
use common::model::{KeyKind, KeyRecord, KeyStatus};
use common::store::{Change, Changes, Inserted, ListQuery, Store, StoreError};
use postgres::types::{Json, ToSql, Type};
use postgres::{Config, IsolationLevel, Row, Transaction};
use uuid::Uuid;

pub use crate::dsn::PoolSettings;
pub use crate::listen::CHANNEL;
pub use crate::migrate::{Migration, MIGRATIONS};

use crate::error::db;
use crate::pool::{Conn, Pool};

/// The tenant of every row. talos is single-tenant, with Ory's nil network id (talos-api.md §1);
/// the column keeps the schema ready for more.
static NID: Uuid = Uuid::nil();

/// Driver defaults talos changes unless the DSN sets them: fail a connection attempt in seconds
/// rather than the OS's minutes, and notice a peer that vanished within about a minute instead
/// of TCP's default two hours of keepalive idleness.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVES_RETRIES: u32 = 3;

/// The PostgreSQL store. Cheap to share behind an `Arc`; every call takes a pooled connection.
pub struct PgStore {
    pool: Pool,
    /// `NOTIFY` after each write; false on CockroachDB, which has no `LISTEN/NOTIFY`.
    notify: bool,
    /// Listener threads hold a weak reference and stop once the store is dropped.
    alive: Arc<()>,
}

impl std::fmt::Debug for PgStore {
    /// Never the DSN: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("pool", self.pool.settings()).field("notify", &self.notify).finish()
    }
}

impl PgStore {
    /// Connects to `dsn` (`postgres://` or `postgresql://`, as the config loader hands it over),
    /// reading the pool settings from its query string ([`PoolSettings`]) and passing the rest to
    /// the driver. Opens a first connection now, so a wrong host, database or credential fails
    /// here. Does not migrate; see [`PgStore::is_migrated`].
    pub fn connect(dsn: &str) -> Result<PgStore, StoreError> {
        let parsed = dsn::parse(dsn).map_err(|e| StoreError::Backend(format!("db.dsn: {e}")))?;
        // The driver's parse errors name an option, never its value or the password.
        let mut config = Config::from_str(&parsed.driver)
            .map_err(|e| StoreError::Backend(format!("db.dsn: {}", error::chain(&e))))?;
        let given = |name: &str| parsed.driver_params.iter().any(|p| p == name);
        if !given("connect_timeout") {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if !given("keepalives_idle") {
            config.keepalives_idle(KEEPALIVES_IDLE);
        }
        if !given("keepalives_interval") {
            config.keepalives_interval(KEEPALIVES_INTERVAL);
        }
        if !given("keepalives_retries") {
            config.keepalives_retries(KEEPALIVES_RETRIES);
        }
        if !given("application_name") {
            config.application_name("talos");
        }
        config.notice_callback(|notice| tracing::debug!(notice = %notice, "postgres notice"));
        let pool = Pool::open(config, parsed.pool)?;
        let version: String = pool.get()?.query_one("SELECT version()", &[]).map_err(db)?.try_get(0).map_err(db)?;
        let notify = !version.contains("CockroachDB");
        Ok(PgStore { pool, notify, alive: Arc::new(()) })
    }

    /// The pool settings in force (from the DSN, or the defaults).
    pub fn pool_settings(&self) -> &PoolSettings {
        self.pool.settings()
    }

    /// Applies every pending migration, each in its own transaction, under an advisory lock so
    /// that concurrent callers (several processes starting at once) take turns. Returns the
    /// versions this call applied; empty when the schema was current.
    pub fn migrate_up(&self) -> Result<Vec<u32>, StoreError> {
        let mut conn = self.pool.get()?;
        migrate::up(&mut conn)
    }

    /// Every migration this build knows, `(version, name, applied)`, in order, followed by any
    /// applied version it does not know (a newer talos migrated the database), named `unknown`.
    pub fn migration_status(&self) -> Result<Vec<(u32, String, bool)>, StoreError> {
        let mut conn = self.pool.get()?;
        migrate::status(&mut conn)
    }

    /// Whether every migration this build knows is applied. A data plane checks this at start
    /// and refuses an unmigrated database with a clear error instead of failing every query.
    pub fn is_migrated(&self) -> Result<bool, StoreError> {
        Ok(self.migration_status()?.iter().all(|(_, _, applied)| *applied))
    }

    /// Starts a thread that calls `on_change(revision)` whenever a write commits (a
    /// `NOTIFY talos_changes, '<revision>'`, possibly from another process), and once with the
    /// current revision after each reconnect, since notifications sent while it was disconnected
    /// are lost. It uses a connection of its own, reconnecting with backoff (100 ms doubling to
    /// 5 s), and stops soon after this store is dropped. Connects before returning, so an error
    /// here means no listener runs.
    ///
    /// Notifications are database-wide: another talos schema in the same database wakes this
    /// listener too, which costs only a needless refresh.
    pub fn listen(&self, on_change: impl Fn(u64) + Send + 'static) -> Result<(), StoreError> {
        if !self.notify {
            return Err(StoreError::Backend(
                "this database (CockroachDB) has no LISTEN/NOTIFY; refresh by polling".into(),
            ));
        }
        listen::spawn(self.pool.config().clone(), Arc::downgrade(&self.alive), on_change)
    }

    fn conn(&self) -> Result<Conn<'_>, StoreError> {
        self.pool.get()
    }

    /// Takes the next revision, logs `changed` under it and queues the notification, inside
    /// `txn`, as its last statement; see the crate docs for why that order matters.
    fn log_changes(&self, txn: &mut Transaction<'_>, changed: &[(KeyKind, &str)]) -> Result<u64, StoreError> {
        let kinds: Vec<&str> = changed.iter().map(|(kind, _)| kind_name(*kind)).collect();
        let ids: Vec<&str> = changed.iter().map(|(_, key_id)| *key_id).collect();
        let sql = if self.notify { LOG_CHANGES_AND_NOTIFY } else { LOG_CHANGES };
        let row = txn
            .query_typed_one(sql, &[(&NID, Type::UUID), (&kinds, Type::TEXT_ARRAY), (&ids, Type::TEXT_ARRAY)])
            .map_err(db)?;
        revision_of(&row, 0)
    }
}

/// The revision bump and change-log insert, one round trip. Data-modifying CTEs all run, in one
/// snapshot; `logged` reads the bumped revision.
const LOG_CHANGES: &str = "WITH bumped AS (
    UPDATE store_revision SET revision = revision + 1 RETURNING revision
), logged AS (
    INSERT INTO change_log (revision, seq, nid, kind, key_id)
    SELECT bumped.revision, c.seq::int, $1, c.kind, c.key_id
    FROM bumped, unnest($2::text[], $3::text[]) WITH ORDINALITY AS c(kind, key_id, seq)
)
SELECT revision FROM bumped";

/// [`LOG_CHANGES`] plus `pg_notify`, which PostgreSQL delivers when (and only if) the
/// transaction commits.
const LOG_CHANGES_AND_NOTIFY: &str = "WITH bumped AS (
    UPDATE store_revision SET revision = revision + 1 RETURNING revision
), logged AS (
    INSERT INTO change_log (revision, seq, nid, kind, key_id)
    SELECT bumped.revision, c.seq::int, $1, c.kind, c.key_id
    FROM bumped, unnest($2::text[], $3::text[]) WITH ORDINALITY AS c(kind, key_id, seq)
)
SELECT bumped.revision FROM bumped, LATERAL pg_notify('talos_changes', bumped.revision::text) AS notified";

/// The changed keys of the first `$3` revisions after `$1`, each with its current record (none
/// for a deleted key), in one statement and so one snapshot.
const CHANGES_SINCE: &str = "WITH revs AS (
    SELECT DISTINCT revision FROM change_log
    WHERE revision > $1 AND nid = $2
    ORDER BY revision
    LIMIT $3
)
SELECT c.revision, c.kind, c.key_id, COALESCE(i.record, m.record)
FROM revs
JOIN change_log c ON c.revision = revs.revision AND c.nid = $2
LEFT JOIN issued_api_keys i ON c.kind = 'issued' AND i.nid = $2 AND i.key_id = c.key_id
LEFT JOIN imported_api_keys m ON c.kind = 'imported' AND m.nid = $2 AND m.key_id = c.key_id
ORDER BY c.revision, c.seq";

fn table(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Issued => "issued_api_keys",
        KeyKind::Imported => "imported_api_keys",
    }
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Issued => "issued",
        KeyKind::Imported => "imported",
    }
}

fn kind_of(name: &str) -> Result<KeyKind, StoreError> {
    match name {
        "issued" => Ok(KeyKind::Issued),
        "imported" => Ok(KeyKind::Imported),
        other => Err(StoreError::Backend(format!("corrupt change log entry: unknown kind {other:?}"))),
    }
}

fn revoked() -> i16 {
    status_number(KeyStatus::Revoked)
}

fn status_number(status: KeyStatus) -> i16 {
    i16::try_from(status.number()).expect("key status numbers are small")
}

/// A write transaction. READ COMMITTED explicitly, whatever the database's default: the
/// revision counter's ordering argument relies on each statement seeing the latest commits.
fn begin<'c>(conn: &'c mut Conn<'_>) -> Result<Transaction<'c>, StoreError> {
    conn.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().map_err(db)
}

fn decode(row: &Row, index: usize) -> Result<KeyRecord, StoreError> {
    row.try_get::<_, Json<KeyRecord>>(index)
        .map(|json| json.0)
        .map_err(|e| StoreError::Backend(format!("corrupt key record: {}", error_text(&e))))
}

fn error_text(e: &postgres::Error) -> String {
    crate::error::chain(e)
}

fn revision_of(row: &Row, index: usize) -> Result<u64, StoreError> {
    let revision: i64 = row.try_get(index).map_err(db)?;
    u64::try_from(revision).map_err(|_| StoreError::Backend(format!("corrupt revision {revision}")))
}

/// A cursor, filter or limit value as PostgreSQL's BIGINT (saturating: nothing real is larger).
fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The record's indexed columns and its JSON, ready to bind.
struct Columns<'a> {
    kind: KeyKind,
    key_id: &'a str,
    create_time: i64,
    expire_time: i64,
    actor_id: &'a str,
    status: i16,
    request_id: Option<&'a str>,
    json: String,
}

impl<'a> Columns<'a> {
    /// Refuses, as a 400, a record PostgreSQL cannot store: text and JSONB cannot hold U+0000,
    /// which JSON (and so the redb backend) allows.
    fn of(record: &'a KeyRecord) -> Result<Self, StoreError> {
        let json = serde_json::to_string(record).expect("a key record serialises");
        if has_escaped_nul(&json) {
            return Err(StoreError::Refused(ApiError::bad_request(
                "text fields must not contain the NUL character (U+0000)",
            )));
        }
        Ok(Columns {
            kind: record.kind,
            key_id: &record.key_id,
            create_time: record.create_time,
            expire_time: record.expire_time,
            actor_id: &record.actor_id,
            status: status_number(record.status),
            request_id: record.request_id.as_deref(),
            json,
        })
    }

    /// `$1` nid, `$2` key id, `$3` create time, `$4` expire time, `$5` actor, `$6` status,
    /// `$7` request id, `$8` the record (text, cast to JSONB in the statement).
    fn params(&self) -> [(&(dyn ToSql + Sync), Type); 8] {
        [
            (&NID, Type::UUID),
            (&self.key_id, Type::TEXT),
            (&self.create_time, Type::INT8),
            (&self.expire_time, Type::INT8),
            (&self.actor_id, Type::TEXT),
            (&self.status, Type::INT2),
            (&self.request_id, Type::TEXT),
            (&self.json, Type::TEXT),
        ]
    }
}

/// Whether serde_json's output holds an escaped NUL (`\u0000`), skipping escaped backslashes.
fn has_escaped_nul(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// A statement with its parameters, built clause by clause.
struct Query<'a> {
    sql: String,
    params: Vec<(&'a (dyn ToSql + Sync), Type)>,
}

impl<'a> Query<'a> {
    /// Adds a parameter; returns its placeholder (`$n`).
    fn bind(&mut self, value: &'a (dyn ToSql + Sync), ty: Type) -> String {
        self.params.push((value, ty));
        format!("${}", self.params.len())
    }
}

fn insert_sql(kind: KeyKind) -> String {
    format!(
        "INSERT INTO {} (nid, key_id, create_time, expire_time, actor_id, status, request_id, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
         ON CONFLICT DO NOTHING",
        table(kind)
    )
}

impl Store for PgStore {
    fn insert(&self, record: &KeyRecord) -> Result<Inserted, StoreError> {
        let columns = Columns::of(record)?;
        let mut conn = self.conn()?;
        let mut txn = begin(&mut conn)?;
        // ON CONFLICT DO NOTHING waits for a concurrent insert of the same key id or request id
        // to finish; if it committed, nothing is written here and the next statement (a fresh
        // snapshot) sees its row.
        if txn.execute_typed(&insert_sql(record.kind), &columns.params()).map_err(db)? == 0 {
            if let Some(request_id) = &record.request_id {
                let sql = format!("SELECT record FROM {} WHERE nid = $1 AND request_id = $2", table(record.kind));
                let existing =
                    txn.query_typed_opt(&sql, &[(&NID, Type::UUID), (request_id, Type::TEXT)]).map_err(db)?;
                if let Some(row) = existing {
                    return Ok(Inserted::Existing(Box::new(decode(&row, 0)?)));
                }
            }
            return Err(StoreError::Duplicate);
        }
        let revision = self.log_changes(&mut txn, &[(record.kind, &record.key_id)])?;
        txn.commit().map_err(db)?;
        Ok(Inserted::New(revision))
    }

    fn get(&self, kind: KeyKind, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT record FROM {} WHERE nid = $1 AND key_id = $2", table(kind));
        let row = self.conn()?.query_typed_opt(&sql, &[(&NID, Type::UUID), (&key_id, Type::TEXT)]).map_err(db)?;
        row.map(|row| decode(&row, 0)).transpose()
    }

    fn modify(
        &self,
        kind: KeyKind,
        key_id: &str,
        change: &mut dyn FnMut(&mut KeyRecord) -> Result<Option<KeyRecord>, ApiError>,
    ) -> Result<(KeyRecord, u64), StoreError> {
        let mut conn = self.conn()?;
        // Dropping `txn` without commit rolls it back: a refusal or a clash writes nothing.
        let mut txn = begin(&mut conn)?;
        let sql = format!("SELECT record FROM {} WHERE nid = $1 AND key_id = $2 FOR UPDATE", table(kind));
        let Some(row) = txn.query_typed_opt(&sql, &[(&NID, Type::UUID), (&key_id, Type::TEXT)]).map_err(db)? else {
            return Err(StoreError::NotFound);
        };
        let mut record = decode(&row, 0)?;
        let added = change(&mut record).map_err(StoreError::Refused)?;
        // The record stays under the key id it was read by, as in the redb backend.
        let mut columns = Columns::of(&record)?;
        columns.key_id = key_id;
        let sql = format!(
            "UPDATE {} SET create_time = $3, expire_time = $4, actor_id = $5, status = $6, request_id = $7,
             record = $8::jsonb WHERE nid = $1 AND key_id = $2",
            table(kind)
        );
        txn.execute_typed(&sql, &columns.params()).map_err(db)?;
        let mut changed = vec![(kind, key_id)];
        if let Some(new) = &added {
            let mut columns = Columns::of(new)?;
            columns.kind = kind;
            if txn.execute_typed(&insert_sql(kind), &columns.params()).map_err(db)? == 0 {
                return Err(StoreError::Duplicate);
            }
            changed.push((kind, &new.key_id));
        }
        let revision = self.log_changes(&mut txn, &changed)?;
        txn.commit().map_err(db)?;
        Ok((record, revision))
    }

    fn record_last_used(&self, keys: &[(KeyKind, String)], time: Nanos) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let mut txn = begin(&mut conn)?;
        for kind in [KeyKind::Issued, KeyKind::Imported] {
            let ids: Vec<&str> = keys.iter().filter(|(k, _)| *k == kind).map(|(_, id)| id.as_str()).collect();
            if ids.is_empty() {
                continue;
            }
            // No revision, no change log: see the trait.
            let sql = format!(
                "UPDATE {} SET record = jsonb_set(record, '{{last_used_time}}', to_jsonb($3::bigint))
                 WHERE nid = $1 AND key_id = ANY($2)
                   AND COALESCE((record->>'last_used_time')::bigint, -9223372036854775808) < $3",
                table(kind)
            );
            txn.execute_typed(&sql, &[(&NID, Type::UUID), (&ids, Type::TEXT_ARRAY), (&time, Type::INT8)])
                .map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    fn insert_batch(&self, batch: &[KeyRecord]) -> Result<(Vec<bool>, u64), StoreError> {
        let columns = batch.iter().map(Columns::of).collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.conn()?;
        let mut txn = begin(&mut conn)?;
        let mut written: HashSet<(KeyKind, String)> = HashSet::new();
        for kind in [KeyKind::Issued, KeyKind::Imported] {
            let rows: Vec<&Columns<'_>> = columns.iter().filter(|c| c.kind == kind).collect();
            if rows.is_empty() {
                continue;
            }
            let key_ids: Vec<&str> = rows.iter().map(|c| c.key_id).collect();
            let create_times: Vec<i64> = rows.iter().map(|c| c.create_time).collect();
            let expire_times: Vec<i64> = rows.iter().map(|c| c.expire_time).collect();
            let actor_ids: Vec<&str> = rows.iter().map(|c| c.actor_id).collect();
            let statuses: Vec<i16> = rows.iter().map(|c| c.status).collect();
            let request_ids: Vec<Option<&str>> = rows.iter().map(|c| c.request_id).collect();
            let records: Vec<&str> = rows.iter().map(|c| c.json.as_str()).collect();
            // One statement per table. Rows go in key-id order, so two overlapping batches lock
            // index entries in the same order and cannot deadlock; among repeats of a key id
            // within the batch the first wins, as in the redb backend.
            let sql = format!(
                "INSERT INTO {} (nid, key_id, create_time, expire_time, actor_id, status, request_id, record)
                 SELECT $1, k, c, e, a, s, r, j::jsonb
                 FROM unnest($2::text[], $3::int8[], $4::int8[], $5::text[], $6::int2[], $7::text[], $8::text[])
                      WITH ORDINALITY AS u(k, c, e, a, s, r, j, n)
                 ORDER BY k, n
                 ON CONFLICT DO NOTHING
                 RETURNING key_id",
                table(kind)
            );
            let inserted = txn
                .query_typed(
                    &sql,
                    &[
                        (&NID, Type::UUID),
                        (&key_ids, Type::TEXT_ARRAY),
                        (&create_times, Type::INT8_ARRAY),
                        (&expire_times, Type::INT8_ARRAY),
                        (&actor_ids, Type::TEXT_ARRAY),
                        (&statuses, Type::INT2_ARRAY),
                        (&request_ids, Type::TEXT_ARRAY),
                        (&records, Type::TEXT_ARRAY),
                    ],
                )
                .map_err(db)?;
            for row in inserted {
                written.insert((kind, row.try_get::<_, String>(0).map_err(db)?));
            }
        }
        let mut inserted = Vec::with_capacity(batch.len());
        let mut logged: Vec<(KeyKind, &str)> = Vec::new();
        for record in batch {
            // Removing marks the first of repeated key ids as the inserted one.
            let new = written.remove(&(record.kind, record.key_id.clone()));
            inserted.push(new);
            if new {
                logged.push((record.kind, &record.key_id));
            }
        }
        if logged.is_empty() {
            drop(txn);
            drop(conn);
            return Ok((inserted, self.revision()?));
        }
        let revision = self.log_changes(&mut txn, &logged)?;
        txn.commit().map_err(db)?;
        Ok((inserted, revision))
    }

    fn delete(&self, kind: KeyKind, key_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let mut txn = begin(&mut conn)?;
        let sql = format!("DELETE FROM {} WHERE nid = $1 AND key_id = $2", table(kind));
        if txn.execute_typed(&sql, &[(&NID, Type::UUID), (&key_id, Type::TEXT)]).map_err(db)? == 0 {
            return Err(StoreError::NotFound);
        }
        let revision = self.log_changes(&mut txn, &[(kind, key_id)])?;
        txn.commit().map_err(db)?;
        Ok(revision)
    }

    fn list(&self, kind: KeyKind, query: &ListQuery) -> Result<Vec<KeyRecord>, StoreError> {
        let limit = bigint(query.limit as u64);
        let revoked = revoked();
        let mut q = Query { sql: format!("SELECT record FROM {} WHERE nid = $1", table(kind)), params: Vec::new() };
        q.params.push((&NID, Type::UUID));
        if let Some(after) = &query.after {
            // Strictly after the cursor in `create_time DESC, key_id DESC` order.
            let (time, key_id) = (q.bind(&after.create_time, Type::INT8), q.bind(&after.key_id, Type::TEXT));
            q.sql.push_str(&format!(" AND (create_time, key_id) < ({time}, {key_id})"));
        }
        if let Some(actor_id) = &query.actor_id {
            let actor_id = q.bind(actor_id, Type::TEXT);
            q.sql.push_str(&format!(" AND actor_id = {actor_id}"));
        }
        // The status a client sees at `now` (`KeyRecord::status_at`): a stored REVOKED wins,
        // then a passed expiry reads EXPIRED; no record is ever seen as UNSPECIFIED.
        let (status_op, expiry_op) = match query.status {
            None => ("", ""),
            Some(KeyStatus::Revoked) => ("=", ""),
            Some(KeyStatus::Active) => ("<>", ">"),
            Some(KeyStatus::Expired) => ("<>", "<="),
            Some(KeyStatus::Unspecified) => return Ok(Vec::new()),
        };
        if !status_op.is_empty() {
            let revoked = q.bind(&revoked, Type::INT2);
            q.sql.push_str(&format!(" AND status {status_op} {revoked}"));
        }
        if !expiry_op.is_empty() {
            let now = q.bind(&query.now, Type::INT8);
            q.sql.push_str(&format!(" AND expire_time {expiry_op} {now}"));
        }
        let limit = q.bind(&limit, Type::INT8);
        q.sql.push_str(&format!(" ORDER BY create_time DESC, key_id DESC LIMIT {limit}"));
        let rows = self.conn()?.query_typed(&q.sql, &q.params).map_err(db)?;
        rows.iter().map(|row| decode(row, 0)).collect()
    }

    fn scan(&self, kind: KeyKind, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, StoreError> {
        let limit = bigint(limit as u64);
        let rows = match after {
            Some(after) => {
                let sql = format!(
                    "SELECT record FROM {} WHERE nid = $1 AND key_id > $2 ORDER BY key_id LIMIT $3",
                    table(kind)
                );
                self.conn()?.query_typed(&sql, &[(&NID, Type::UUID), (&after, Type::TEXT), (&limit, Type::INT8)])
            }
            None => {
                let sql = format!("SELECT record FROM {} WHERE nid = $1 ORDER BY key_id LIMIT $2", table(kind));
                self.conn()?.query_typed(&sql, &[(&NID, Type::UUID), (&limit, Type::INT8)])
            }
        }
        .map_err(db)?;
        rows.iter().map(|row| decode(row, 0)).collect()
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let row = self.conn()?.query_typed_one("SELECT revision FROM store_revision", &[]).map_err(db)?;
        revision_of(&row, 0)
    }

    fn changes_since(&self, revision: u64, limit: usize) -> Result<Changes, StoreError> {
        // Whole revisions, like the redb backend: entries are taken while fewer than `limit`
        // changes are collected, so `limit + 1` revisions are enough to know whether more exist.
        let revisions = bigint((limit as u64).saturating_add(1));
        let after = bigint(revision);
        let rows = self
            .conn()?
            .query_typed(CHANGES_SINCE, &[(&after, Type::INT8), (&NID, Type::UUID), (&revisions, Type::INT8)])
            .map_err(db)?;
        let mut out = Changes { revision, changes: Vec::new(), more: false };
        let mut current = None;
        for row in &rows {
            let rev = revision_of(row, 0)?;
            if current != Some(rev) {
                if out.changes.len() >= limit {
                    out.more = true;
                    break;
                }
                current = Some(rev);
                out.revision = rev;
            }
            let kind = kind_of(row.try_get(1).map_err(db)?)?;
            let key_id: String = row.try_get(2).map_err(db)?;
            let record = match row.try_get::<_, Option<Json<KeyRecord>>>(3) {
                Ok(record) => record.map(|json| json.0),
                Err(e) => return Err(StoreError::Backend(format!("corrupt key record {key_id}: {}", error_text(&e)))),
            };
            out.changes.push(Change { kind, key_id, record });
        }
        Ok(out)
    }

    fn count_active(&self) -> Result<u64, StoreError> {
        let sql = "SELECT (SELECT count(*) FROM issued_api_keys WHERE nid = $1 AND status <> $2)
                        + (SELECT count(*) FROM imported_api_keys WHERE nid = $1 AND status <> $2)";
        let revoked = revoked();
        let row = self.conn()?.query_typed_one(sql, &[(&NID, Type::UUID), (&revoked, Type::INT2)]).map_err(db)?;
        let count: i64 = row.try_get(0).map_err(db)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// A round trip that also proves the schema is there (an unmigrated database is not ready).
    fn ping(&self) -> Result<(), StoreError> {
        self.revision().map(drop)
    }
}
