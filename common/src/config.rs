//! Configuration: one YAML file plus environment overrides, validated into an immutable
//! [`Config`] with every problem reported at once.
//!
//! Loading runs in three steps. The YAML is parsed into a generic tree (not straight into serde
//! structs) so that unknown keys, wrong types and YAML's retyping of unquoted scalars can be
//! reported by their full key path; the tree is flattened into one raw value per known key, and
//! environment variables replace raw values (`TALOS_*` over unprefixed names over the file).
//! Each raw value is then checked against its kind in [`KEYS`], the table of every key Ory Talos
//! knows, and finally the typed [`Config`] is built with the checks that span keys.
//!
//! This module does not watch the file for changes, pick a default config path, or log: the
//! binary owns those, and prints the warnings and problems this module returns. Secrets are kept
//! in [`Secret`], whose `Debug` is redacted, and no message here ever quotes a secret.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::duration::{format_proto_duration, parse_duration};

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// Where environment variables come from. Injected so that tests never touch the process
/// environment.
pub trait EnvSource {
    fn vars(&self) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn vars(&self) -> Vec<(String, String)> {
        // `std::env::vars` panics on a name or value that is not UTF-8; such a variable cannot
        // name a configuration key anyway, so it is skipped.
        std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect()
    }
}

impl EnvSource for Vec<(String, String)> {
    fn vars(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

impl EnvSource for HashMap<String, String> {
    fn vars(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// A secret string from the configuration. Its `Debug` never shows the value; read it with
/// [`Secret::expose`] where it is used, and nowhere else.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One configuration mistake, named by its key path (`serve.http.port`,
/// `secrets.hmac.retired[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found while loading, in the order found; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone)]
pub struct Config {
    pub serve: Serve,
    pub credentials: Credentials,
    pub secrets: Secrets,
    pub db: Db,
    pub snapshot: SnapshotConfig,
    pub cache: Cache,
    pub quota: Quota,
    pub log: Log,
    pub last_used: LastUsed,
}

#[derive(Debug, Clone)]
pub struct Serve {
    /// `serve.http.{host,port}`, default `0.0.0.0:4420`; port 0 asks for an ephemeral port.
    pub http: Listen,
    /// `serve.metrics.{host,port}`, default `0.0.0.0:4422`.
    pub metrics: Listen,
    /// `serve.workers`: data-plane worker threads, default the available parallelism.
    pub workers: usize,
    /// `serve.http.client_ip_source`.
    pub client_ip_source: ClientIpSource,
    /// `serve.http.trust_forwarded_host`.
    pub trust_forwarded_host: bool,
    /// `serve.http.request_log.exclude_health_endpoints`.
    pub exclude_health_from_request_log: bool,
    /// `serve.http.request_log.data_plane_sample_every`: log one data-plane request in this many
    /// (0, the default: none; the admin plane logs every request).
    pub data_plane_log_every: u64,
    /// `serve.max_connections_per_worker`: connections a data-plane worker holds before it sheds
    /// new ones with a 503 and a close (default 10000).
    pub max_connections_per_worker: usize,
    /// `serve.pin_workers`: pin data-plane worker `i` to CPU `i` (modulo the CPUs this process
    /// may run on); default off.
    pub pin_workers: bool,
    /// `serve.io_driver`: `io_uring` or `epoll` for the data-plane event loops.
    pub io_driver: IoDriverChoice,
    /// `serve.http.timeouts.*`.
    pub timeouts: Timeouts,
}

/// `serve.http.timeouts.*`: how long a client may take (talos-api.md §1.4's server timeouts are
/// the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `read_header` (5s): a request head must be complete this long after its first byte
    /// (the slowloris bound). Both planes.
    pub read_header: Duration,
    /// `read` (15s): the whole request, body included, from its first byte. Data plane.
    pub read: Duration,
    /// `write` (15s): a response must be taken by the client within this. Data plane.
    pub write: Duration,
    /// `idle` (60s): a keep-alive connection with no request in progress is closed after this.
    /// Data plane.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            read_header: Duration::from_secs(5),
            read: Duration::from_secs(15),
            write: Duration::from_secs(15),
            idle: Duration::from_secs(60),
        }
    }
}

/// `serve.io_driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriverChoice {
    IoUring,
    Epoll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub host: String,
    pub port: u16,
}

/// Where the client address is taken from. `CLIENT_IP_SOURCE_UNSPECIFIED` means the peer
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpSource {
    RemoteAddr,
    CfConnectingIp,
    XForwardedFor,
    XRealIp,
    TrueClientIp,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub issuer: String,
    /// Unexpired entries only; expired ones are dropped at load with a warning.
    pub issuer_retired: Vec<Retired<String>>,
    pub clock_skew: Duration,
    pub api_keys: ApiKeys,
    pub derived_tokens: DerivedTokens,
}

/// A retired value, accepted until `expires_at` (exclusive) or forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired<T> {
    pub value: T,
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct ApiKeys {
    /// `None`: every issue and import request must carry a ttl.
    pub default_ttl: Option<Duration>,
    /// Zero means no maximum, as in Ory Talos.
    pub max_ttl: Duration,
    pub prefix: Prefixes,
}

#[derive(Debug, Clone)]
pub struct Prefixes {
    pub current: String,
    pub retired: Vec<String>,
    pub public_current: Option<String>,
    pub public_retired: Vec<String>,
}

#[derive(Clone)]
pub struct DerivedTokens {
    pub default_ttl: Duration,
    /// `credentials.derived_tokens.jwt.signing_key_id`.
    pub jwt_signing_key_id: String,
    /// `credentials.derived_tokens.jwt.signing_keys.urls` (or the legacy `jwks.urls`); each is a
    /// `base64://` URL holding a JWK set, private keys included, so `Debug` never prints them.
    pub jwt_signing_key_urls: Vec<String>,
    /// `credentials.derived_tokens.macaroon.prefix.current`.
    pub macaroon_prefix: String,
    /// `credentials.derived_tokens.macaroon.prefix.retired`.
    pub macaroon_prefix_retired: Vec<String>,
}

impl fmt::Debug for DerivedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DerivedTokens")
            .field("default_ttl", &self.default_ttl)
            .field("jwt_signing_key_id", &self.jwt_signing_key_id)
            .field("jwt_signing_key_urls", &format_args!("[<{} redacted>]", self.jwt_signing_key_urls.len()))
            .field("macaroon_prefix", &self.macaroon_prefix)
            .field("macaroon_prefix_retired", &self.macaroon_prefix_retired)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Secrets {
    /// `secrets.hmac`: key checksums and the macaroon root key.
    pub hmac: SecretSet,
    /// `secrets.pagination`, or its older name `secrets.default`; `None` when neither is set.
    pub pagination: Option<SecretSet>,
}

#[derive(Debug, Clone)]
pub struct SecretSet {
    pub current: Secret,
    /// Unexpired entries only; expired ones are dropped at load with a warning.
    pub retired: Vec<Retired<Secret>>,
}

#[derive(Debug, Clone)]
pub struct Db {
    pub dsn: Dsn,
}

/// The store to open, from `db.dsn`.
#[derive(Clone, PartialEq, Eq)]
pub enum Dsn {
    /// `memory`: nothing persists; for tests.
    Memory,
    /// `redb:///abs/path`, `redb://rel/path` or a plain path.
    Redb(PathBuf),
    /// `postgres://…` or `postgresql://…`, verbatim (pool parameters stay in the query string);
    /// `cockroach://…` is accepted and rewritten to `postgres://…`.
    Postgres(String),
}

/// Why a `db.dsn` was rejected. Messages never quote the DSN, which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("must not be empty")]
    Empty,
    #[error("has no path after \"redb://\"")]
    EmptyRedbPath,
    #[error(
        "unsupported scheme {0:?}: use \"memory\", a redb file (\"redb:///path\" or a plain path) or \"postgres://…\""
    )]
    UnsupportedScheme(String),
}

impl Dsn {
    pub fn parse(dsn: &str) -> Result<Self, DsnError> {
        if dsn.is_empty() {
            return Err(DsnError::Empty);
        }
        if dsn == "memory" {
            return Ok(Self::Memory);
        }
        let Some((scheme, rest)) = dsn.split_once("://").filter(|(scheme, _)| is_url_scheme(scheme)) else {
            return Ok(Self::Redb(PathBuf::from(dsn)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "redb" if rest.is_empty() => Err(DsnError::EmptyRedbPath),
            "redb" => Ok(Self::Redb(PathBuf::from(rest))),
            "postgres" | "postgresql" => Ok(Self::Postgres(dsn.to_owned())),
            "cockroach" | "cockroachdb" => Ok(Self::Postgres(format!("postgres://{rest}"))),
            _ => Err(DsnError::UnsupportedScheme(scheme.to_owned())),
        }
    }
}

fn is_url_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redb(path) => f.debug_tuple("Redb").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
        }
    }
}

/// The URL with the userinfo password and any `password`/`sslpassword` query parameter
/// replaced, for `Debug` and logs.
fn redact_url(url: &str) -> String {
    const REDACTED: &str = "<redacted>";
    let Some(scheme_end) = url.find("://") else {
        return REDACTED.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..].find(['/', '?', '#']).map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..authority_start]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let rest = &url[authority_end..];
    match rest.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, _))
                        if name.eq_ignore_ascii_case("password") || name.eq_ignore_ascii_case("sslpassword") =>
                    {
                        out.push_str(name);
                        out.push('=');
                        out.push_str(REDACTED);
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        None => out.push_str(rest),
    }
    out
}

#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// How often a data plane polls the store for changes; at least 1ms.
    pub refresh_interval: Duration,
    /// How old a snapshot may grow before the data plane stops answering from it.
    pub max_staleness: Duration,
}

#[derive(Debug, Clone)]
pub struct Cache {
    /// `cache.type`: `memory`, `redis` or `noop`.
    pub kind: String,
    pub enabled: bool,
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Quota {
    /// Zero means unlimited.
    pub api_keys_max: u64,
}

#[derive(Debug, Clone)]
pub struct Log {
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// `json` or `text`.
    pub format: String,
}

#[derive(Debug, Clone)]
pub struct LastUsed {
    pub queue_size: usize,
    pub flush_size: usize,
    pub flush_interval: Duration,
    pub num_workers: usize,
}

impl Config {
    /// Reads the YAML file at `path` (none: defaults and environment only), applies the
    /// environment overrides and validates. Returns the config and its warnings, or every
    /// problem found.
    pub fn load(path: Option<&Path>, env: &dyn EnvSource) -> Result<(Config, Vec<String>), ConfigErrors> {
        let Some(path) = path else { return Self::from_yaml_str("", env) };
        let yaml = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigProblem {
                key: String::new(),
                message: format!("cannot read config file {}: {e}", path.display()),
            }])
        })?;
        // Problems of the document as a whole (not YAML, not a mapping) are named by the file.
        Self::from_yaml_str(&yaml, env).map_err(|mut errors| {
            for problem in errors.0.iter_mut().filter(|p| p.key.is_empty()) {
                problem.key = path.display().to_string();
            }
            errors
        })
    }

    /// As [`Config::load`], with the file's contents given.
    pub fn from_yaml_str(yaml: &str, env: &dyn EnvSource) -> Result<(Config, Vec<String>), ConfigErrors> {
        let mut report = Report::default();
        let root = match parse_yaml(yaml) {
            Ok(root) => root,
            Err(message) => {
                report.problem("", message);
                return Err(ConfigErrors(report.problems));
            }
        };
        let mut raws = BTreeMap::new();
        match root {
            Node::Null => {}
            Node::Map(entries) => collect_file(entries, "", &mut raws, &mut report),
            other => report.problem("", format!("the configuration must be a mapping, found {}", other.kind_name())),
        }
        collect_env(env.vars(), &mut raws, &mut report);

        let mut values = Values::default();
        for spec in KEYS {
            if let Some(raw) = raws.remove(spec.path) {
                values.present.insert(spec.path);
                if let Some(val) = convert(spec, raw, &mut report) {
                    values.map.insert(spec.path, val);
                }
            }
        }
        let config = build(&mut values, OffsetDateTime::now_utc(), &mut report);
        if report.problems.is_empty() {
            Ok((config, report.warnings))
        } else {
            Err(ConfigErrors(report.problems))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The key table
// ---------------------------------------------------------------------------------------------

/// What a key holds, with its bounds. Checked for every key present, used or not, so that a
/// real Ory Talos config is validated as strictly as Ory would.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Enum(&'static [&'static str]),
    Bool,
    Int {
        min: u64,
        max: u64,
    },
    Number {
        min: f64,
        max: f64,
    },
    Duration {
        min: Duration,
        max: Option<Duration>,
    },
    StrList,
    EnumList(&'static [&'static str]),
    /// Always read as a string; an unquoted scalar YAML would retype is an error.
    Secret,
    /// `[string | {value, expires_at}]`; `secret` applies the [`Kind::Secret`] rules to values.
    Retired {
        secret: bool,
    },
    /// `multitenancy.networks`: `[{hostname, id, config_path}]`.
    Networks,
}

impl Kind {
    fn is_list(self) -> bool {
        matches!(self, Kind::StrList | Kind::EnumList(_) | Kind::Retired { .. } | Kind::Networks)
    }
}

struct KeySpec {
    path: &'static str,
    kind: Kind,
}

const fn key(path: &'static str, kind: Kind) -> KeySpec {
    KeySpec { path, kind }
}

const fn int(min: u64, max: u64) -> Kind {
    Kind::Int { min, max }
}

const fn dur(min: Duration, max: Option<Duration>) -> Kind {
    Kind::Duration { min, max }
}

const ANY_DURATION: Kind = dur(Duration::ZERO, None);
const POSITIVE_DURATION: Kind = dur(Duration::from_nanos(1), None);
const PORT: Kind = int(0, 65_535);
const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];

