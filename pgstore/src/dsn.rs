//! The PostgreSQL `db.dsn`: the pool settings talos reads from its query string (talos-api.md §6,
//! the `db.dsn` row: Go `database/sql` names and their pgx `pool_*` twins), stripped before the
//! rest of the URL goes to the driver, which would refuse them as unknown options.
//!
//! It does not parse hosts, users or passwords: the driver does that, with libpq's rules. Its
//! errors never quote the DSN, which may hold a password; they name the offending parameter and
//! quote only the value of a pool setting, which is never secret.

use std::time::Duration;

/// How the connection pool behaves, from the DSN's query string:
///
/// | setting | parameters | default |
/// | --- | --- | --- |
/// | `max_conns` | `max_conns`, `pool_max_conns` | `max(4, cores)` (pgx) |
/// | `min_conns` | `pool_min_conns` | 0 (one connection is still opened at connect) |
/// | `max_idle_conns` | `max_idle_conns` | the pool size; clamped to `min_conns..=max_conns` |
/// | `max_conn_lifetime` | `max_conn_lifetime`, `pool_max_conn_lifetime` | 1h (pgx) |
/// | `max_conn_idle_time` | `max_conn_idle_time`, `pool_max_conn_idle_time` | 30m (pgx) |
///
/// Durations are Go durations (`"90s"`, `"1h30m"`); `0` means no limit, as in Go. Limits are
/// applied when a connection is next taken or given back; no thread reaps idle connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections open at most (checked out plus idle).
    pub max_conns: usize,
    /// Connections opened at start and never closed for being idle.
    pub min_conns: usize,
    /// Idle connections kept; one returned beyond this is closed.
    pub max_idle_conns: usize,
    /// A connection older than this is closed instead of reused; `None`: no limit.
    pub max_conn_lifetime: Option<Duration>,
    /// A connection idle longer than this is closed instead of reused; `None`: no limit.
    pub max_conn_idle_time: Option<Duration>,
}

/// pgx's defaults: an hour of life, half an hour of idleness.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
const DEFAULT_IDLE_TIME: Duration = Duration::from_secs(1800);

impl Default for PoolSettings {
    /// pgx's default size, `max(4, cores)`, and its lifetime limits; Go keeps every idle
    /// connection only up to `max_idle_conns`, and here that defaults to the pool size.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_conns = cores.max(4);
        Self {
            max_conns,
            min_conns: 0,
            max_idle_conns: max_conns,
            max_conn_lifetime: Some(DEFAULT_LIFETIME),
            max_conn_idle_time: Some(DEFAULT_IDLE_TIME),
        }
    }
}

/// A DSN split into what the driver reads and what the pool reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `postgres://…` without the pool parameters, for `postgres::Config::from_str`.
    pub driver: String,
    /// Query parameter names left for the driver (to know which defaults talos may set).
    pub driver_params: Vec<String>,
    pub pool: PoolSettings,
}

/// Why a DSN was rejected before it reached the driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("must be a postgres:// or postgresql:// URL")]
    NotAUrl,
    #[error("invalid {name} {value:?}: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
    #[error("{0} is set more than once (directly or through its pool_ twin)")]
    Repeated(&'static str),
    #[error("pool_min_conns ({min}) is larger than the pool size ({max})")]
    MinAboveMax { min: usize, max: usize },
}

/// Which setting a query parameter names. Go's `database/sql` and pgx spell them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    MaxConns,
    MinConns,
    MaxIdleConns,
    Lifetime,
    IdleTime,
}

fn setting(name: &str) -> Option<(Setting, &'static str)> {
    Some(match name {
        "max_conns" => (Setting::MaxConns, "max_conns"),
        "pool_max_conns" => (Setting::MaxConns, "pool_max_conns"),
        "pool_min_conns" => (Setting::MinConns, "pool_min_conns"),
        "max_idle_conns" => (Setting::MaxIdleConns, "max_idle_conns"),
        "max_conn_lifetime" => (Setting::Lifetime, "max_conn_lifetime"),
        "pool_max_conn_lifetime" => (Setting::Lifetime, "pool_max_conn_lifetime"),
        "max_conn_idle_time" => (Setting::IdleTime, "max_conn_idle_time"),
        "pool_max_conn_idle_time" => (Setting::IdleTime, "pool_max_conn_idle_time"),
        _ => return None,
    })
}

