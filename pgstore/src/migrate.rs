//! Versioned schema migrations, embedded in the binary (`migrations/NNNN_name.sql`), recorded in
//! `schema_migrations(version, applied_at)`.
//!
//! Each pending migration runs in its own transaction together with its `schema_migrations`
//! row, so a failed one leaves nothing behind. Every such transaction first takes a
//! transaction-scoped advisory lock, then reads what is applied: two processes migrating at once
//! take turns, and the second finds the work done. (A transaction-scoped lock cannot outlive a
//! failure on a pooled connection the way a session lock could.)
//!
//! Migrations only go up. Versions this build does not know (a newer talos migrated the database)
//! are reported by [`status`], never touched.

use std::collections::BTreeSet;

use common::store::StoreError;
use postgres::types::Type;
use postgres::{Client, IsolationLevel};

use crate::error::db;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in version order.
pub const MIGRATIONS: &[Migration] =
    &[Migration { version: 1, name: "init", sql: include_str!("../migrations/0001_init.sql") }];

/// The advisory-lock key that serialises migrations across processes ("talos_mg" in ASCII).
/// Advisory locks are per database, so this also serialises migrations of other schemas in the
/// same database, which is harmless.
const LOCK_KEY: i64 = 0x7461_6c6f_735f_6d67;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT      PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// Applies every pending migration in order; returns the versions applied by this call.
pub(crate) fn up(client: &mut Client) -> Result<Vec<u32>, StoreError> {
    let mut applied_now = Vec::new();
    loop {
        let mut txn = client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().map_err(db)?;
        txn.query_typed("SELECT pg_advisory_xact_lock($1)", &[(&LOCK_KEY, Type::INT8)]).map_err(db)?;
        // Under the lock, so concurrent first runs do not race on creating the table.
        txn.batch_execute(CREATE_TABLE).map_err(db)?;
        let applied = applied_versions(&mut txn)?;
        let Some(next) = MIGRATIONS.iter().find(|m| !applied.contains(&i64::from(m.version))) else {
            txn.commit().map_err(db)?;
            return Ok(applied_now);
        };
        txn.batch_execute(next.sql).map_err(|e| migration_failed(next, e))?;
        txn.query_typed(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[(&i64::from(next.version), Type::INT8)],
        )
        .map_err(db)?;
        txn.commit().map_err(|e| migration_failed(next, e))?;
        tracing::info!(version = next.version, name = next.name, "applied database migration");
        applied_now.push(next.version);
    }
}

fn migration_failed(m: &Migration, e: postgres::Error) -> StoreError {
    match db(e) {
        StoreError::Backend(detail) => {
            StoreError::Backend(format!("migration {:04}_{} failed: {detail}", m.version, m.name))
        }
        other => other,
    }
}

fn applied_versions(client: &mut impl postgres::GenericClient) -> Result<BTreeSet<i64>, StoreError> {
    let exists = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .map_err(db)?
        .try_get::<_, bool>(0)
        .map_err(db)?;
    if !exists {
        return Ok(BTreeSet::new());
    }
    client
        .query("SELECT version FROM schema_migrations", &[])
        .map_err(db)?
        .iter()
        .map(|row| row.try_get::<_, i64>(0).map_err(db))
        .collect()
}

/// Every known migration with whether it is applied, then any applied version unknown to this
/// build (named `"unknown"`).
pub(crate) fn status(client: &mut Client) -> Result<Vec<(u32, String, bool)>, StoreError> {
    let applied = applied_versions(client)?;
    let mut out: Vec<(u32, String, bool)> =
        MIGRATIONS.iter().map(|m| (m.version, m.name.to_owned(), applied.contains(&i64::from(m.version)))).collect();
    for version in applied {
        let known = MIGRATIONS.iter().any(|m| i64::from(m.version) == version);
        if !known {
            let version = u32::try_from(version)
                .map_err(|_| StoreError::Backend(format!("schema_migrations holds an invalid version {version}")))?;
            out.push((version, "unknown".to_owned(), true));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_and_files_are_numbered_alike() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS[0].version, 1);
        for m in MIGRATIONS {
            assert!(!m.sql.trim().is_empty(), "{}", m.name);
            assert!(!m.name.is_empty() && m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
