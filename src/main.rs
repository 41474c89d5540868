//! The `talos` binary: parses the command line, loads the config, and wires the planes together.
//! Everything else lives in the `common`, `engine`, `admin` and `client` crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use common::config::{Config, Dsn, ProcessEnv};
use common::store::redb::RedbStore;
use common::store::Store;

/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(name = "talos", version, about = "API key server: issue, verify and revoke API keys")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: both planes in one process, or one of them.
    Serve {
        #[command(subcommand)]
        plane: Option<ServePlane>,
        /// Config file (YAML); TALOS_* environment variables override it.
        #[arg(short, long, global = true)]
        config: Option<PathBuf>,
    },
    /// Generate a JWKS for signing derived JWTs (Ed25519 by default), and the `base64://` URL
    /// to paste into `credentials.derived_tokens.jwt.signing_keys.urls`.
    Jwk {
        /// Generate an RSA-2048 key (RS256) instead of Ed25519 (EdDSA).
        #[arg(long)]
        rsa: bool,
        /// The key id (`kid`); a random UUID by default.
        #[arg(long)]
        kid: Option<String>,
        /// Print only the `base64://` URL.
        #[arg(long)]
        url_only: bool,
    },
    /// Database schema migrations (PostgreSQL; the embedded store needs none).
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
        /// Config file (YAML); TALOS_* environment variables override it.
        #[arg(short, long, global = true)]
        config: Option<PathBuf>,
    },
    /// Manage and check keys on a running server over its HTTP API (issue, list, verify, revoke…).
    Keys(Box<client::Keys>),
    /// Print the version.
    Version,
}

#[derive(Subcommand, Clone, Copy)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// List the migrations and whether each is applied.
    Status,
}

#[derive(Subcommand, Clone, Copy)]
enum ServePlane {
    /// The admin plane only: key management, verify, health.
    Admin,
    /// The data plane only: verify and batch verify from the snapshot, self-revoke, JWKS, health.
    Check,
    /// Alias of `check`.
    Public,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("talos {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Jwk { rsa, kid, url_only } => {
            let kid = kid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            match common::token::generate_jwks(rsa, &kid) {
                Ok(jwks) => {
                    if url_only {
                        println!("{}", common::token::jwks_url(&jwks));
                    } else {
                        println!("# JWKS (private: keep it secret)");
                        println!("{}", serde_json::to_string_pretty(&jwks).unwrap_or_default());
                        println!("# credentials.derived_tokens.jwt.signing_keys.urls entry:");
                        println!("{}", common::token::jwks_url(&jwks));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("talos: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys(keys) => client::run(*keys),
        Command::Serve { plane, config } => {
            let Some(config) = load_config(config) else { return ExitCode::from(2) };
            report(serve(Arc::new(config), plane))
        }
        Command::Migrate { action, config } => {
            let Some(config) = load_config(config) else { return ExitCode::from(2) };
            report(migrate(&config, action))
        }
    }
}

/// Loads and validates the config, printing every problem; starts logging.
fn load_config(path: Option<PathBuf>) -> Option<Config> {
    let (config, warnings) = match Config::load(path.as_deref(), &ProcessEnv) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("talos: invalid configuration:\n{errors}");
            return None;
        }
    };
    init_logging(&config);
    for warning in warnings {
        tracing::warn!("config: {warning}");
    }
    Some(config)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("talos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    let Dsn::Postgres(dsn) = &config.db.dsn else {
        println!("db.dsn is an embedded store: there is nothing to migrate");
        return Ok(());
    };
    let store = pgstore::PgStore::connect(dsn).context("cannot connect to PostgreSQL (db.dsn)")?;
    match action {
        MigrateAction::Up => {
            let applied = store.migrate_up().context("migration failed")?;
            if applied.is_empty() {
                println!("the database is up to date");
            }
            for version in applied {
                println!("applied migration {version}");
            }
        }
        MigrateAction::Status => {
            for (version, name, applied) in store.migration_status().context("cannot read the migrations")? {
                println!("{version:>4}  {name:<24} {}", if applied { "applied" } else { "pending" });
            }
        }
    }
    Ok(())
}

fn init_logging(config: &Config) {
    let level = match config.log.level.as_str() {
        "debug" => tracing::Level::DEBUG,
        "warn" => tracing::Level::WARN,
        "error" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr);
    if config.log.format == "text" {
        builder.with_ansi(false).init();
    } else {
        builder.json().init();
    }
}

/// The store, and the PostgreSQL handle when that is the backend (for LISTEN/NOTIFY).
type OpenStore = (Arc<dyn Store>, Option<Arc<pgstore::PgStore>>);

/// Opens the store of `db.dsn`. An empty PostgreSQL database is migrated when `may_migrate`
/// (the admin side); a check plane refuses to start on one instead.
fn open_store(config: &Config, may_migrate: bool) -> anyhow::Result<OpenStore> {
    Ok(match &config.db.dsn {
        Dsn::Memory => (Arc::new(RedbStore::in_memory().context("cannot create the in-memory store")?), None),
        Dsn::Redb(path) => (
            Arc::new(
                RedbStore::open(path)
                    .with_context(|| format!("cannot open the store file {} (db.dsn)", path.display()))?,
            ),
            None,
        ),
        Dsn::Postgres(dsn) => {
            let pg = Arc::new(pgstore::PgStore::connect(dsn).context("cannot connect to PostgreSQL (db.dsn)")?);
            if !pg.is_migrated().context("cannot read the schema version")? {
                if !may_migrate {
                    bail!("the PostgreSQL database is not migrated: run `talos migrate up` (or start the admin plane)");
                }
                for version in pg.migrate_up().context("migration failed")? {
                    tracing::info!(version, "applied migration");
                }
            }
            (pg.clone(), Some(pg))
        }
    })
}

/// Resolves `serve.<name>.{host,port}` to one socket address.
fn resolve(listen: &common::config::Listen, name: &str) -> anyhow::Result<SocketAddr> {
    let host = if listen.host.contains(':') && !listen.host.starts_with('[') {
        format!("[{}]", listen.host)
    } else {
        listen.host.clone()
    };
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), listen.port))
        .with_context(|| format!("serve.{name}.host: cannot resolve {:?}", listen.host))?
        .next()
        .with_context(|| format!("serve.{name}.host: no address for {:?}", listen.host))
}

