//! The data plane: thread-per-core monoio workers answering verification from the in-memory
//! snapshot, over an HTTP/1.1 layer of our own on httparse.
//!
//! Each worker is one OS thread with its own monoio runtime and its own `SO_REUSEPORT` listener
//! on the shared port, so the kernel spreads connections across cores and no worker ever waits
//! on another. Verification reads the current snapshot through `arc-swap` (no lock) and never
//! touches the store, except when a client asks for it with `Cache-Control: no-cache`.
//!
//! This crate never links tokio. In `talos serve`, requests for routes the data plane does not
//! own are handed to the admin service through [`Fallback`], an in-process channel.

mod conn;
pub mod parse;
pub mod respond;
pub mod verify;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::config::Timeouts;
use common::metrics::{Metrics, WorkerMetrics};
use common::snapshot::SnapshotCell;
use common::store::Store;
use common::verify::Verifier;

pub use respond::SECURITY_HEADERS;

/// Hands a request to the admin service and yields its response (any runtime may complete it).
pub type Fallback =
    Arc<dyn Fn(http::Request<Bytes>) -> futures_channel::oneshot::Receiver<http::Response<Bytes>> + Send + Sync>;

/// Which routes the engine answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// `talos serve check`: data-plane routes, health and version; everything else is 404.
    Check,
    /// `talos serve`: data-plane routes; everything else goes to the admin [`Fallback`].
    All,
}

pub struct EngineConfig {
    pub addr: SocketAddr,
    pub workers: usize,
    pub plane: Plane,
    /// `/health/ready` fails when the snapshot is older than this (check plane).
    pub max_staleness: Duration,
    /// A worker holding this many connections answers new ones 503 and closes them.
    pub max_connections_per_worker: usize,
    /// Pin worker `i` to the `i`-th CPU this process may run on.
    pub pin_workers: bool,
    /// Log one request in this many (0: none).
    pub log_every: u64,
    /// Where the workers register their counters.
    pub metrics: Arc<Metrics>,
    /// How the workers wait for socket readiness.
    pub io_driver: IoDriver,
    /// How long clients may take to send a request, take a response, or sit idle.
    pub timeouts: Timeouts,
}

/// The kernel interface the workers' event loops use (`serve.io_driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    /// io_uring (Linux 5.6+): completions instead of readiness.
    IoUring,
    /// epoll readiness, then plain `read`/`write` calls.
    Epoll,
}

/// State every worker reads.
struct Shared {
    plane: Plane,
    verifier: Verifier,
    snapshot: Arc<SnapshotCell>,
    store: Arc<dyn Store>,
    fallback: Option<Fallback>,
    max_staleness: Duration,
    control: Arc<Control>,
    /// Connections of this worker in the middle of a request.
    busy: std::cell::Cell<usize>,
    /// The public JWKS body, when signing keys are configured.
    jwks: Option<Box<[u8]>>,
    /// This worker's counters (written by this thread only).
    metrics: Arc<WorkerMetrics>,
    /// Connections this worker holds, and how many it may.
    open: std::cell::Cell<usize>,
    max_connections: usize,
    /// Request log sampling: log one request in `log_every` (0: none); `logged` counts down.
    log_every: u64,
    log_countdown: std::cell::Cell<u64>,
    timeouts: Timeouts,
}

impl Shared {
    /// Whether to log the request being answered (one in `log_every`).
    fn sample_log(&self) -> bool {
        if self.log_every == 0 {
            return false;
        }
        let left = self.log_countdown.get() - 1;
        self.log_countdown.set(if left == 0 { self.log_every } else { left });
        left == 0
    }

    fn shutting_down(&self) -> bool {
        self.control.stopping.load(Ordering::Relaxed)
    }
}

/// Cross-thread shutdown signalling and in-flight accounting.
#[derive(Default)]
struct Control {
    stopping: AtomicBool,
    stop: event_listener::Event,
    grace_nanos: std::sync::atomic::AtomicU64,
}