/// Every key talos accepts: the Ory Talos schema (`talos-api.md` §6), its legacy aliases, and
/// talos's own `serve.workers` and `snapshot.*`.
const KEYS: &[KeySpec] = &[
    key("serve.http.host", Kind::Str),
    key("serve.http.port", PORT),
    key("serve.http.cors.enabled", Kind::Bool),
    key("serve.http.cors.allowed_origins", Kind::StrList),
    key("serve.http.cors.allowed_methods", Kind::EnumList(HTTP_METHODS)),
    key("serve.http.cors.allowed_headers", Kind::StrList),
    key("serve.http.cors.exposed_headers", Kind::StrList),
    key("serve.http.cors.allow_credentials", Kind::Bool),
    key("serve.http.cors.max_age", Kind::Number { min: 0.0, max: f64::MAX }),
    key("serve.http.cors.debug", Kind::Bool),
    key("serve.http.client_ip_source", Kind::Str),
    key("serve.http.trust_forwarded_host", Kind::Bool),
    key("serve.http.request_log.exclude_health_endpoints", Kind::Bool),
    key("serve.http.request_log.data_plane_sample_every", int(0, u32::MAX as u64)),
    key("serve.http.timeouts.read_header", POSITIVE_DURATION),
    key("serve.http.timeouts.read", POSITIVE_DURATION),
    key("serve.http.timeouts.write", POSITIVE_DURATION),
    key("serve.http.timeouts.idle", POSITIVE_DURATION),
    key("serve.metrics.host", Kind::Str),
    key("serve.metrics.port", PORT),
    key("serve.workers", int(1, 1024)),
    key("serve.max_connections_per_worker", int(1, 1_000_000)),
    key("serve.pin_workers", Kind::Bool),
    key("serve.io_driver", Kind::Enum(&["io_uring", "epoll"])),
    key("credentials.issuer", Kind::Str),
    key("credentials.issuer_retired", Kind::Retired { secret: false }),
    key("credentials.clock_skew", dur(Duration::ZERO, Some(Duration::from_secs(600)))),
    key("credentials.api_keys.default_ttl", POSITIVE_DURATION),
    key("credentials.api_keys.max_ttl", ANY_DURATION),
    key("credentials.api_keys.prefix.current", Kind::Str),
    key("credentials.api_keys.prefix.retired", Kind::StrList),
    key("credentials.api_keys.prefix.public_current", Kind::Str),
    key("credentials.api_keys.prefix.public_retired", Kind::StrList),
    key("credentials.derived_tokens.default_ttl", POSITIVE_DURATION),
    key("credentials.derived_tokens.jwt.signing_key_id", Kind::Str),
    key("credentials.derived_tokens.jwt.signing_keys.urls", Kind::StrList),
    key("credentials.derived_tokens.jwt.jwks.urls", Kind::StrList),
    key("credentials.derived_tokens.macaroon.prefix.current", Kind::Str),
    key("credentials.derived_tokens.macaroon.prefix.retired", Kind::StrList),
    key("secrets.hmac.current", Kind::Secret),
    key("secrets.hmac.retired", Kind::Retired { secret: true }),
    key("secrets.pagination.current", Kind::Secret),
    key("secrets.pagination.retired", Kind::Retired { secret: true }),
    key("secrets.default.current", Kind::Secret),
    key("secrets.default.retired", Kind::Retired { secret: true }),
    key("db.dsn", Kind::Str),
    key("snapshot.refresh_interval", dur(Duration::from_millis(1), None)),
    key("snapshot.max_staleness", POSITIVE_DURATION),
    key("cache.type", Kind::Enum(&["memory", "redis", "noop"])),
    key("cache.enabled", Kind::Bool),
    key("cache.ttl", ANY_DURATION),
    key("cache.memory.max_size", int(1 << 20, 10 << 30)),
    key("cache.memory.num_counters", int(100, 1_000_000)),
    key("cache.redis.addrs", Kind::StrList),
    key("cache.redis.password", Kind::Secret),
    key("cache.redis.db", int(0, u32::MAX as u64)),
    key("cache.redis.pool_size", int(1, u32::MAX as u64)),
    key("cache.redis.timeout", ANY_DURATION),
    key("cache.redis.min_idle_conns", int(0, u32::MAX as u64)),
    key("cache.redis.conn_max_idle_time", ANY_DURATION),
    key("cache.redis.conn_max_lifetime", ANY_DURATION),
    key("cache.redis.tls.enabled", Kind::Bool),
    key("rate_limit.enabled", Kind::Bool),
    key("rate_limit.backend", Kind::Enum(&["memory", "redis"])),
    key("last_used.queue_size", int(256, 1_000_000)),
    key("last_used.flush_size", int(1, 10_000)),
    key("last_used.flush_interval", dur(Duration::from_millis(1), None)),
    key("last_used.num_workers", int(1, 64)),
    key("log.level", Kind::Enum(&["debug", "info", "warn", "error"])),
    key("log.format", Kind::Enum(&["json", "text"])),
    key("tracing.enabled", Kind::Bool),
    key("tracing.service_name", Kind::Str),
    key("tracing.service_version", Kind::Str),
    key("tracing.environment", Kind::Str),
    key("tracing.exporter", Kind::Str),
    key("tracing.endpoint", Kind::Str),
    key("tracing.sample_rate", Kind::Number { min: 0.0, max: 1.0 }),
    key("quota.api_keys_max", int(0, u64::MAX)),
    key("multitenancy.enabled", Kind::Bool),
    key("multitenancy.networks", Kind::Networks),
];

fn spec_of(path: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.path == path)
}

/// Whether `path` is a mapping that holds known keys (`serve`, `serve.http`, …).
fn is_section(path: &str) -> bool {
    KEYS.iter().any(|spec| {
        spec.path.len() > path.len() && spec.path.starts_with(path) && spec.path.as_bytes()[path.len()] == b'.'
    })
}

/// `serve.http.port` → `SERVE_HTTP_PORT`; `TALOS_` is prepended for the prefixed form.
fn env_name(path: &str) -> String {
    path.to_ascii_uppercase().replace('.', "_")
}

// ---------------------------------------------------------------------------------------------
// The generic tree
// ---------------------------------------------------------------------------------------------

/// How a string scalar was written. Only plain (unquoted) scalars are open to retyping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Quoted,
}

/// A YAML (or JSON, from the environment) value. Deliberately without `Debug`: it may hold
/// secrets.
enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String, Style),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn kind_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(..) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, Node::Seq(_) | Node::Map(_))
    }

    fn from_json(value: serde_json::Value) -> Node {
        use serde_json::Value;
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Node::Int(i.into()),
                (None, Some(u)) => Node::Int(u.into()),
                (None, None) => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Node::Str(s, Style::Quoted),
            Value::Array(items) => Node::Seq(items.into_iter().map(Node::from_json).collect()),
            Value::Object(map) => Node::Map(map.into_iter().map(|(k, v)| (k, Node::from_json(v))).collect()),
        }
    }
}

fn parse_yaml(yaml: &str) -> Result<Node, String> {
    let deserializer = serde_norway::Deserializer::from_str(yaml);
    NodeSeed { input: yaml }.deserialize(deserializer).map_err(|e| format!("invalid YAML: {e}"))
}

/// Builds a [`Node`] from any YAML value, remembering whether each string was quoted.
#[derive(Clone, Copy)]
struct NodeSeed<'i> {
    input: &'i str,
}

impl NodeSeed<'_> {
    /// serde_norway resolves plain scalars (YAML 1.2 core schema) before a visitor sees them,
    /// but hands strings over as slices of the input when it can: a quoted scalar's slice
    /// starts right after its opening quote, and a plain scalar can never start with a quote.
    /// A string that is not such a slice (escapes, block scalars, folded lines) cannot be a
    /// plain scalar that YAML would retype, so calling it quoted is safe.
    fn style_of(&self, s: &str) -> Style {
        let start = self.input.as_ptr() as usize;
        let at = s.as_ptr() as usize;
        if at <= start || at > start + self.input.len() {
            return Style::Quoted;
        }
        match self.input.as_bytes()[at - start - 1] {
            b'"' | b'\'' => Style::Quoted,
            _ => Style::Plain,
        }
    }
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value without tags")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(i128::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned(), self.style_of(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned(), Style::Quoted))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(name) = map.next_key_seed(KeySeed)? {
            entries.push((name, map.next_value_seed(self)?));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key: any scalar, as text.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }

    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_unit<E>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }

    fn visit_none<E>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Gathering raw values: file, then environment
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    problems: Vec<ConfigProblem>,
    warnings: Vec<String>,
}

impl Report {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem { key: key.into(), message: message.into() });
    }

    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
}

/// A key's value before checking, and where it came from.
struct Raw {
    node: Node,
    /// Empty for the file; otherwise ` (set by VAR)`, appended to messages.
    origin: String,
}

fn collect_file(
    entries: Vec<(String, Node)>,
    prefix: &str,
    raws: &mut BTreeMap<&'static str, Raw>,
    report: &mut Report,
) {
    let mut seen = HashSet::new();
    for (name, value) in entries {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        if !seen.insert(name) {
            report.problem(path, "duplicate key");
        } else if let Some(spec) = spec_of(&path) {
            // An empty value (`default_ttl:`) means "not set", as Ory's loader treats it.
            if !matches!(value, Node::Null) {
                raws.insert(spec.path, Raw { node: value, origin: String::new() });
            }
        } else if is_section(&path) {
            match value {
                Node::Map(entries) => collect_file(entries, &path, raws, report),
                Node::Null => {}
                other => report.problem(path, format!("expected a mapping, found {}", other.kind_name())),
            }
        } else {
            report.problem(path, "unknown key");
        }
    }
}

/// Variables of the `talos keys` client, not configuration keys: never warned about.
const CLIENT_VARS: [&str; 2] = ["TALOS_ENDPOINT", "TALOS_API_KEY"];

/// Applies environment overrides over the file's values. Highest first: `TALOS_<KEY>`, then
/// `TALOS_<KEY>_<n>` list items, then an unprefixed `<KEY>`. Unprefixed variables that name no
/// key are someone else's and are ignored; `TALOS_` ones that name no key are likely typos and
/// are warned about.
fn collect_env(mut vars: Vec<(String, String)>, raws: &mut BTreeMap<&'static str, Raw>, report: &mut Report) {
    vars.sort();
    let by_name: HashMap<String, &'static KeySpec> = KEYS.iter().map(|spec| (env_name(spec.path), spec)).collect();

    let mut unprefixed = Vec::new();
    let mut prefixed = Vec::new();
    let mut indexed: BTreeMap<&'static str, BTreeMap<usize, (String, String)>> = BTreeMap::new();
    for (name, value) in vars {
        if let Some(rest) = name.strip_prefix("TALOS_") {
            if CLIENT_VARS.contains(&name.as_str()) {
                continue;
            } else if let Some(&spec) = by_name.get(rest) {
                prefixed.push((spec, name, value));
            } else if let Some((spec, index)) = list_item_name(rest, &by_name) {
                indexed.entry(spec.path).or_default().insert(index, (name, value));
            } else {
                report.warn(format!("environment variable {name} names no configuration key and is ignored"));
            }
        } else if let Some(&spec) = by_name.get(name.as_str()) {
            unprefixed.push((spec, name, value));
        }
    }

    for (spec, name, value) in unprefixed {
        if let Some(node) = env_node(spec, &name, &value, report) {
            raws.insert(spec.path, Raw { node, origin: format!(" (set by {name})") });
        }
    }
    for (path, items) in indexed {
        let Some(spec) = spec_of(path) else { continue };
        let whole = format!("TALOS_{}", env_name(path));
        if prefixed.iter().any(|(s, _, _)| s.path == path) {
            report.warn(format!("{whole}_<n> variables are ignored because {whole} is set"));
            continue;
        }
        let mut nodes = Vec::with_capacity(items.len());
        for (name, value) in items.into_values() {
            if let Some(node) = env_item_node(spec, &name, &value, report) {
                nodes.push(node);
            }
        }
        raws.insert(spec.path, Raw { node: Node::Seq(nodes), origin: format!(" (set by {whole}_<n>)") });
    }
    for (spec, name, value) in prefixed {
        if let Some(node) = env_node(spec, &name, &value, report) {
            raws.insert(spec.path, Raw { node, origin: format!(" (set by {name})") });
        }
    }
}

/// `SECRETS_HMAC_RETIRED_0` → (`secrets.hmac.retired`, 0), for list keys only.
fn list_item_name(rest: &str, by_name: &HashMap<String, &'static KeySpec>) -> Option<(&'static KeySpec, usize)> {
    let (base, index) = rest.rsplit_once('_')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let spec = *by_name.get(base)?;
    let index = index.parse().ok()?;
    spec.kind.is_list().then_some((spec, index))
}

/// An environment value as a tree node of the key's kind. Every value arrives as a string, so
/// nothing here is ever retyped the way YAML retypes plain scalars.
fn env_node(spec: &KeySpec, name: &str, value: &str, report: &mut Report) -> Option<Node> {
    let text = || Node::Str(value.to_owned(), Style::Quoted);
    match spec.kind {
        Kind::Str | Kind::Enum(_) | Kind::Secret | Kind::Duration { .. } => Some(text()),
        Kind::Bool => match parse_go_bool(value.trim()) {
            Some(b) => Some(Node::Bool(b)),
            None => {
                report.problem(spec.path, format!("expected a boolean (true or false), got {value:?} (set by {name})"));
                None
            }
        },
        Kind::Int { .. } => match value.trim().parse::<i128>() {
            Ok(i) => Some(Node::Int(i)),
            Err(_) => {
                report.problem(spec.path, format!("expected an integer, got {value:?} (set by {name})"));
                None
            }
        },
        Kind::Number { .. } => match value.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Some(Node::Float(f)),
            _ => {
                report.problem(spec.path, format!("expected a number, got {value:?} (set by {name})"));
                None
            }
        },
        Kind::StrList | Kind::EnumList(_) if !value.trim_start().starts_with('[') => Some(Node::Seq(
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Node::Str(item.to_owned(), Style::Quoted))
                .collect(),
        )),
        Kind::StrList | Kind::EnumList(_) | Kind::Retired { .. } | Kind::Networks => {
            match serde_json::from_str::<serde_json::Value>(value) {
                Ok(json @ serde_json::Value::Array(_)) => Some(Node::from_json(json)),
                // serde_json's syntax errors give a position, never the input.
                Err(e) if value.trim_start().starts_with('[') => {
                    report.problem(spec.path, format!("expected a JSON array: {e} (set by {name})"));
                    None
                }
                _ => {
                    report.problem(spec.path, format!("expected a JSON array (set by {name})"));
                    None
                }
            }
        }
    }
}