/// Binds the operations listener (`serve.metrics`: metrics and health) on the admin runtime.
fn start_ops(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    metrics: Arc<common::metrics::Metrics>,
    ready: admin::ops::Readiness,
) -> anyhow::Result<()> {
    let addr = resolve(&config.serve.metrics, "metrics")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr} (serve.metrics.host / serve.metrics.port)"))?;
    let local = listener.local_addr()?;
    runtime.spawn(admin::ops::serve(listener, metrics, ready, std::future::pending()));
    tracing::info!(metrics_addr = %local, "serving /metrics and health probes");
    Ok(())
}

/// Readiness for the operations listener: the snapshot is fresh (planes that hold one) and the
/// store answers (planes that write).
fn readiness(
    snapshot: Option<Arc<common::snapshot::SnapshotCell>>,
    max_staleness: Duration,
    store: Option<Arc<dyn Store>>,
) -> admin::ops::Readiness {
    Arc::new(move || {
        if let Some(cell) = &snapshot {
            if cell.age() > max_staleness {
                return Err(common::error::ApiError::unavailable("the snapshot is older than snapshot.max_staleness"));
            }
        }
        if let Some(store) = &store {
            store.ping().map_err(|_| common::error::ApiError::unavailable("the store is unavailable"))?;
        }
        Ok(())
    })
}

fn store_label(config: &Config) -> String {
    match &config.db.dsn {
        Dsn::Memory => "memory".into(),
        Dsn::Redb(path) => format!("redb:{}", path.display()),
        Dsn::Postgres(_) => "postgres".into(),
    }
}