/// Splits `dsn` into the driver's URL and the [`PoolSettings`]; every parameter that is not a
/// pool setting is left for the driver.
pub fn parse(dsn: &str) -> Result<Dsn, DsnError> {
    let (scheme, rest) = dsn.split_once("://").ok_or(DsnError::NotAUrl)?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "postgres" | "postgresql") {
        return Err(DsnError::NotAUrl);
    }
    // The driver takes everything up to the first '@' as user information, so a '?' inside an
    // unencoded password is not the start of the query; search for it after the '@' likewise.
    let query_from = rest.find('@').map_or(0, |at| at + 1);
    let (base, query) = match rest[query_from..].find('?') {
        Some(q) => (&rest[..query_from + q], &rest[query_from + q + 1..]),
        None => (rest, ""),
    };

    let mut pool = PoolSettings::default();
    let mut seen: Vec<Setting> = Vec::new();
    let mut max_idle: Option<usize> = None;
    let mut kept: Vec<&str> = Vec::new();
    let mut driver_params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some((which, name)) = setting(name) else {
            kept.push(pair);
            driver_params.push(name.to_owned());
            continue;
        };
        if seen.contains(&which) {
            return Err(DsnError::Repeated(name));
        }
        seen.push(which);
        match which {
            Setting::MaxConns => pool.max_conns = count(name, value, 1)?,
            Setting::MinConns => pool.min_conns = count(name, value, 0)?,
            Setting::MaxIdleConns => max_idle = Some(count(name, value, 0)?),
            Setting::Lifetime => pool.max_conn_lifetime = duration(name, value)?,
            Setting::IdleTime => pool.max_conn_idle_time = duration(name, value)?,
        }
    }
    if pool.min_conns > pool.max_conns {
        return Err(DsnError::MinAboveMax { min: pool.min_conns, max: pool.max_conns });
    }
    pool.max_idle_conns = max_idle.unwrap_or(pool.max_conns).min(pool.max_conns).max(pool.min_conns);

    // The driver only knows the lowercase schemes.
    let mut driver = format!("postgres://{base}");
    if !kept.is_empty() {
        driver.push('?');
        driver.push_str(&kept.join("&"));
    }
    Ok(Dsn { driver, driver_params, pool })
}

fn count(name: &'static str, value: &str, min: usize) -> Result<usize, DsnError> {
    let invalid = |reason: String| DsnError::Invalid { name, value: value.to_owned(), reason };
    let n: usize = value.parse().map_err(|_| invalid("expected a whole number".into()))?;
    if n < min {
        return Err(invalid(format!("must be at least {min}")));
    }
    Ok(n)
}

fn duration(name: &'static str, value: &str) -> Result<Option<Duration>, DsnError> {
    let d = common::duration::parse_duration(value).map_err(|e| DsnError::Invalid {
        name,
        value: value.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Some(d).filter(|d| !d.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dsn: &str, driver: &str, expect: impl FnOnce(&PoolSettings)) {
        let parsed = parse(dsn).unwrap_or_else(|e| panic!("{dsn}: {e}"));
        assert_eq!(parsed.driver, driver, "{dsn}");
        expect(&parsed.pool);
    }

    fn fails(dsn: &str, message: &str) {
        let err = parse(dsn).expect_err(dsn).to_string();
        assert_eq!(err, message, "{dsn}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn driver_url_keeps_everything_but_pool_settings() {
        let d = PoolSettings::default();
        check("postgres://u:hunter2@db:5432/talos", "postgres://u:hunter2@db:5432/talos", |p| assert_eq!(*p, d));
        check("POSTGRESQL://db/talos?sslmode=disable", "postgres://db/talos?sslmode=disable", |_| {});
        check("postgres://db/talos?max_conns=20&sslmode=disable", "postgres://db/talos?sslmode=disable", |p| {
            assert_eq!((p.max_conns, p.max_idle_conns), (20, 20))
        });
        check(
            "postgres://db/t?options=-csearch_path%3Dx&pool_max_conns=3&pool_min_conns=2&application_name=a",
            "postgres://db/t?options=-csearch_path%3Dx&application_name=a",
            |p| assert_eq!((p.max_conns, p.min_conns, p.max_idle_conns), (3, 2, 3)),
        );
        check("postgres://u:p?w@db/t?max_idle_conns=1", "postgres://u:p?w@db/t", |p| assert_eq!(p.max_idle_conns, 1));
        check("postgres://db/t?max_conns=2&max_idle_conns=9", "postgres://db/t", |p| assert_eq!(p.max_idle_conns, 2));
        check("postgres://db/t?pool_min_conns=2&max_idle_conns=0", "postgres://db/t", |p| {
            assert_eq!(p.max_idle_conns, 2)
        });
        check("postgres://db/t?max_conn_lifetime=1h30m&pool_max_conn_idle_time=0", "postgres://db/t", |p| {
            assert_eq!(p.max_conn_lifetime, Some(Duration::from_secs(5400)));
            assert_eq!(p.max_conn_idle_time, None);
        });
        check("postgres://db/t?", "postgres://db/t", |_| {});
    }

    #[test]
    fn driver_params_are_listed() {
        let parsed = parse("postgres://db/t?connect_timeout=3&max_conns=2&keepalives_idle=9").unwrap();
        assert_eq!(parsed.driver_params, ["connect_timeout", "keepalives_idle"]);
    }

    #[test]
    fn bad_pool_settings_name_the_parameter_never_the_dsn() {
        fails("mysql://u:hunter2@db/t", "must be a postgres:// or postgresql:// URL");
        fails("host=db password=hunter2", "must be a postgres:// or postgresql:// URL");
        fails("postgres://u:hunter2@db/t?max_conns=0", "invalid max_conns \"0\": must be at least 1");
        fails("postgres://u:hunter2@db/t?max_conns=x", "invalid max_conns \"x\": expected a whole number");
        fails(
            "postgres://u:hunter2@db/t?max_conns=2&pool_max_conns=2",
            "pool_max_conns is set more than once (directly or through its pool_ twin)",
        );
        fails(
            "postgres://u:hunter2@db/t?max_conns=2&pool_min_conns=3",
            "pool_min_conns (3) is larger than the pool size (2)",
        );
        fails(
            "postgres://u:hunter2@db/t?max_conn_idle_time=5",
            "invalid max_conn_idle_time \"5\": missing unit in duration \"5\"",
        );
    }
}