/// One `TALOS_<KEY>_<n>` list item: a plain string, or a JSON object for object lists.
fn env_item_node(spec: &KeySpec, name: &str, value: &str, report: &mut Report) -> Option<Node> {
    let wants_object = match spec.kind {
        Kind::Networks => true,
        Kind::Retired { .. } => value.trim_start().starts_with('{'),
        _ => false,
    };
    if !wants_object {
        return Some(Node::Str(value.to_owned(), Style::Quoted));
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(json @ serde_json::Value::Object(_)) => Some(Node::from_json(json)),
        Ok(_) => {
            report.problem(spec.path, format!("expected a JSON object (set by {name})"));
            None
        }
        Err(e) => {
            report.problem(spec.path, format!("expected a JSON object: {e} (set by {name})"));
            None
        }
    }
}

/// Go's `strconv.ParseBool`, which Ory's environment loader uses.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Checking each value against its kind
// ---------------------------------------------------------------------------------------------

/// A value that passed its kind's checks.
enum Val {
    Str(String),
    Bool(bool),
    Int(u64),
    Number,
    Duration(Duration),
    List(Vec<String>),
    Secret(Secret),
    RetiredStrs(Vec<Retired<String>>),
    RetiredSecrets(Vec<Retired<Secret>>),
    Networks,
}

fn convert(spec: &KeySpec, raw: Raw, report: &mut Report) -> Option<Val> {
    let Raw { node, origin } = raw;
    let key = spec.path;
    let mut fail = |message: String| -> Option<Val> {
        report.problem(key, format!("{message}{origin}"));
        None
    };
    match spec.kind {
        Kind::Str => match string(node) {
            Ok(s) => Some(Val::Str(s)),
            Err(message) => fail(message),
        },
        Kind::Enum(allowed) => match string(node) {
            Ok(s) if allowed.contains(&s.as_str()) => Some(Val::Str(s)),
            Ok(s) => fail(format!("must be one of {}, got {s:?}", quoted_list(allowed))),
            Err(message) => fail(message),
        },
        Kind::Bool => match node {
            Node::Bool(b) => Some(Val::Bool(b)),
            other => fail(expected("a boolean (true or false)", &other)),
        },
        Kind::Int { min, max } => {
            let i = match node {
                Node::Int(i) => i,
                // `1e6` is an integer to JSON Schema, and so to Ory.
                Node::Float(f) if f.fract() == 0.0 && f.abs() < 1e30 => f as i128,
                other => return fail(expected("an integer", &other)),
            };
            match u64::try_from(i) {
                Ok(u) if (min..=max).contains(&u) => Some(Val::Int(u)),
                _ if max == u64::MAX => fail(format!("must be at least {min}, got {i}")),
                _ => fail(format!("must be between {min} and {max}, got {i}")),
            }
        }
        Kind::Number { min, max } => {
            let f = match node {
                Node::Int(i) => i as f64,
                Node::Float(f) => f,
                other => return fail(expected("a number", &other)),
            };
            if (min..=max).contains(&f) {
                Some(Val::Number)
            } else if max == f64::MAX {
                fail(format!("must be at least {min}, got {f}"))
            } else {
                fail(format!("must be between {min} and {max}, got {f}"))
            }
        }
        Kind::Duration { min, max } => {
            // A bare YAML number goes through the parser too, which says the unit is missing.
            let text = match node {
                Node::Str(s, _) => s,
                Node::Int(i) => i.to_string(),
                Node::Float(f) => f.to_string(),
                other => return fail(expected("a duration such as \"5m\"", &other)),
            };
            match parse_duration(&text) {
                Ok(d) if d < min && min == Duration::from_nanos(1) => {
                    fail(format!("must be greater than 0, got {text:?}"))
                }
                Ok(d) if d < min => fail(format!("must be at least {}, got {text:?}", format_proto_duration(min))),
                Ok(d) if max.is_some_and(|max| d > max) => {
                    fail(format!("must be at most {}, got {text:?}", format_proto_duration(max.unwrap_or_default())))
                }
                Ok(d) => Some(Val::Duration(d)),
                Err(e) => fail(e.to_string()),
            }
        }
        Kind::StrList | Kind::EnumList(_) => {
            let Node::Seq(items) = node else {
                return fail(expected("a list", &node));
            };
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, item) in items.into_iter().enumerate() {
                let item_key = format!("{key}[{i}]");
                match string(item) {
                    Ok(s) => match spec.kind {
                        Kind::EnumList(allowed) if !allowed.contains(&s.as_str()) => {
                            ok = false;
                            let message = format!("must be one of {}, got {s:?}{origin}", quoted_list(allowed));
                            report.problem(item_key, message);
                        }
                        _ => out.push(s),
                    },
                    Err(message) => {
                        ok = false;
                        report.problem(item_key, format!("{message}{origin}"));
                    }
                }
            }
            ok.then_some(Val::List(out))
        }
        Kind::Secret => match secret(node) {
            Ok(s) => Some(Val::Secret(Secret(s))),
            Err(message) => fail(message),
        },
        Kind::Retired { secret: is_secret } => {
            let Node::Seq(items) = node else {
                return fail(expected("a list", &node));
            };
            let mut ok = true;
            let mut strs = Vec::new();
            let mut secrets = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let item_key = format!("{key}[{i}]");
                match retired(item, is_secret, &item_key, &origin, report) {
                    Some(Retired { value, expires_at }) if is_secret => {
                        secrets.push(Retired { value: Secret(value), expires_at });
                    }
                    Some(entry) => strs.push(entry),
                    None => ok = false,
                }
            }
            match (ok, is_secret) {
                (false, _) => None,
                (true, true) => Some(Val::RetiredSecrets(secrets)),
                (true, false) => Some(Val::RetiredStrs(strs)),
            }
        }
        Kind::Networks => {
            let Node::Seq(items) = node else {
                return fail(expected("a list", &node));
            };
            let before = report.problems.len();
            for (i, item) in items.into_iter().enumerate() {
                network(item, &format!("{key}[{i}]"), &origin, report);
            }
            (report.problems.len() == before).then_some(Val::Networks)
        }
    }
}

fn expected(what: &str, found: &Node) -> String {
    format!("expected {what}, found {}", found.kind_name())
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|item| format!("{item:?}")).collect::<Vec<_>>().join(", ")
}

/// A plain string value; a scalar YAML typed otherwise is reported with a hint to quote it.
fn string(node: Node) -> Result<String, String> {
    match node {
        Node::Str(s, _) => Ok(s),
        other if other.is_scalar() => Err(format!("{}; quote the value", expected("a string", &other))),
        other => Err(expected("a string", &other)),
    }
}

/// A secret: always a string. A scalar that YAML typed as something else, or an unquoted one
/// that another YAML parser would (YAML 1.1 reads `yes` as true and `0123` as octal), is an
/// error rather than a silently different secret. The value itself is never quoted back.
fn secret(node: Node) -> Result<String, String> {
    let retyped_as = match &node {
        Node::Str(s, Style::Plain) => yaml_retype(s),
        Node::Str(_, Style::Quoted) => None,
        Node::Bool(_) => Some("a boolean"),
        Node::Int(_) | Node::Float(_) => Some("a number"),
        Node::Null => Some("null"),
        Node::Seq(_) | Node::Map(_) => return Err(expected("a string", &node)),
    };
    match (retyped_as, node) {
        (Some(what), _) => {
            Err(format!("secrets are read as strings, but this unquoted value reads as {what}: put it in quotes"))
        }
        (None, Node::Str(s, _)) => Ok(s),
        (None, other) => Err(expected("a string", &other)),
    }
}

/// What YAML 1.1 or 1.2 would make of this plain scalar, if not a string.
fn yaml_retype(s: &str) -> Option<&'static str> {
    const BOOLS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ];
    const NULLS: &[&str] = &["", "~", "null", "Null", "NULL"];
    if BOOLS.contains(&s) {
        Some("a boolean")
    } else if NULLS.contains(&s) {
        Some("null")
    } else if looks_numeric(s) {
        Some("a number")
    } else {
        None
    }
}

/// Integers and floats in the YAML 1.1 and 1.2 forms: signs, `_` separators, `0x`/`0o`/`0b`,
/// leading-zero octal, sexagesimal `1:30`, exponents, `.inf` and `.nan`.
fn looks_numeric(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let t: String = unsigned.chars().filter(|&c| c != '_').collect();
    if matches!(t.as_str(), ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    if !t.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return false;
    }
    let all = |digits: &str, radix: u32| !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    if let Some(digits) = t.strip_prefix("0x") {
        return all(digits, 16);
    }
    if let Some(digits) = t.strip_prefix("0o") {
        return all(digits, 8);
    }
    if let Some(digits) = t.strip_prefix("0b") {
        return all(digits, 2);
    }
    if t.contains(':') {
        return t.split(':').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    }
    t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) && t.parse::<f64>().is_ok()
}

/// One retired entry: a bare string or `{value, expires_at}`.
fn retired(node: Node, is_secret: bool, key: &str, origin: &str, report: &mut Report) -> Option<Retired<String>> {
    let read_value = |node: Node| if is_secret { secret(node) } else { string(node) };
    match node {
        Node::Map(entries) => {
            let mut value = None;
            let mut expires_at = None;
            let mut ok = true;
            for (name, field) in entries {
                let field_key = format!("{key}.{name}");
                match name.as_str() {
                    "value" => match read_value(field) {
                        Ok(v) => value = Some(v),
                        Err(message) => {
                            ok = false;
                            report.problem(field_key, format!("{message}{origin}"));
                        }
                    },
                    "expires_at" => match field {
                        Node::Null => {}
                        // The value is not quoted back: in a list of secrets, a misplaced
                        // secret could land here.
                        Node::Str(s, _) => match OffsetDateTime::parse(&s, &Rfc3339) {
                            Ok(t) => expires_at = Some(t),
                            Err(_) => {
                                ok = false;
                                report.problem(
                                    field_key,
                                    format!("expected an RFC 3339 timestamp such as \"2030-01-01T00:00:00Z\"{origin}"),
                                );
                            }
                        },
                        other => {
                            ok = false;
                            report.problem(field_key, format!("{}{origin}", expected("an RFC 3339 timestamp", &other)));
                        }
                    },
                    _ => {
                        ok = false;
                        report.problem(field_key, format!("unknown key{origin}"));
                    }
                }
            }
            match (ok, value) {
                (true, Some(value)) => Some(Retired { value, expires_at }),
                (true, None) => {
                    report.problem(format!("{key}.value"), format!("required{origin}"));
                    None
                }
                (false, _) => None,
            }
        }
        other => match read_value(other) {
            Ok(value) => Some(Retired { value, expires_at: None }),
            Err(message) => {
                report.problem(key, format!("{message}{origin}"));
                None
            }
        },
    }
}