fn serve(config: Arc<Config>, plane: Option<ServePlane>) -> anyhow::Result<()> {
    let addr = resolve(&config.serve.http, "http")?;
    let verifier = common::verify::Verifier::new(&config).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let may_migrate = !matches!(plane, Some(ServePlane::Check | ServePlane::Public));
    let (store, postgres) = open_store(&config, may_migrate)?;
    let metrics = common::metrics::Metrics::new(match plane {
        None => "all",
        Some(ServePlane::Admin) => "admin",
        Some(ServePlane::Check | ServePlane::Public) => "check",
    });
    let store: Arc<dyn Store> = Arc::new(common::store::metered::MeteredStore::new(store, metrics.clone()));
    let last_used = &config.last_used;
    let verifier = verifier.with_last_used(common::last_used::LastUsed::start(
        store.clone(),
        last_used.queue_size,
        last_used.flush_size,
        last_used.flush_interval,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("talos-admin")
        .enable_all()
        .build()
        .context("cannot start the admin runtime")?;
    match plane {
        Some(ServePlane::Admin) => {
            start_ops(&config, &runtime, metrics.clone(), readiness(None, Duration::MAX, Some(store.clone())))?;
            let state = admin::AdminState::new(config.clone(), store, verifier, None, metrics);
            let service = admin::AdminService::new(state, admin::Plane::Admin);
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (serve.http.host / serve.http.port)"))?;
                let local = listener.local_addr()?;
                tracing::info!(plane = "admin", addr = %local, store = %store_label(&config), "listening");
                admin::server::serve(listener, service, shutdown_signal()).await;
                anyhow::Ok(())
            })?;
        }
        Some(ServePlane::Check | ServePlane::Public) | None => {
            let snapshot = common::snapshot::start(store.clone(), verifier.clone(), config.snapshot.refresh_interval)
                .context("cannot load the snapshot from the store")?;
            metrics.watch_snapshot(snapshot.clone());
            // PostgreSQL pushes a wake-up per commit; polling stays as the fallback.
            if let Some(pg) = &postgres {
                let cell = snapshot.clone();
                if let Err(e) = pg.listen(move |_revision| cell.wake()) {
                    tracing::warn!(error = %e, "cannot LISTEN for changes; polling only");
                }
            }
            let keys = snapshot.load().len();
            let writes = plane.is_none().then(|| store.clone());
            start_ops(
                &config,
                &runtime,
                metrics.clone(),
                readiness(Some(snapshot.clone()), config.snapshot.max_staleness, writes),
            )?;
            let (engine_plane, fallback, name) = match plane {
                None => {
                    let state = admin::AdminState::new(
                        config.clone(),
                        store.clone(),
                        verifier.clone(),
                        Some(snapshot.clone()),
                        metrics.clone(),
                    );
                    let bridge = admin::server::in_process(
                        admin::AdminService::new(state, admin::Plane::AllInOne),
                        runtime.handle().clone(),
                    );
                    let fallback: engine::Fallback = Arc::new(bridge);
                    (engine::Plane::All, Some(fallback), "all")
                }
                _ => (engine::Plane::Check, None, "check"),
            };
            let engine = engine::Engine::start(
                engine::EngineConfig {
                    addr,
                    workers: config.serve.workers,
                    plane: engine_plane,
                    max_staleness: config.snapshot.max_staleness,
                    max_connections_per_worker: config.serve.max_connections_per_worker,
                    pin_workers: config.serve.pin_workers,
                    log_every: config.serve.data_plane_log_every,
                    metrics,
                    io_driver: match config.serve.io_driver {
                        common::config::IoDriverChoice::IoUring => engine::IoDriver::IoUring,
                        common::config::IoDriverChoice::Epoll => engine::IoDriver::Epoll,
                    },
                    timeouts: config.serve.timeouts,
                },
                verifier,
                snapshot,
                store,
                fallback,
            )
            .with_context(|| format!("cannot listen on {addr} (serve.http.host / serve.http.port)"))?;
            tracing::info!(
                plane = name,
                addr = %engine.local_addr(),
                workers = config.serve.workers,
                store = %store_label(&config),
                keys,
                "listening"
            );
            runtime.block_on(shutdown_signal());
            tracing::info!("shutting down");
            engine.shutdown(SHUTDOWN_GRACE);
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler succeeds at startup");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