/// A running engine.
pub struct Engine {
    local_addr: SocketAddr,
    control: Arc<Control>,
    workers: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Binds one `SO_REUSEPORT` listener per worker on `config.addr` (port 0 picks one port for
    /// all) and starts the workers.
    pub fn start(
        config: EngineConfig,
        verifier: Verifier,
        snapshot: Arc<SnapshotCell>,
        store: Arc<dyn Store>,
        fallback: Option<Fallback>,
    ) -> std::io::Result<Engine> {
        let workers = config.workers.max(1);
        let mut listeners = Vec::with_capacity(workers);
        let mut addr = config.addr;
        if addr.port() != 0 {
            ensure_port_free(addr)?;
        }
        for _ in 0..workers {
            let listener = bind_reuseport(addr)?;
            addr = listener.local_addr()?;
            listeners.push(listener);
        }
        let control = Arc::new(Control::default());
        let mut handles = Vec::with_capacity(workers);
        let cores = if config.pin_workers { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
        if config.pin_workers && cores.is_empty() {
            tracing::warn!("serve.pin_workers: cannot read the CPUs this process may run on; workers are not pinned");
        }
        for (i, listener) in listeners.into_iter().enumerate() {
            let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
            let metrics = config.metrics.worker();
            let max_connections = config.max_connections_per_worker.max(1);
            let log_every = config.log_every;
            let io_driver = config.io_driver;
            let control = control.clone();
            let verifier = verifier.clone();
            let snapshot = snapshot.clone();
            let store = store.clone();
            let fallback = fallback.clone();
            let plane = config.plane;
            let jwks = verifier.derived.public_jwks().map(|j| j.to_string().into_bytes().into_boxed_slice());
            let max_staleness = config.max_staleness;
            let timeouts = config.timeouts;
            let handle = std::thread::Builder::new().name(format!("talos-engine-{i}")).spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        tracing::warn!(worker = i, cpu = core.id, "cannot pin the worker to its CPU");
                    }
                }
                let shared = Rc::new(Shared {
                    plane,
                    verifier,
                    snapshot,
                    store,
                    fallback,
                    max_staleness,
                    control,
                    busy: std::cell::Cell::new(0),
                    jwks,
                    metrics,
                    open: std::cell::Cell::new(0),
                    max_connections,
                    log_every,
                    log_countdown: std::cell::Cell::new(log_every),
                    timeouts,
                });
                let epoll = |listener, shared| match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                {
                    Ok(mut rt) => rt.block_on(worker(listener, shared)),
                    Err(e) => tracing::error!(error = %e, "cannot start an engine worker runtime"),
                };
                match io_driver {
                    IoDriver::IoUring => {
                        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().enable_timer().build() {
                            Ok(mut rt) => rt.block_on(worker(listener, shared)),
                            Err(e) => {
                                // E.g. a container whose seccomp profile forbids io_uring.
                                tracing::warn!(error = %e, worker = i, "io_uring is unavailable; using epoll");
                                epoll(listener, shared);
                            }
                        }
                    }
                    IoDriver::Epoll => epoll(listener, shared),
                }
            })?;
            handles.push(handle);
        }
        Ok(Engine { local_addr: addr, control, workers: handles })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets connections finish the request they are in (closing them after),
    /// waits up to `grace` for that, and joins the workers. Idle keep-alive connections are
    /// closed.
    pub fn shutdown(self, grace: Duration) {
        self.control.stopping.store(true, Ordering::SeqCst);
        self.control.grace_nanos.store(u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX), Ordering::SeqCst);
        self.control.stop.notify(usize::MAX);
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

/// Fails with `AddrInUse` when anything listens on `addr` — another talos included. The workers'
/// `SO_REUSEPORT` listeners would otherwise join a running process's group on the same port and
/// silently split its traffic. A socket without `SO_REUSEPORT` cannot bind beside a listener, so
/// binding one (and closing it, unlistened) tells.
fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR, as the listeners have it, so that connections in TIME_WAIT from a previous
    // run do not count as the port being in use.
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Pause after a failed accept (e.g. EMFILE) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

async fn worker(listener: std::net::TcpListener, shared: Rc<Shared>) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the listener with the worker runtime");
            return;
        }
    };
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        if shared.shutting_down() {
            break;
        }
        let stop = shared.control.stop.listen();
        if shared.shutting_down() {
            break;
        }
        monoio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if shared.open.get() >= shared.max_connections {
                        shared.metrics.connection_shed();
                        monoio::spawn(conn::shed(stream));
                    } else {
                        monoio::spawn(conn::serve(stream, peer, shared.clone()));
                    }
                }
                Err(e) => {
                    // Out of file descriptors (or similar): back off instead of spinning, and
                    // say so at most once a second.
                    if last_accept_warning.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        last_accept_warning = Some(Instant::now());
                    }
                    monoio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = stop => break,
        }
    }
    drop(listener);
    // Busy connections answer their request with `Connection: close` (keep-alive is off while
    // stopping); idle ones are dropped with the runtime when this returns.
    let grace = Duration::from_nanos(shared.control.grace_nanos.load(Ordering::SeqCst));
    let deadline = Instant::now() + grace;
    while shared.busy.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
}