/// One `multitenancy.networks` entry, checked and then ignored (multitenancy is commercial).
fn network(node: Node, key: &str, origin: &str, report: &mut Report) {
    let Node::Map(entries) = node else {
        report.problem(key, format!("{}{origin}", expected("a mapping", &node)));
        return;
    };
    let mut has_hostname = false;
    let mut has_id = false;
    for (name, field) in entries {
        let field_key = format!("{key}.{name}");
        match (name.as_str(), string(field)) {
            ("hostname" | "config_path" | "id", Err(message)) => {
                report.problem(field_key, format!("{message}{origin}"));
            }
            ("hostname", Ok(_)) => has_hostname = true,
            ("id", Ok(id)) => match uuid::Uuid::parse_str(&id) {
                Ok(_) => has_id = true,
                Err(_) => report.problem(field_key, format!("expected a UUID, got {id:?}{origin}")),
            },
            ("config_path", Ok(_)) => {}
            _ => report.problem(field_key, format!("unknown key{origin}")),
        }
    }
    if !has_hostname {
        report.problem(format!("{key}.hostname"), format!("required{origin}"));
    }
    if !has_id {
        report.problem(format!("{key}.id"), format!("required{origin}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Building the typed config
// ---------------------------------------------------------------------------------------------

/// Checked values by key. Getters take a value out; a key that was absent or failed its check
/// reads as absent, and the problem is already reported.
#[derive(Default)]
struct Values {
    map: HashMap<&'static str, Val>,
    /// Keys set in the file or the environment, whether or not their value passed its check.
    present: HashSet<&'static str>,
}

impl Values {
    fn has(&self, key: &str) -> bool {
        self.present.contains(key)
    }

    fn take(&mut self, key: &'static str) -> Option<Val> {
        debug_assert!(spec_of(key).is_some(), "{key} is not in KEYS");
        self.map.remove(key)
    }

    fn str(&mut self, key: &'static str) -> Option<String> {
        match self.take(key)? {
            Val::Str(s) => Some(s),
            _ => kind_mismatch(key),
        }
    }

    fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.take(key) {
            Some(Val::Bool(b)) => b,
            None => default,
            Some(_) => kind_mismatch(key).unwrap_or(default),
        }
    }

    /// Range-checked against the key's kind, which must fit `T`.
    fn int<T: TryFrom<u64>>(&mut self, key: &'static str, default: T) -> T {
        match self.take(key) {
            Some(Val::Int(i)) => T::try_from(i).unwrap_or(default),
            None => default,
            Some(_) => kind_mismatch(key).unwrap_or(default),
        }
    }

    fn duration(&mut self, key: &'static str) -> Option<Duration> {
        match self.take(key)? {
            Val::Duration(d) => Some(d),
            _ => kind_mismatch(key),
        }
    }

    fn list(&mut self, key: &'static str) -> Vec<String> {
        match self.take(key) {
            Some(Val::List(items)) => items,
            None => Vec::new(),
            Some(_) => kind_mismatch(key).unwrap_or_default(),
        }
    }

    fn secret(&mut self, key: &'static str) -> Option<Secret> {
        match self.take(key)? {
            Val::Secret(s) => Some(s),
            _ => kind_mismatch(key),
        }
    }

    fn retired_secrets(&mut self, key: &'static str) -> Vec<Retired<Secret>> {
        match self.take(key) {
            Some(Val::RetiredSecrets(items)) => items,
            None => Vec::new(),
            Some(_) => kind_mismatch(key).unwrap_or_default(),
        }
    }

    fn retired_strs(&mut self, key: &'static str) -> Vec<Retired<String>> {
        match self.take(key) {
            Some(Val::RetiredStrs(items)) => items,
            None => Vec::new(),
            Some(_) => kind_mismatch(key).unwrap_or_default(),
        }
    }
}

/// A getter used on a key of another kind: a bug in this module, caught by the tests.
fn kind_mismatch<T>(key: &str) -> Option<T> {
    debug_assert!(false, "{key} read with a getter of the wrong kind");
    None
}

fn build(v: &mut Values, now: OffsetDateTime, report: &mut Report) -> Config {
    let serve = build_serve(v, report);
    let credentials = build_credentials(v, now, report);
    let secrets = build_secrets(v, now, report);

    let dsn = match v.str("db.dsn") {
        None => Dsn::Redb(PathBuf::from("talos.redb")),
        Some(text) => Dsn::parse(&text).unwrap_or_else(|e| {
            report.problem("db.dsn", e.to_string());
            Dsn::Memory
        }),
    };

    let snapshot = SnapshotConfig {
        refresh_interval: v.duration("snapshot.refresh_interval").unwrap_or(Duration::from_millis(100)),
        max_staleness: v.duration("snapshot.max_staleness").unwrap_or(Duration::from_secs(30)),
    };
    if snapshot.max_staleness < snapshot.refresh_interval {
        report.problem(
            "snapshot.max_staleness",
            format!(
                "must not be shorter than snapshot.refresh_interval ({})",
                format_proto_duration(snapshot.refresh_interval)
            ),
        );
    }

    let cache = Cache {
        kind: v.str("cache.type").unwrap_or_else(|| "noop".to_owned()),
        enabled: v.bool("cache.enabled", false),
        ttl: v.duration("cache.ttl").unwrap_or(Duration::from_secs(5 * 60)),
    };

    let last_used = LastUsed {
        queue_size: v.int("last_used.queue_size", 10_000),
        flush_size: v.int("last_used.flush_size", 100),
        flush_interval: v.duration("last_used.flush_interval").unwrap_or(Duration::from_secs(30)),
        num_workers: v.int("last_used.num_workers", 4),
    };
    if last_used.flush_size > last_used.queue_size {
        report.problem(
            "last_used.flush_size",
            format!("must not exceed last_used.queue_size ({})", last_used.queue_size),
        );
    }

    Config {
        serve,
        credentials,
        secrets,
        db: Db { dsn },
        snapshot,
        cache,
        quota: Quota { api_keys_max: v.int("quota.api_keys_max", 0) },
        log: Log {
            level: v.str("log.level").unwrap_or_else(|| "info".to_owned()),
            format: v.str("log.format").unwrap_or_else(|| "json".to_owned()),
        },
        last_used,
    }
}

fn build_serve(v: &mut Values, report: &mut Report) -> Serve {
    let mut listen = |host_key: &'static str, port_key: &'static str, port: u16| {
        let host = v.str(host_key).unwrap_or_else(|| "0.0.0.0".to_owned());
        if host.is_empty() {
            report.problem(host_key, "must not be empty (use 0.0.0.0 to listen on every interface)");
        }
        Listen { host, port: v.int(port_key, port) }
    };
    let http = listen("serve.http.host", "serve.http.port", 4420);
    let metrics = listen("serve.metrics.host", "serve.metrics.port", 4422);

    let parallelism = std::thread::available_parallelism().map_or(1, usize::from).min(1024);
    let client_ip_source = match v.str("serve.http.client_ip_source").as_deref() {
        None | Some("CLIENT_IP_SOURCE_UNSPECIFIED" | "REMOTE_ADDR") => ClientIpSource::RemoteAddr,
        Some("CF_CONNECTING_IP") => ClientIpSource::CfConnectingIp,
        Some("X_FORWARDED_FOR") => ClientIpSource::XForwardedFor,
        Some("X_REAL_IP") => ClientIpSource::XRealIp,
        Some("TRUE_CLIENT_IP") => ClientIpSource::TrueClientIp,
        Some(other) => {
            report.warn(format!(
                "serve.http.client_ip_source: unknown value {other:?}, using the peer address (REMOTE_ADDR)"
            ));
            ClientIpSource::RemoteAddr
        }
    };
    let defaults = Timeouts::default();
    let timeouts = Timeouts {
        read_header: v.duration("serve.http.timeouts.read_header").unwrap_or(defaults.read_header),
        read: v.duration("serve.http.timeouts.read").unwrap_or(defaults.read),
        write: v.duration("serve.http.timeouts.write").unwrap_or(defaults.write),
        idle: v.duration("serve.http.timeouts.idle").unwrap_or(defaults.idle),
    };
    if timeouts.read < timeouts.read_header {
        report.problem(
            "serve.http.timeouts.read",
            format!(
                "must not be shorter than serve.http.timeouts.read_header ({})",
                format_proto_duration(timeouts.read_header)
            ),
        );
    }
    Serve {
        http,
        metrics,
        workers: v.int("serve.workers", parallelism),
        client_ip_source,
        trust_forwarded_host: v.bool("serve.http.trust_forwarded_host", false),
        exclude_health_from_request_log: v.bool("serve.http.request_log.exclude_health_endpoints", false),
        data_plane_log_every: v.int("serve.http.request_log.data_plane_sample_every", 0),
        max_connections_per_worker: v.int("serve.max_connections_per_worker", 10_000),
        pin_workers: v.bool("serve.pin_workers", false),
        io_driver: match v.str("serve.io_driver").as_deref() {
            Some("io_uring") => IoDriverChoice::IoUring,
            _ => IoDriverChoice::Epoll,
        },
        timeouts,
    }
}

fn build_credentials(v: &mut Values, now: OffsetDateTime, report: &mut Report) -> Credentials {
    let issuer = match v.str("credentials.issuer") {
        Some(issuer) if !issuer.is_empty() => issuer,
        Some(_) => {
            report.problem("credentials.issuer", "must not be empty");
            String::new()
        }
        None if v.has("credentials.issuer") => String::new(), // already reported
        None => {
            report.problem("credentials.issuer", "required");
            String::new()
        }
    };
    let issuer_retired = v.retired_strs("credentials.issuer_retired");
    for (i, entry) in issuer_retired.iter().enumerate() {
        if entry.value.is_empty() {
            report.problem(format!("credentials.issuer_retired[{i}]"), "must not be empty");
        }
    }
    let issuer_retired = drop_expired("credentials.issuer_retired", issuer_retired, now, report);

    let default_ttl = v.duration("credentials.api_keys.default_ttl");
    let max_ttl = v.duration("credentials.api_keys.max_ttl").unwrap_or(Duration::from_secs(8760 * 3600));
    if let Some(ttl) = default_ttl {
        if !max_ttl.is_zero() && ttl > max_ttl {
            report.problem(
                "credentials.api_keys.default_ttl",
                format!("must not exceed credentials.api_keys.max_ttl ({})", format_proto_duration(max_ttl)),
            );
        }
    }

    let prefix = Prefixes {
        current: checked_prefix(v, "credentials.api_keys.prefix.current", 16, report)
            .unwrap_or_else(|| "ory_ak".to_owned()),
        retired: checked_prefixes(v, "credentials.api_keys.prefix.retired", 16, report),
        public_current: checked_prefix(v, "credentials.api_keys.prefix.public_current", 16, report),
        public_retired: checked_prefixes(v, "credentials.api_keys.prefix.public_retired", 16, report),
    };
    if prefix.public_current.as_ref() == Some(&prefix.current) {
        report.problem(
            "credentials.api_keys.prefix.public_current",
            "must differ from credentials.api_keys.prefix.current",
        );
    }

    let signing_key_urls = "credentials.derived_tokens.jwt.signing_keys.urls";
    let legacy_urls = "credentials.derived_tokens.jwt.jwks.urls";
    let (urls_key, urls) = match (v.has(signing_key_urls), v.has(legacy_urls)) {
        (_, false) => (signing_key_urls, v.list(signing_key_urls)),
        (false, true) => {
            report.warn(format!("{legacy_urls} is deprecated; use {signing_key_urls}"));
            (legacy_urls, v.list(legacy_urls))
        }
        (true, true) => {
            report.warn(format!("{legacy_urls} is ignored because {signing_key_urls} is set"));
            (signing_key_urls, v.list(signing_key_urls))
        }
    };
    for (i, url) in urls.iter().enumerate() {
        // The URL carries the private key set, so only its scheme may be quoted back.
        if !url.starts_with("base64://") {
            let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
            let found = if scheme.is_empty() || !is_url_scheme(scheme) {
                "a value without a scheme".to_owned()
            } else {
                format!("a {scheme:?} URL")
            };
            report.problem(format!("{urls_key}[{i}]"), format!("must be a base64:// URL, found {found}"));
        }
    }

    let macaroon_prefix = checked_prefix(v, "credentials.derived_tokens.macaroon.prefix.current", 8, report)
        .unwrap_or_else(|| "mc".to_owned());
    let macaroon_prefix_retired = checked_prefixes(v, "credentials.derived_tokens.macaroon.prefix.retired", 8, report);
    // A presented credential is tried as a macaroon before as an API key (talos-api.md §3.3),
    // so an API key prefix equal to a macaroon prefix would make those keys unverifiable.
    let macaroon_prefixes: Vec<&String> = std::iter::once(&macaroon_prefix).chain(&macaroon_prefix_retired).collect();
    let api_key_prefixes = [
        ("credentials.api_keys.prefix.current", std::slice::from_ref(&prefix.current)),
        ("credentials.api_keys.prefix.retired", prefix.retired.as_slice()),
        ("credentials.api_keys.prefix.public_current", prefix.public_current.as_slice()),
        ("credentials.api_keys.prefix.public_retired", prefix.public_retired.as_slice()),
    ];
    for (key, values) in api_key_prefixes {
        for value in values {
            if macaroon_prefixes.contains(&value) {
                report.problem(key, format!("prefix {value:?} is also a macaroon prefix"));
            }
        }
    }

    Credentials {
        issuer,
        issuer_retired,
        clock_skew: v.duration("credentials.clock_skew").unwrap_or(Duration::from_secs(5 * 60)),
        api_keys: ApiKeys { default_ttl, max_ttl, prefix },
        derived_tokens: DerivedTokens {
            default_ttl: v.duration("credentials.derived_tokens.default_ttl").unwrap_or(Duration::from_secs(3600)),
            jwt_signing_key_id: v.str("credentials.derived_tokens.jwt.signing_key_id").unwrap_or_default(),
            jwt_signing_key_urls: urls,
            macaroon_prefix,
            macaroon_prefix_retired,
        },
    }
}

/// `^[a-zA-Z0-9_]{1,max}$`, as Ory's schema requires of key and macaroon prefixes.
fn prefix_problem(value: &str, max: usize) -> Option<String> {
    let valid = (1..=max).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (!valid).then(|| format!("invalid prefix {value:?}: must be 1 to {max} characters from a-z, A-Z, 0-9 and _"))
}

fn checked_prefix(v: &mut Values, key: &'static str, max: usize, report: &mut Report) -> Option<String> {
    let value = v.str(key)?;
    match prefix_problem(&value, max) {
        Some(message) => {
            report.problem(key, message);
            None
        }
        None => Some(value),
    }
}

fn checked_prefixes(v: &mut Values, key: &'static str, max: usize, report: &mut Report) -> Vec<String> {
    let values = v.list(key);
    for (i, value) in values.iter().enumerate() {
        if let Some(message) = prefix_problem(value, max) {
            report.problem(format!("{key}[{i}]"), message);
        }
    }
    values
}

/// Secrets shorter than this are refused (Ory's schema: `minLength: 32`).
const MIN_SECRET_CHARS: usize = 32;

fn build_secrets(v: &mut Values, now: OffsetDateTime, report: &mut Report) -> Secrets {
    let hmac = secret_set(v, "secrets.hmac.current", "secrets.hmac.retired", now, report).unwrap_or_else(|| {
        if !v.has("secrets.hmac.current") {
            report.problem("secrets.hmac.current", "required");
        }
        SecretSet { current: Secret::new(""), retired: Vec::new() }
    });

    let pagination_set = v.has("secrets.pagination.current") || v.has("secrets.pagination.retired");
    let default_set = v.has("secrets.default.current") || v.has("secrets.default.retired");
    if pagination_set && default_set {
        report.warn("secrets.default is ignored because secrets.pagination is set");
    }
    let (current, retired) = if pagination_set || !default_set {
        ("secrets.pagination.current", "secrets.pagination.retired")
    } else {
        ("secrets.default.current", "secrets.default.retired")
    };
    let (has_current, has_retired) = (v.has(current), v.has(retired));
    let pagination = secret_set(v, current, retired, now, report);
    if !has_current && has_retired {
        report.problem(current, format!("required when {retired} is set"));
    }
    Secrets { hmac, pagination }
}

/// `None` when `current` is absent or invalid (an invalid one is already reported).
fn secret_set(
    v: &mut Values,
    current_key: &'static str,
    retired_key: &'static str,
    now: OffsetDateTime,
    report: &mut Report,
) -> Option<SecretSet> {
    let current = v.secret(current_key);
    if let Some(secret) = &current {
        check_secret_length(current_key.to_owned(), secret, report);
    }
    let retired = v.retired_secrets(retired_key);
    for (i, entry) in retired.iter().enumerate() {
        check_secret_length(format!("{retired_key}[{i}]"), &entry.value, report);
    }
    let retired = drop_expired(retired_key, retired, now, report);
    Some(SecretSet { current: current?, retired })
}

fn check_secret_length(key: String, secret: &Secret, report: &mut Report) {
    let chars = secret.expose().chars().count();
    if chars == 0 {
        report.problem(key, "must not be empty");
    } else if chars < MIN_SECRET_CHARS {
        report.problem(key, format!("must be at least {MIN_SECRET_CHARS} characters long, this one has {chars}"));
    }
}

/// Drops entries whose `expires_at` has passed (the boundary is exclusive: an entry is active
/// while `now < expires_at`), with a warning naming each.
fn drop_expired<T>(key: &str, entries: Vec<Retired<T>>, now: OffsetDateTime, report: &mut Report) -> Vec<Retired<T>> {
    let mut kept = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        match entry.expires_at {
            Some(at) if at <= now => {
                let when = at.format(&Rfc3339).unwrap_or_else(|_| at.to_string());
                report.warn(format!("{key}[{i}]: expired at {when}, ignored"));
            }
            _ => kept.push(entry),
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid `secrets.hmac.current`.
    macro_rules! hmac {
        () => {
            "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\"}}\n"
        };
    }
    /// A valid `credentials.issuer`.
    macro_rules! issuer {
        () => {
            "credentials: {issuer: \"https://api.example.com\"}\n"
        };
    }
    /// The smallest valid document plus `$extra` (top-level keys other than those two).
    macro_rules! base {
        ($extra:literal) => {
            concat!(issuer!(), hmac!(), $extra)
        };
    }

    type Probe = fn(&Config) -> String;
    const NOTHING: Probe = |_| String::new();

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// What loading gives: the probe's rendering of the config and a `warning: …` line per
    /// warning, or an `error: …` line per problem.
    fn outcome(yaml: &str, vars: &[(&str, &str)], probe: Probe) -> String {
        match Config::from_yaml_str(yaml, &env(vars)) {
            Ok((config, warnings)) => {
                let mut lines = vec![probe(&config)];
                lines.retain(|line| !line.is_empty());
                lines.extend(warnings.iter().map(|w| format!("warning: {w}")));
                lines.join("\n")
            }
            Err(errors) => errors.0.iter().map(|p| format!("error: {p}")).collect::<Vec<_>>().join("\n"),
        }
    }

    fn check(yaml: &str, vars: &[(&str, &str)], probe: Probe, expected: &str) {
        assert_eq!(outcome(yaml, vars, probe), expected, "\n--- yaml:\n{yaml}\n--- env: {vars:?}");
    }

    fn load(yaml: &str, vars: &[(&str, &str)]) -> Config {
        match Config::from_yaml_str(yaml, &env(vars)) {
            Ok((config, _)) => config,
            Err(errors) => panic!("config should load:\n{errors}"),
        }
    }

    #[test]
    fn defaults() {
        let c = load(base!(""), &[]);
        assert_eq!(c.serve.http, Listen { host: "0.0.0.0".into(), port: 4420 });
        assert_eq!(c.serve.metrics, Listen { host: "0.0.0.0".into(), port: 4422 });
        let parallelism = std::thread::available_parallelism().map_or(1, usize::from).min(1024);
        assert_eq!(c.serve.workers, parallelism);
        assert_eq!(c.serve.client_ip_source, ClientIpSource::RemoteAddr);
        assert!(!c.serve.trust_forwarded_host);
        assert!(!c.serve.exclude_health_from_request_log);
        assert_eq!(c.serve.data_plane_log_every, 0);
        assert_eq!(c.serve.max_connections_per_worker, 10_000);
        assert!(!c.serve.pin_workers);
        assert_eq!(c.credentials.issuer, "https://api.example.com");
        assert!(c.credentials.issuer_retired.is_empty());
        assert_eq!(c.credentials.clock_skew, Duration::from_secs(300));
        assert_eq!(c.credentials.api_keys.default_ttl, None);
        assert_eq!(c.credentials.api_keys.max_ttl, Duration::from_secs(8760 * 3600));
        assert_eq!(c.credentials.api_keys.prefix.current, "ory_ak");
        assert!(c.credentials.api_keys.prefix.retired.is_empty());
        assert_eq!(c.credentials.api_keys.prefix.public_current, None);
        assert!(c.credentials.api_keys.prefix.public_retired.is_empty());
        let derived = &c.credentials.derived_tokens;
        assert_eq!(derived.default_ttl, Duration::from_secs(3600));
        assert_eq!(derived.jwt_signing_key_id, "");
        assert!(derived.jwt_signing_key_urls.is_empty());
        assert_eq!(derived.macaroon_prefix, "mc");
        assert!(derived.macaroon_prefix_retired.is_empty());
        assert_eq!(c.secrets.hmac.current.expose(), "0123456789abcdef0123456789abcdef");
        assert!(c.secrets.hmac.retired.is_empty());
        assert!(c.secrets.pagination.is_none());
        assert_eq!(c.db.dsn, Dsn::Redb("talos.redb".into()));
        assert_eq!(c.snapshot.refresh_interval, Duration::from_millis(100));
        assert_eq!(c.snapshot.max_staleness, Duration::from_secs(30));
        assert_eq!((c.cache.kind.as_str(), c.cache.enabled, c.cache.ttl), ("noop", false, Duration::from_secs(300)));
        assert_eq!(c.quota.api_keys_max, 0);
        assert_eq!((c.log.level.as_str(), c.log.format.as_str()), ("info", "json"));
        let l = &c.last_used;
        assert_eq!(
            (l.queue_size, l.flush_size, l.flush_interval, l.num_workers),
            (10_000, 100, Duration::from_secs(30), 4)
        );
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn serve() {
        check(base!("serve: {http: {port: 80}}"), &[], |c| c.serve.http.port.to_string(), "80");
        check(base!("serve: {http: {port: 0}}"), &[], |c| c.serve.http.port.to_string(), "0");
        check(
            base!("serve: {http: {host: 127.0.0.1}, metrics: {host: \"::1\", port: 9000}}"),
            &[],
            |c| format!("{:?} {:?}", c.serve.http, c.serve.metrics),
            "Listen { host: \"127.0.0.1\", port: 4420 } Listen { host: \"::1\", port: 9000 }",
        );
        check(
            base!("serve: {http: {port: 65536}}"),
            &[],
            NOTHING,
            "error: serve.http.port: must be between 0 and 65535, got 65536",
        );
        check(
            base!("serve: {http: {port: -1}}"),
            &[],
            NOTHING,
            "error: serve.http.port: must be between 0 and 65535, got -1",
        );
        check(
            base!("serve: {http: {port: \"80\"}}"),
            &[],
            NOTHING,
            "error: serve.http.port: expected an integer, found a string",
        );
        check(
            base!("serve: {http: {port: 80.5}}"),
            &[],
            NOTHING,
            "error: serve.http.port: expected an integer, found a number",
        );
        check(
            base!("serve: {http: {host: \"\"}}"),
            &[],
            NOTHING,
            "error: serve.http.host: must not be empty (use 0.0.0.0 to listen on every interface)",
        );
        check(
            base!("serve: {max_connections_per_worker: 500, pin_workers: true, http: {request_log: {data_plane_sample_every: 100}}}"),
            &[],
            |c| format!("{} {} {}", c.serve.max_connections_per_worker, c.serve.pin_workers, c.serve.data_plane_log_every),
            "500 true 100",
        );
        check(
            base!("serve: {http: {timeouts: {read_header: 1s, read: 2s, write: 3s, idle: 4m}}}"),
            &[],
            |c| format!("{:?}", c.serve.timeouts),
            "Timeouts { read_header: 1s, read: 2s, write: 3s, idle: 240s }",
        );
        check(
            base!("serve: {}"),
            &[("TALOS_SERVE_HTTP_TIMEOUTS_IDLE", "90s")],
            |c| format!("{:?}", c.serve.timeouts),
            "Timeouts { read_header: 5s, read: 15s, write: 15s, idle: 90s }",
        );
        check(
            base!("serve: {http: {timeouts: {read_header: 20s, idle: 0s}}}"),
            &[],
            NOTHING,
            "error: serve.http.timeouts.idle: must be greater than 0, got \"0s\"\n\
             error: serve.http.timeouts.read: must not be shorter than serve.http.timeouts.read_header (20s)",
        );
        check(base!("serve: {io_driver: io_uring}"), &[], |c| format!("{:?}", c.serve.io_driver), "IoUring");
        check(base!("serve: {}"), &[], |c| format!("{:?}", c.serve.io_driver), "Epoll");
        check(
            base!("serve: {io_driver: kqueue}"),
            &[],
            NOTHING,
            "error: serve.io_driver: must be one of \"io_uring\", \"epoll\", got \"kqueue\"",
        );
        check(
            base!("serve: {max_connections_per_worker: 0}"),
            &[],
            NOTHING,
            "error: serve.max_connections_per_worker: must be between 1 and 1000000, got 0",
        );
        check(base!("serve: {workers: 8}"), &[], |c| c.serve.workers.to_string(), "8");
        check(base!("serve: {workers: 0}"), &[], NOTHING, "error: serve.workers: must be between 1 and 1024, got 0");
        check(
            base!("serve: {workers: 1025}"),
            &[],
            NOTHING,
            "error: serve.workers: must be between 1 and 1024, got 1025",
        );
        check(
            base!("serve: {http: {client_ip_source: X_FORWARDED_FOR}}"),
            &[],
            |c| format!("{:?}", c.serve.client_ip_source),
            "XForwardedFor",
        );
        check(
            base!("serve: {http: {client_ip_source: CF_CONNECTING_IP}}"),
            &[],
            |c| format!("{:?}", c.serve.client_ip_source),
            "CfConnectingIp",
        );
        check(
            base!("serve: {http: {client_ip_source: X_REAL_IP}}"),
            &[],
            |c| format!("{:?}", c.serve.client_ip_source),
            "XRealIp",
        );
        check(
            base!("serve: {http: {client_ip_source: TRUE_CLIENT_IP}}"),
            &[],
            |c| format!("{:?}", c.serve.client_ip_source),
            "TrueClientIp",
        );
        check(
            base!("serve: {http: {client_ip_source: CLIENT_IP_SOURCE_UNSPECIFIED}}"),
            &[],
            |c| format!("{:?}", c.serve.client_ip_source),
            "RemoteAddr",
        );
        check(base!("serve: {http: {client_ip_source: FORWARDED}}"), &[], |c| format!("{:?}", c.serve.client_ip_source), "RemoteAddr\nwarning: serve.http.client_ip_source: unknown value \"FORWARDED\", using the peer address (REMOTE_ADDR)");
        check(
            base!("serve: {http: {trust_forwarded_host: true, request_log: {exclude_health_endpoints: true}}}"),
            &[],
            |c| format!("{} {}", c.serve.trust_forwarded_host, c.serve.exclude_health_from_request_log),
            "true true",
        );
        check(
            base!("serve: {http: {trust_forwarded_host: yes}}"),
            &[],
            NOTHING,
            "error: serve.http.trust_forwarded_host: expected a boolean (true or false), found a string",
        );
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn credentials() {
        check(
            concat!(hmac!(), "credentials: {issuer: \"\"}"),
            &[],
            NOTHING,
            "error: credentials.issuer: must not be empty",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: 42}"),
            &[],
            NOTHING,
            "error: credentials.issuer: expected a string, found an integer; quote the value",
        );
        check(
            concat!(
                hmac!(),
                "credentials: {issuer: a, issuer_retired: [b, {value: c, expires_at: \"2999-01-01T00:00:00Z\"}]}"
            ),
            &[],
            |c| {
                format!(
                    "{:?}",
                    c.credentials
                        .issuer_retired
                        .iter()
                        .map(|r| (r.value.as_str(), r.expires_at.map(|t| t.year())))
                        .collect::<Vec<_>>()
                )
            },
            "[(\"b\", None), (\"c\", Some(2999))]",
        );
        check(
            concat!(
                hmac!(),
                "credentials: {issuer: a, issuer_retired: [b, {value: c, expires_at: \"2000-01-01T00:00:00Z\"}]}"
            ),
            &[],
            |c| c.credentials.issuer_retired.len().to_string(),
            "1\nwarning: credentials.issuer_retired[1]: expired at 2000-01-01T00:00:00Z, ignored",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, issuer_retired: [\"\"]}"),
            &[],
            NOTHING,
            "error: credentials.issuer_retired[0]: must not be empty",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, clock_skew: 10m}"),
            &[],
            |c| format!("{:?}", c.credentials.clock_skew),
            "600s",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, clock_skew: 601s}"),
            &[],
            NOTHING,
            "error: credentials.clock_skew: must be at most 600s, got \"601s\"",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: 720h, max_ttl: 1y}}"),
            &[],
            |c| format!("{:?} {:?}", c.credentials.api_keys.default_ttl, c.credentials.api_keys.max_ttl),
            "Some(2592000s) 31536000s",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {max_ttl: 0s}}"),
            &[],
            |c| format!("{:?}", c.credentials.api_keys.max_ttl),
            "0ns",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: 9000h}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.default_ttl: must not exceed credentials.api_keys.max_ttl (31536000s)",
        );
        check(concat!(hmac!(), "credentials: {issuer: a, derived_tokens: {default_ttl: 15m, jwt: {signing_key_id: k1, signing_keys: {urls: [\"base64://e30=\"]}}}}"), &[], |c| format!("{:?} {} {:?}", c.credentials.derived_tokens.default_ttl, c.credentials.derived_tokens.jwt_signing_key_id, c.credentials.derived_tokens.jwt_signing_key_urls), "900s k1 [\"base64://e30=\"]");
        check(concat!(hmac!(), "credentials: {issuer: a, derived_tokens: {jwt: {jwks: {urls: [\"base64://e30=\"]}}}}"), &[], |c| c.credentials.derived_tokens.jwt_signing_key_urls.len().to_string(), "1\nwarning: credentials.derived_tokens.jwt.jwks.urls is deprecated; use credentials.derived_tokens.jwt.signing_keys.urls");
        check(concat!(hmac!(), "credentials: {issuer: a, derived_tokens: {jwt: {signing_keys: {urls: [\"base64://e30=\", \"https://keys.example.com/jwks.json\", \"e30=\"]}}}}"), &[], NOTHING, "error: credentials.derived_tokens.jwt.signing_keys.urls[1]: must be a base64:// URL, found a \"https\" URL\nerror: credentials.derived_tokens.jwt.signing_keys.urls[2]: must be a base64:// URL, found a value without a scheme");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn durations() {
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: 5}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.default_ttl: missing unit in duration \"5\"",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: \"5\"}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.default_ttl: missing unit in duration \"5\"",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: 1.5}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.default_ttl: missing unit in duration \"1.5\"",
        );
        check(concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: 5x}}"), &[], NOTHING, "error: credentials.api_keys.default_ttl: unknown unit \"x\" in duration \"5x\" (valid units: ns, us, ms, s, m, h, d, w, mo, y)");
        check(concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: 30days}}"), &[], NOTHING, "error: credentials.api_keys.default_ttl: unknown unit \"days\" in duration \"30days\" (valid units: ns, us, ms, s, m, h, d, w, mo, y)");
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: -5m}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.default_ttl: negative duration \"-5m\" is not allowed",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: 0s}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.default_ttl: must be greater than 0, got \"0s\"",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: [5m]}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.default_ttl: expected a duration such as \"5m\", found a list",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {default_ttl: }}"),
            &[],
            |c| format!("{:?}", c.credentials.api_keys.default_ttl),
            "None",
        );
        check(
            base!("snapshot: {refresh_interval: 1ms, max_staleness: 1m}"),
            &[],
            |c| format!("{:?} {:?}", c.snapshot.refresh_interval, c.snapshot.max_staleness),
            "1ms 60s",
        );
        check(
            base!("snapshot: {refresh_interval: 0s}"),
            &[],
            NOTHING,
            "error: snapshot.refresh_interval: must be at least 0.001s, got \"0s\"",
        );
        check(
            base!("snapshot: {refresh_interval: 10s, max_staleness: 5s}"),
            &[],
            NOTHING,
            "error: snapshot.max_staleness: must not be shorter than snapshot.refresh_interval (10s)",
        );
        check(
            base!("last_used: {flush_interval: 5}"),
            &[],
            NOTHING,
            "error: last_used.flush_interval: missing unit in duration \"5\"",
        );
        check(base!("cache: {redis: {timeout: 3 s}}"), &[], NOTHING, "error: cache.redis.timeout: unknown unit \" s\" in duration \"3 s\" (valid units: ns, us, ms, s, m, h, d, w, mo, y)");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn prefixes() {
        check(concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {current: sk_live, retired: [ory_ak, old], public_current: pk_live, public_retired: [pk]}}}"), &[], |c| format!("{:?}", c.credentials.api_keys.prefix), "Prefixes { current: \"sk_live\", retired: [\"ory_ak\", \"old\"], public_current: Some(\"pk_live\"), public_retired: [\"pk\"] }");
        check(concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {current: sk-live}}}"), &[], NOTHING, "error: credentials.api_keys.prefix.current: invalid prefix \"sk-live\": must be 1 to 16 characters from a-z, A-Z, 0-9 and _");
        check(concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {current: \"\"}}}"), &[], NOTHING, "error: credentials.api_keys.prefix.current: invalid prefix \"\": must be 1 to 16 characters from a-z, A-Z, 0-9 and _");
        check(concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {current: abcdefghijklmnopq}}}"), &[], NOTHING, "error: credentials.api_keys.prefix.current: invalid prefix \"abcdefghijklmnopq\": must be 1 to 16 characters from a-z, A-Z, 0-9 and _");
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {current: abcdefghijklmnop}}}"),
            &[],
            |c| c.credentials.api_keys.prefix.current.clone(),
            "abcdefghijklmnop",
        );
        check(concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {retired: [ok, not ok]}}}"), &[], NOTHING, "error: credentials.api_keys.prefix.retired[1]: invalid prefix \"not ok\": must be 1 to 16 characters from a-z, A-Z, 0-9 and _");
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {public_current: ory_ak}}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.prefix.public_current: must differ from credentials.api_keys.prefix.current",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {retired: old}}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.prefix.retired: expected a list, found a string",
        );
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {retired: [1]}}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.prefix.retired[0]: expected a string, found an integer; quote the value",
        );
        check(
            concat!(
                hmac!(),
                "credentials: {issuer: a, derived_tokens: {macaroon: {prefix: {current: mac_v2, retired: [mc]}}}}"
            ),
            &[],
            |c| {
                format!(
                    "{} {:?}",
                    c.credentials.derived_tokens.macaroon_prefix, c.credentials.derived_tokens.macaroon_prefix_retired
                )
            },
            "mac_v2 [\"mc\"]",
        );
        check(concat!(hmac!(), "credentials: {issuer: a, derived_tokens: {macaroon: {prefix: {current: abcdefghi}}}}"), &[], NOTHING, "error: credentials.derived_tokens.macaroon.prefix.current: invalid prefix \"abcdefghi\": must be 1 to 8 characters from a-z, A-Z, 0-9 and _");
        check(concat!(hmac!(), "credentials: {issuer: a, derived_tokens: {macaroon: {prefix: {retired: [\"m.c\"]}}}}"), &[], NOTHING, "error: credentials.derived_tokens.macaroon.prefix.retired[0]: invalid prefix \"m.c\": must be 1 to 8 characters from a-z, A-Z, 0-9 and _");
        check(
            concat!(hmac!(), "credentials: {issuer: a, api_keys: {prefix: {current: mc}}}"),
            &[],
            NOTHING,
            "error: credentials.api_keys.prefix.current: prefix \"mc\" is also a macaroon prefix",
        );
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn secrets() {
        check(
            concat!(issuer!(), "secrets: {hmac: {current: a-plain-unquoted-secret-of-32-chars}}"),
            &[],
            |c| c.secrets.hmac.current.expose().to_owned(),
            "a-plain-unquoted-secret-of-32-chars",
        );
        check(
            concat!(issuer!(), "secrets: {hmac: {current: \"0123456789012345678901234567890123\"}}"),
            &[],
            |c| c.secrets.hmac.current.expose().to_owned(),
            "0123456789012345678901234567890123",
        );
        check(
            concat!(issuer!(), "secrets: {hmac: {current: '0123456789012345678901234567890123'}}"),
            &[],
            |c| c.secrets.hmac.current.expose().to_owned(),
            "0123456789012345678901234567890123",
        );
        check(concat!(issuer!(), "secrets: {hmac: {current: 0123456789012345678901234567890123}}"), &[], NOTHING, "error: secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a number: put it in quotes");
        check(concat!(issuer!(), "secrets: {hmac: {current: 12345678901234567890123456789012345}}"), &[], NOTHING, "error: secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a number: put it in quotes");
        check(concat!(issuer!(), "secrets: {hmac: {current: 1_234_567_890_123_456_789_012_345_678_901}}"), &[], NOTHING, "error: secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a number: put it in quotes");
        check(concat!(issuer!(), "secrets: {hmac: {current: 1e5}}"), &[], NOTHING, "error: secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a number: put it in quotes");
        check(concat!(issuer!(), "secrets: {hmac: {current: yes}}"), &[], NOTHING, "error: secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a boolean: put it in quotes");
        check(concat!(issuer!(), "secrets: {hmac: {current: true}}"), &[], NOTHING, "error: secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a boolean: put it in quotes");
        check(
            concat!(issuer!(), "secrets: {hmac: {current: \"yes\"}}"),
            &[],
            NOTHING,
            "error: secrets.hmac.current: must be at least 32 characters long, this one has 3",
        );
        check(
            concat!(issuer!(), "secrets: {hmac: {current: \"short\"}}"),
            &[],
            NOTHING,
            "error: secrets.hmac.current: must be at least 32 characters long, this one has 5",
        );
        check(
            concat!(issuer!(), "secrets: {hmac: {current: \"\"}}"),
            &[],
            NOTHING,
            "error: secrets.hmac.current: must not be empty",
        );
        check(
            concat!(issuer!(), "secrets: {hmac: {current: }}"),
            &[],
            NOTHING,
            "error: secrets.hmac.current: required",
        );
        check(
            concat!(issuer!(), "secrets: {hmac: {current: [a]}}"),
            &[],
            NOTHING,
            "error: secrets.hmac.current: expected a string, found a list",
        );
        check(concat!(issuer!(), "secrets: {hmac: {current: \"", "0123456789abcdef0123456789abcdef", "\", retired: [\"fedcba9876543210fedcba9876543210\", {value: \"ffffffffffffffffffffffffffffffff\", expires_at: \"2999-01-01T00:00:00Z\"}, {value: \"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\"}]}}"), &[], |c| format!("{:?}", c.secrets.hmac.retired.iter().map(|r| (r.value.expose(), r.expires_at.map(|t| t.year()))).collect::<Vec<_>>()), "[(\"fedcba9876543210fedcba9876543210\", None), (\"ffffffffffffffffffffffffffffffff\", Some(2999)), (\"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\", None)]");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\", retired: [\"fedcba9876543210fedcba9876543210\", {value: \"ffffffffffffffffffffffffffffffff\", expires_at: \"2000-01-01T00:00:00Z\"}]}}"), &[], |c| c.secrets.hmac.retired.len().to_string(), "1\nwarning: secrets.hmac.retired[1]: expired at 2000-01-01T00:00:00Z, ignored");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\", retired: [\"short\", {value: \"also-short\"}]}}"), &[], NOTHING, "error: secrets.hmac.retired[0]: must be at least 32 characters long, this one has 5\nerror: secrets.hmac.retired[1]: must be at least 32 characters long, this one has 10");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\", retired: [0123456789012345678901234567890123, {value: on}]}}"), &[], NOTHING, "error: secrets.hmac.retired[0]: secrets are read as strings, but this unquoted value reads as a number: put it in quotes\nerror: secrets.hmac.retired[1].value: secrets are read as strings, but this unquoted value reads as a boolean: put it in quotes");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\", retired: [{expires_at: \"2999-01-01T00:00:00Z\"}]}}"), &[], NOTHING, "error: secrets.hmac.retired[0].value: required");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\", retired: [{value: \"fedcba9876543210fedcba9876543210\", expires: \"2999-01-01T00:00:00Z\"}]}}"), &[], NOTHING, "error: secrets.hmac.retired[0].expires: unknown key");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\", retired: [{value: \"fedcba9876543210fedcba9876543210\", expires_at: tomorrow}]}}"), &[], NOTHING, "error: secrets.hmac.retired[0].expires_at: expected an RFC 3339 timestamp such as \"2030-01-01T00:00:00Z\"");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\", retired: \"fedcba9876543210fedcba9876543210\"}}"), &[], NOTHING, "error: secrets.hmac.retired: expected a list, found a string");
        check(concat!(issuer!(), hmac!(), "secrets: {}"), &[], NOTHING, "error: secrets: duplicate key");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn pagination_secrets() {
        const P: Probe = |c| match &c.secrets.pagination {
            Some(set) => format!("{} +{}", set.current.expose(), set.retired.len()),
            None => "none".to_owned(),
        };
        check(base!(""), &[], P, "none");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\"}, default: {current: \"pagination-secret-of-at-least-32-chars\"}}"), &[], P, "pagination-secret-of-at-least-32-chars +0");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\"}, pagination: {current: \"pagination-secret-of-at-least-32-chars\", retired: [\"older-pagination-secret-of-32-chars\"]}}"), &[], P, "pagination-secret-of-at-least-32-chars +1");
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\"}, pagination: {current: \"pagination-secret-of-at-least-32-chars\"}, default: {current: \"default-secret-of-at-least-32-chars\"}}"), &[], P, "pagination-secret-of-at-least-32-chars +0\nwarning: secrets.default is ignored because secrets.pagination is set");
        check(
            concat!(
                issuer!(),
                "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\"}, default: {current: short}}"
            ),
            &[],
            P,
            "error: secrets.default.current: must be at least 32 characters long, this one has 5",
        );
        check(concat!(issuer!(), "secrets: {hmac: {current: \"0123456789abcdef0123456789abcdef\"}, pagination: {retired: [\"older-pagination-secret-of-32-chars\"]}}"), &[], P, "error: secrets.pagination.current: required when secrets.pagination.retired is set");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn db() {
        const DSN: Probe = |c| format!("{:?}", c.db.dsn);
        check(base!("db: {dsn: memory}"), &[], DSN, "Memory");
        check(base!("db: {dsn: talos.redb}"), &[], DSN, "Redb(\"talos.redb\")");
        check(base!("db: {dsn: /var/lib/talos/talos.redb}"), &[], DSN, "Redb(\"/var/lib/talos/talos.redb\")");
        check(
            base!("db: {dsn: \"redb:///var/lib/talos/talos.redb\"}"),
            &[],
            DSN,
            "Redb(\"/var/lib/talos/talos.redb\")",
        );
        check(base!("db: {dsn: \"redb://data/talos.redb\"}"), &[], DSN, "Redb(\"data/talos.redb\")");
        check(base!("db: {dsn: \"redb://\"}"), &[], DSN, "error: db.dsn: has no path after \"redb://\"");
        check(base!("db: {dsn: \"\"}"), &[], DSN, "error: db.dsn: must not be empty");
        check(
            base!("db: {dsn: \"postgres://talos@db:5432/talos?sslmode=disable&max_conns=20\"}"),
            &[],
            |c| match &c.db.dsn {
                Dsn::Postgres(url) => url.clone(),
                other => format!("{other:?}"),
            },
            "postgres://talos@db:5432/talos?sslmode=disable&max_conns=20",
        );
        check(
            base!("db: {dsn: \"postgresql://talos@db/talos\"}"),
            &[],
            DSN,
            "Postgres(\"postgresql://talos@db/talos\")",
        );
        check(
            base!("db: {dsn: \"cockroach://root@db:26257/talos\"}"),
            &[],
            DSN,
            "Postgres(\"postgres://root@db:26257/talos\")",
        );
        check(base!("db: {dsn: \"sqlite://talos.db?_fk=true\"}"), &[], DSN, "error: db.dsn: unsupported scheme \"sqlite\": use \"memory\", a redb file (\"redb:///path\" or a plain path) or \"postgres://…\"");
        check(base!("db: {dsn: \"mysql://root:hunter2@db/talos\"}"), &[], DSN, "error: db.dsn: unsupported scheme \"mysql\": use \"memory\", a redb file (\"redb:///path\" or a plain path) or \"postgres://…\"");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn dsn_debug_redacts_passwords() {
        let check =
            |url: &str, expected: &str| assert_eq!(format!("{:?}", Dsn::Postgres(url.to_owned())), expected, "{url}");
        check("postgres://talos:hunter2@db:5432/talos", "Postgres(\"postgres://talos:<redacted>@db:5432/talos\")");
        check(
            "postgres://talos:p%40ss@db/talos?sslmode=require&password=hunter2",
            "Postgres(\"postgres://talos:<redacted>@db/talos?sslmode=require&password=<redacted>\")",
        );
        check(
            "postgres://db/talos?PASSWORD=hunter2&sslpassword=x",
            "Postgres(\"postgres://db/talos?PASSWORD=<redacted>&sslpassword=<redacted>\")",
        );
        check("postgres://talos@db/talos", "Postgres(\"postgres://talos@db/talos\")");
        check("postgres://u:a@b@db/talos", "Postgres(\"postgres://u:<redacted>@db/talos\")");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn other_sections() {
        check(
            base!("cache: {type: memory, enabled: true, ttl: 1m}"),
            &[],
            |c| format!("{:?}", c.cache),
            "Cache { kind: \"memory\", enabled: true, ttl: 60s }",
        );
        check(
            base!("cache: {type: lru}"),
            &[],
            NOTHING,
            "error: cache.type: must be one of \"memory\", \"redis\", \"noop\", got \"lru\"",
        );
        check(
            base!("cache: {memory: {max_size: 1024}}"),
            &[],
            NOTHING,
            "error: cache.memory.max_size: must be between 1048576 and 10737418240, got 1024",
        );
        check(base!("cache: {memory: {num_counters: 1e6}}"), &[], NOTHING, "");
        check(base!("quota: {api_keys_max: 1000}"), &[], |c| c.quota.api_keys_max.to_string(), "1000");
        check(
            base!("quota: {api_keys_max: -1}"),
            &[],
            NOTHING,
            "error: quota.api_keys_max: must be at least 0, got -1",
        );
        check(
            base!("log: {level: debug, format: text}"),
            &[],
            |c| format!("{:?}", c.log),
            "Log { level: \"debug\", format: \"text\" }",
        );
        check(
            base!("log: {level: verbose}"),
            &[],
            NOTHING,
            "error: log.level: must be one of \"debug\", \"info\", \"warn\", \"error\", got \"verbose\"",
        );
        check(
            base!("log: {format: xml}"),
            &[],
            NOTHING,
            "error: log.format: must be one of \"json\", \"text\", got \"xml\"",
        );
        check(
            base!("last_used: {queue_size: 1000, flush_size: 50, flush_interval: 5s, num_workers: 2}"),
            &[],
            |c| format!("{:?}", c.last_used),
            "LastUsed { queue_size: 1000, flush_size: 50, flush_interval: 5s, num_workers: 2 }",
        );
        check(
            base!("last_used: {queue_size: 255}"),
            &[],
            NOTHING,
            "error: last_used.queue_size: must be between 256 and 1000000, got 255",
        );
        check(
            base!("last_used: {num_workers: 65}"),
            &[],
            NOTHING,
            "error: last_used.num_workers: must be between 1 and 64, got 65",
        );
        check(
            base!("last_used: {queue_size: 256, flush_size: 1000}"),
            &[],
            NOTHING,
            "error: last_used.flush_size: must not exceed last_used.queue_size (256)",
        );
        check(base!("serve: {http: {cors: {enabled: true, allowed_methods: [GET, FETCH]}}}"), &[], NOTHING, "error: serve.http.cors.allowed_methods[1]: must be one of \"GET\", \"HEAD\", \"POST\", \"PUT\", \"PATCH\", \"DELETE\", \"OPTIONS\", \"CONNECT\", \"TRACE\", got \"FETCH\"");
        check(
            base!("tracing: {sample_rate: 1.5}"),
            &[],
            NOTHING,
            "error: tracing.sample_rate: must be between 0 and 1, got 1.5",
        );
        check(
            base!("tracing: {service_version: 1.0}"),
            &[],
            NOTHING,
            "error: tracing.service_version: expected a string, found a number; quote the value",
        );
        check(
            base!("rate_limit: {backend: postgres}"),
            &[],
            NOTHING,
            "error: rate_limit.backend: must be one of \"memory\", \"redis\", got \"postgres\"",
        );
        check(
            base!("multitenancy: {networks: [{hostname: a.example.com, id: 0b1c2d3e-0000-4000-8000-000000000000}]}"),
            &[],
            NOTHING,
            "",
        );
        check(base!("multitenancy: {networks: [{hostname: a.example.com, id: nope, path: x}, {}]}"), &[], NOTHING, "error: multitenancy.networks[0].id: expected a UUID, got \"nope\"\nerror: multitenancy.networks[0].path: unknown key\nerror: multitenancy.networks[0].id: required\nerror: multitenancy.networks[1].hostname: required\nerror: multitenancy.networks[1].id: required");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn document_shape() {
        check(base!("serve: {http: {prot: 80}}"), &[], NOTHING, "error: serve.http.prot: unknown key");
        check(base!("frobnicate: true"), &[], NOTHING, "error: frobnicate: unknown key");
        check(base!("credentials_typo: {issuer: x}"), &[], NOTHING, "error: credentials_typo: unknown key");
        check(base!("serve: 4420"), &[], NOTHING, "error: serve: expected a mapping, found an integer");
        check(base!("serve: {http: {port: 1, port: 2}}"), &[], NOTHING, "error: serve.http.port: duplicate key");
        check(base!("serve:\n"), &[], |c| c.serve.http.port.to_string(), "4420");
        check(base!("1: x"), &[], NOTHING, "error: 1: unknown key");
        check("[1, 2]", &[], NOTHING, "error: the configuration must be a mapping, found a list\nerror: credentials.issuer: required\nerror: secrets.hmac.current: required");
        check("serve: {http: {port: 80}", &[], NOTHING, "error: invalid YAML: did not find expected ',' or '}' at line 2 column 1, while parsing a flow mapping at line 1 column 8");
        check(
            "a: !tagged b",
            &[],
            NOTHING,
            "error: invalid YAML: a: invalid type: enum, expected a YAML value without tags at line 1 column 4",
        );
        check("", &[], NOTHING, "error: credentials.issuer: required\nerror: secrets.hmac.current: required");
        check(
            "# only a comment\n",
            &[],
            NOTHING,
            "error: credentials.issuer: required\nerror: secrets.hmac.current: required",
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        check(
            "serve: {http: {port: 99999, hots: x}, workers: 0}\ncredentials: {clock_skew: 5, api_keys: {prefix: {current: \"bad prefix\"}}}\nsecrets: {hmac: {current: 0123456789012345678901234567890123}}\ndb: {dsn: \"sqlite://x\"}\nlog: {level: loud}\nextra: 1\n",
            &[("TALOS_CACHE_ENABLED", "maybe")],
            NOTHING,
            "error: serve.http.hots: unknown key\n\
             error: extra: unknown key\n\
             error: cache.enabled: expected a boolean (true or false), got \"maybe\" (set by TALOS_CACHE_ENABLED)\n\
             error: serve.http.port: must be between 0 and 65535, got 99999\n\
             error: serve.workers: must be between 1 and 1024, got 0\n\
             error: credentials.clock_skew: missing unit in duration \"5\"\n\
             error: secrets.hmac.current: secrets are read as strings, but this unquoted value reads as a number: put it in quotes\n\
             error: log.level: must be one of \"debug\", \"info\", \"warn\", \"error\", got \"loud\"\n\
             error: credentials.issuer: required\n\
             error: credentials.api_keys.prefix.current: invalid prefix \"bad prefix\": must be 1 to 16 characters from a-z, A-Z, 0-9 and _\n\
             error: db.dsn: unsupported scheme \"sqlite\": use \"memory\", a redb file (\"redb:///path\" or a plain path) or \"postgres://…\"",
        );
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn environment_overrides() {
        const PORT: Probe = |c| c.serve.http.port.to_string();
        check(base!("serve: {http: {port: 80}}"), &[("TALOS_SERVE_HTTP_PORT", "81")], PORT, "81");
        check(base!("serve: {http: {port: 80}}"), &[("SERVE_HTTP_PORT", "82")], PORT, "82");
        check(
            base!("serve: {http: {port: 80}}"),
            &[("SERVE_HTTP_PORT", "82"), ("TALOS_SERVE_HTTP_PORT", "81")],
            PORT,
            "81",
        );
        check(base!(""), &[("TALOS_SERVE_HTTP_PORT", " 81 ")], PORT, "81");
        check(
            base!(""),
            &[("TALOS_SERVE_HTTP_PORT", "http")],
            PORT,
            "error: serve.http.port: expected an integer, got \"http\" (set by TALOS_SERVE_HTTP_PORT)",
        );
        check(
            base!(""),
            &[("TALOS_SERVE_HTTP_PORT", "70000")],
            PORT,
            "error: serve.http.port: must be between 0 and 65535, got 70000 (set by TALOS_SERVE_HTTP_PORT)",
        );
        check(base!(""), &[("PATH", "/usr/bin"), ("HOME", "/root"), ("PORT", "1")], PORT, "4420");
        // The `talos keys` client's variables are not configuration keys, and no typos either.
        check(base!(""), &[("TALOS_ENDPOINT", "http://x:1"), ("TALOS_API_KEY", "k")], PORT, "4420");
        check(
            base!(""),
            &[("TALOS_UNKNOWN_THING", "1")],
            PORT,
            "4420\nwarning: environment variable TALOS_UNKNOWN_THING names no configuration key and is ignored",
        );
        check(
            base!(""),
            &[("TALOS_SERVE_HTTP", "{}")],
            PORT,
            "4420\nwarning: environment variable TALOS_SERVE_HTTP names no configuration key and is ignored",
        );
        check(
            base!(""),
            &[("TALOS_SECRETS_HMAC_CURRENT", "from-the-environment-0123456789abcdef")],
            |c| c.secrets.hmac.current.expose().to_owned(),
            "from-the-environment-0123456789abcdef",
        );
        check(
            base!(""),
            &[("TALOS_SECRETS_HMAC_CURRENT", "0123456789012345678901234567890123")],
            |c| c.secrets.hmac.current.expose().to_owned(),
            "0123456789012345678901234567890123",
        );
        check(
            base!(""),
            &[("TALOS_SECRETS_HMAC_CURRENT", "short")],
            NOTHING,
            "error: secrets.hmac.current: must be at least 32 characters long, this one has 5",
        );
        check(
            issuer!(),
            &[("SECRETS_HMAC_CURRENT", "from-the-environment-0123456789abcdef")],
            |c| c.secrets.hmac.current.expose().to_owned(),
            "from-the-environment-0123456789abcdef",
        );
        check(
            "",
            &[
                ("TALOS_CREDENTIALS_ISSUER", "https://env.example.com"),
                ("TALOS_SECRETS_HMAC_CURRENT", "from-the-environment-0123456789abcdef"),
            ],
            |c| c.credentials.issuer.clone(),
            "https://env.example.com",
        );
        check(base!(""), &[("DB_DSN", "memory")], |c| format!("{:?}", c.db.dsn), "Memory");
        check(
            base!(""),
            &[("TALOS_CREDENTIALS_API_KEYS_DEFAULT_TTL", "24h")],
            |c| format!("{:?}", c.credentials.api_keys.default_ttl),
            "Some(86400s)",
        );
        check(base!(""), &[("TALOS_CREDENTIALS_API_KEYS_DEFAULT_TTL", "24")], NOTHING, "error: credentials.api_keys.default_ttl: missing unit in duration \"24\" (set by TALOS_CREDENTIALS_API_KEYS_DEFAULT_TTL)");
        check(
            base!(""),
            &[("TALOS_SERVE_HTTP_TRUST_FORWARDED_HOST", "1"), ("TALOS_CACHE_ENABLED", "True")],
            |c| format!("{} {}", c.serve.trust_forwarded_host, c.cache.enabled),
            "true true",
        );
        check(base!(""), &[("TALOS_LOG_LEVEL", "debug")], |c| c.log.level.clone(), "debug");
        check(base!(""), &[("TALOS_SERVE_HTTP_CORS_MAX_AGE", "3600")], NOTHING, "");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn environment_lists() {
        const RETIRED: Probe = |c| format!("{:?}", c.credentials.api_keys.prefix.retired);
        const SECRETS: Probe = |c| {
            format!(
                "{:?}",
                c.secrets
                    .hmac
                    .retired
                    .iter()
                    .map(|r| (r.value.expose(), r.expires_at.map(|t| t.year())))
                    .collect::<Vec<_>>()
            )
        };
        check(base!(""), &[("TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED", "a, b,,c")], RETIRED, "[\"a\", \"b\", \"c\"]");
        check(base!(""), &[("TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED", "[\"a\", \"b\"]")], RETIRED, "[\"a\", \"b\"]");
        check(base!(""), &[("TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED", "")], RETIRED, "[]");
        check(
            base!(""),
            &[
                ("TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_1", "b"),
                ("TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_0", "a"),
            ],
            RETIRED,
            "[\"a\", \"b\"]",
        );
        check(base!(""), &[("TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_0", "a"), ("TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED", "b")], RETIRED, "[\"b\"]\nwarning: TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED_<n> variables are ignored because TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED is set");
        check(base!(""), &[("TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED", "[1]")], RETIRED, "error: credentials.api_keys.prefix.retired[0]: expected a string, found an integer; quote the value (set by TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED)");
        check(base!(""), &[("TALOS_CREDENTIALS_API_KEYS_PREFIX_RETIRED", "ok,not ok")], RETIRED, "error: credentials.api_keys.prefix.retired[1]: invalid prefix \"not ok\": must be 1 to 16 characters from a-z, A-Z, 0-9 and _");
        check(base!(""), &[("TALOS_SECRETS_HMAC_RETIRED", "[\"fedcba9876543210fedcba9876543210\", {\"value\": \"ffffffffffffffffffffffffffffffff\", \"expires_at\": \"2999-01-01T00:00:00Z\"}]")], SECRETS, "[(\"fedcba9876543210fedcba9876543210\", None), (\"ffffffffffffffffffffffffffffffff\", Some(2999))]");
        check(
            base!(""),
            &[
                ("TALOS_SECRETS_HMAC_RETIRED_0", "fedcba9876543210fedcba9876543210"),
                ("TALOS_SECRETS_HMAC_RETIRED_1", "{\"value\": \"ffffffffffffffffffffffffffffffff\"}"),
            ],
            SECRETS,
            "[(\"fedcba9876543210fedcba9876543210\", None), (\"ffffffffffffffffffffffffffffffff\", None)]",
        );
        check(
            base!(""),
            &[("TALOS_SECRETS_HMAC_RETIRED", "fedcba9876543210fedcba9876543210")],
            SECRETS,
            "error: secrets.hmac.retired: expected a JSON array (set by TALOS_SECRETS_HMAC_RETIRED)",
        );
        check(
            base!(""),
            &[("TALOS_SECRETS_HMAC_RETIRED", "{\"value\": \"ffffffffffffffffffffffffffffffff\"}")],
            SECRETS,
            "error: secrets.hmac.retired: expected a JSON array (set by TALOS_SECRETS_HMAC_RETIRED)",
        );
        check(
            base!(""),
            &[("TALOS_SECRETS_HMAC_RETIRED", "[{\"value\": \"short\"}]")],
            SECRETS,
            "error: secrets.hmac.retired[0]: must be at least 32 characters long, this one has 5",
        );
        check(base!(""), &[("TALOS_SECRETS_HMAC_RETIRED", "[12345678901234567890123456789012]")], SECRETS, "error: secrets.hmac.retired[0]: secrets are read as strings, but this unquoted value reads as a number: put it in quotes (set by TALOS_SECRETS_HMAC_RETIRED)");
        check(
            base!(""),
            &[("TALOS_CREDENTIALS_ISSUER_RETIRED", "[\"https://old.example.com\"]")],
            |c| c.credentials.issuer_retired[0].value.clone(),
            "https://old.example.com",
        );
    }

    /// Secrets never reach a message or `Debug`, whatever is wrong around them.
    #[test]
    fn secrets_are_never_shown() {
        const SECRET: &str = "0123456789012345678901234567890123";
        let broken = [
            format!("secrets: {{hmac: {{current: {SECRET}}}}}"),
            format!("secrets: {{hmac: {{current: \"{}\"}}}}", &SECRET[..20]),
            format!("secrets: {{hmac: {{current: \"x\", retired: [{SECRET}, {{value: {SECRET}, expires_at: {SECRET}x}}, {{value: \"{}\"}}]}}}}", &SECRET[..20]),
            format!("secrets: {{hmac: {{current: [{SECRET}]}}}}"),
            format!("secrets: {{hmac: {{current: {{{SECRET}: 1}}}}}}"),
            format!("secrets: {{pagination: {{current: {SECRET}}}, default: {{current: \"{}\"}}}}", &SECRET[..20]),
            format!("cache: {{redis: {{password: {SECRET}}}}}"),
            format!("db: {{dsn: \"mysql://u:{SECRET}@h/d\"}}"),
            format!("credentials: {{derived_tokens: {{jwt: {{signing_keys: {{urls: [\"file://{SECRET}\", \"{SECRET}\"]}}}}}}}}"),
        ];
        for yaml in &broken {
            let errors = Config::from_yaml_str(yaml, &Vec::new()).expect_err(yaml);
            let shown = format!("{errors}\n{errors:?}");
            // A mapping key is a key name, not a secret value: only that case may echo it.
            let shown = shown.replace(&format!("current.{SECRET}"), "");
            assert!(!shown.contains(&SECRET[..20]), "{yaml}\n{shown}");
        }
        let env_secret = [
            ("TALOS_SECRETS_HMAC_CURRENT", SECRET),
            ("TALOS_SECRETS_HMAC_RETIRED", "[\"0123456789012345678901234567890123\"]"),
            ("TALOS_DB_DSN", "postgres://u:0123456789012345678901234567890123@h/d"),
        ];
        let (config, warnings) = Config::from_yaml_str(issuer!(), &env(&env_secret)).expect("loads");
        let shown = format!("{config:?}\n{warnings:?}");
        assert!(!shown.contains(&SECRET[..20]), "{shown}");
        let with_urls = concat!(base!(
            "credentials: {derived_tokens: {jwt: {signing_keys: {urls: [\"base64://c2VjcmV0LWp3aw==\"]}}}}"
        ));
        let shown = format!(
            "{:?}",
            Config::from_yaml_str(
                &with_urls.replace("credentials: {issuer: \"https://api.example.com\"}\n", ""),
                &env(&[("TALOS_CREDENTIALS_ISSUER", "x")])
            )
            .expect("loads")
            .0
        );
        assert!(!shown.contains("c2VjcmV0LWp3aw"), "{shown}");
    }

    /// `talos-api.md` cites these two examples from Ory's "separate planes" page.
    #[test]
    fn seed_separate_planes_documents_load() {
        let admin = r#"
serve:
  http:
    host: "10.0.0.1"
    port: 4420
credentials:
  issuer: "https://api.example.com"
secrets:
  default:
    current: "use-the-same-pagination-secret-on-both-planes--64chars"
  hmac:
    current: "use-the-same-hmac-secret-on-both-planes-or-verify-fails-64chars"
"#;
        let data = r#"
serve:
  http:
    host: "0.0.0.0"
    port: 4420
credentials:
  issuer: "https://api.example.com"
secrets:
  default:
    current: "use-the-same-pagination-secret-on-both-planes--64chars"
  hmac:
    current: "use-the-same-hmac-secret-on-both-planes-or-verify-fails-64chars"
cache:
  type: "memory"
  ttl: "5m"
"#;
        const PLANE: Probe = |c| {
            format!(
                "{}:{} {} {} {} {:?}",
                c.serve.http.host,
                c.serve.http.port,
                c.credentials.issuer,
                c.secrets.hmac.current.expose(),
                c.secrets.pagination.as_ref().map_or("", |p| p.current.expose()),
                c.cache
            )
        };
        check(admin, &[], PLANE, "10.0.0.1:4420 https://api.example.com use-the-same-hmac-secret-on-both-planes-or-verify-fails-64chars use-the-same-pagination-secret-on-both-planes--64chars Cache { kind: \"noop\", enabled: false, ttl: 300s }");
        check(data, &[], PLANE, "0.0.0.0:4420 https://api.example.com use-the-same-hmac-secret-on-both-planes-or-verify-fails-64chars use-the-same-pagination-secret-on-both-planes--64chars Cache { kind: \"memory\", enabled: false, ttl: 300s }");
    }

    #[test]
    fn example_config_loads() {
        const EXAMPLE: &str = include_str!("../../config.example.yaml");
        check(EXAMPLE, &[], |c| format!("{:?} {} {:?} {:?} {} {}", c.serve.http, c.credentials.issuer, c.credentials.api_keys.default_ttl, c.db.dsn, c.log.format, c.secrets.hmac.current.expose().len() >= 32), "Listen { host: \"127.0.0.1\", port: 4420 } http://localhost:4420 Some(2592000s) Redb(\"talos.redb\") text true");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.yaml");
        let (config, warnings) = Config::load(Some(&path), &Vec::new()).expect("config.example.yaml loads from disk");
        assert_eq!((config.serve.http.port, warnings.len()), (4420, 0));
    }

    #[test]
    fn load_reports_unreadable_files() {
        let err = Config::load(Some(Path::new("/nonexistent/talos.yaml")), &Vec::new()).expect_err("no such file");
        assert!(err.to_string().starts_with("cannot read config file /nonexistent/talos.yaml: "), "{err}");
        let dir = std::env::temp_dir().join(format!("talos-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_yaml = dir.join("talos.yaml");
        std::fs::write(&not_yaml, "serve: [unclosed\n").unwrap();
        let err = Config::load(Some(&not_yaml), &Vec::new()).expect_err("not YAML").to_string();
        assert!(err.starts_with(&format!("{}: invalid YAML: ", not_yaml.display())), "{err}");
        std::fs::write(&not_yaml, "- a list\n").unwrap();
        let err = Config::load(Some(&not_yaml), &Vec::new()).expect_err("not a mapping").to_string();
        assert!(err.starts_with(&format!("{}: the configuration must be a mapping", not_yaml.display())), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let (config, _) = Config::load(
            None,
            &env(&[
                ("TALOS_CREDENTIALS_ISSUER", "x"),
                ("TALOS_SECRETS_HMAC_CURRENT", "0123456789abcdef0123456789abcdef"),
            ]),
        )
        .expect("environment alone suffices");
        assert_eq!(config.credentials.issuer, "x");
    }

    /// A config setting every key of the Ory Talos table loads (values are checked, then the
    /// ones talos has no use for are ignored).
    #[test]
    fn every_ory_key_is_accepted() {
        let yaml = r#"
serve:
  http:
    host: 0.0.0.0
    port: 4420
    cors:
      enabled: true
      allowed_origins: ["https://*.example.com"]
      allowed_methods: [GET, POST, PUT, PATCH, DELETE]
      allowed_headers: [Authorization, Content-Type]
      exposed_headers: [Content-Type]
      allow_credentials: false
      max_age: 0
      debug: false
    client_ip_source: CLIENT_IP_SOURCE_UNSPECIFIED
    trust_forwarded_host: false
    request_log:
      exclude_health_endpoints: true
      data_plane_sample_every: 0
    timeouts:
      read_header: 5s
      read: 15s
      write: 15s
      idle: 60s
  metrics:
    host: 0.0.0.0
    port: 4422
  workers: 2
  max_connections_per_worker: 10000
  pin_workers: false
  io_driver: epoll
credentials:
  issuer: https://api.example.com
  issuer_retired: ["https://old.example.com", {value: "https://older.example.com", expires_at: "2999-12-31T23:59:59+01:00"}]
  clock_skew: 5m
  api_keys:
    default_ttl: 720h
    max_ttl: 8760h
    prefix:
      current: ory_ak
      retired: [old_ak]
      public_current: ory_pk
      public_retired: [old_pk]
  derived_tokens:
    default_ttl: 1h
    jwt:
      signing_key_id: key-1
      signing_keys:
        urls: ["base64://e30="]
    macaroon:
      prefix:
        current: mc
        retired: [mac]
secrets:
  hmac:
    current: "0123456789abcdef0123456789abcdef"
    retired: ["fedcba9876543210fedcba9876543210"]
  pagination:
    current: "pagination-secret-of-at-least-32-chars"
    retired: []
db:
  dsn: "postgres://talos@localhost:5432/talos?sslmode=disable&max_conns=20&max_idle_conns=4&max_conn_lifetime=1h&max_conn_idle_time=5m"
snapshot:
  refresh_interval: 100ms
  max_staleness: 30s
cache:
  type: redis
  enabled: true
  ttl: 5m
  memory:
    max_size: 104857600
    num_counters: 10000
  redis:
    addrs: ["localhost:6379"]
    password: "redis-password"
    db: 0
    pool_size: 100
    timeout: 3s
    min_idle_conns: 2
    conn_max_idle_time: 5m
    conn_max_lifetime: 30m
    tls:
      enabled: false
rate_limit:
  enabled: false
  backend: memory
last_used:
  queue_size: 10000
  flush_size: 100
  flush_interval: 30s
  num_workers: 4
log:
  level: info
  format: json
tracing:
  enabled: false
  service_name: talos
  service_version: "0.0.0"
  environment: development
  exporter: otlp
  endpoint: "localhost:4317"
  sample_rate: 0.001
quota:
  api_keys_max: 0
multitenancy:
  enabled: false
  networks: [{hostname: tenant.example.com, id: "00000000-0000-0000-0000-000000000000", config_path: /etc/talos/tenant.yaml}]
"#;
        check(yaml, &[], |c| format!("{} {} {:?}", c.credentials.issuer_retired.len(), c.cache.kind, c.db.dsn), "2 redis Postgres(\"postgres://talos@localhost:5432/talos?sslmode=disable&max_conns=20&max_idle_conns=4&max_conn_lifetime=1h&max_conn_idle_time=5m\")");
        // Every key of the table appears above.
        for spec in KEYS {
            let leaf = spec.path.rsplit('.').next().expect("split yields one item");
            let legacy =
                ["secrets.default.current", "secrets.default.retired", "credentials.derived_tokens.jwt.jwks.urls"];
            assert!(
                legacy.contains(&spec.path) || yaml.contains(&format!("{leaf}:")),
                "{} missing from the test document",
                spec.path
            );
        }
    }

    #[test]
    fn key_table_is_consistent() {
        let mut names = HashSet::new();
        for spec in KEYS {
            assert!(names.insert(env_name(spec.path)), "two keys share the variable name of {}", spec.path);
            assert!(!is_section(spec.path), "{} is both a key and a section", spec.path);
        }
    }

    fn check_retype(scalar: &str, expected: Option<&str>) {
        assert_eq!(yaml_retype(scalar), expected, "{scalar:?}");
    }

    #[test]
    fn plain_scalars_yaml_would_retype() {
        check_retype("yes", Some("a boolean"));
        check_retype("Off", Some("a boolean"));
        check_retype("y", Some("a boolean"));
        check_retype("~", Some("null"));
        check_retype("0123", Some("a number"));
        check_retype("-0123", Some("a number"));
        check_retype("1_000", Some("a number"));
        check_retype("0x1F", Some("a number"));
        check_retype("0o17", Some("a number"));
        check_retype("0b101", Some("a number"));
        check_retype("1:30:00", Some("a number"));
        check_retype("1e5", Some("a number"));
        check_retype("+1.5E-3", Some("a number"));
        check_retype(".5", Some("a number"));
        check_retype(".inf", Some("a number"));
        check_retype("-.INF", Some("a number"));
        check_retype(".NaN", Some("a number"));
        check_retype("yesterday", None);
        check_retype("0x1G", None);
        check_retype("2001-12-14", None);
        check_retype("inf", None);
        check_retype("nan", None);
        check_retype("1e5e5", None);
        check_retype("3f9a0c", None);
        check_retype("e5", None);
        check_retype("use-the-same-hmac-secret", None);
    }
}

/// `docs/config.md` kept in step with [`KEYS`].
#[cfg(test)]
mod reference;
