//! Driving the load: worker threads, each polling its share of the connections with `mio`,
//! sending pre-built requests and checking every answer, plus the progress line.
//!
//! A connection writes requests from the shared [`Pool`] into its own write buffer and frames
//! answers out of its own read buffer; both, the in-flight queue, the histogram and the event
//! list are sized before the run, so a warm connection allocates nothing per request. In the
//! closed loop a connection refills as answers arrive; with `--rate` it follows a schedule of
//! intended send times, and latency counts from the intended time (no coordinated omission).
//!
//! A rate run also records the generator's own lag: how late it sent when the connection was
//! free to send, which tells a slow server from a generator that could not keep its schedule.
//!
//! What is measured: a request whose send time (closed loop) or intended time (rate) falls in
//! the measuring window `[warmup end, end)`. The closed loop stops at the end and drops what is
//! still in flight; a rate run stops scheduling at the end and waits up to `--timeout` for the
//! answers (and the late sends) it owes, so slow answers are not left out.
//!
//! Reconnecting after an error allocates; that is not the hot path.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::args::Mode;
use super::http::{self, FrameError, Framed, Target};
use super::pool::Pool;
use super::verdict;

/// The read buffer a connection starts with; it grows (once) if an answer is larger.
const READ_BUF: usize = 64 * 1024;
/// How long `poll` may block when nothing is due, so timeouts and the end are noticed.
const TICK: Duration = Duration::from_millis(10);
/// In `--rate` runs, a send due sooner than this is waited for by polling without blocking.
/// `epoll_wait` sleeps in whole milliseconds (mio rounds up), far too coarse for sends tens of
/// microseconds apart; and sleeping costs the wake-up too: on the 2-vCPU VM this was written
/// on, waking by timerfd added 100–150 µs to the measured p50 (timerfd p50 196–279 µs, busy
/// polling 77–122 µs, same server). So the generator busy-polls the last stretch before each
/// send, keeping its core busy above roughly a thousand requests per second per thread: give it
/// cores of its own (`taskset`).
const SPIN: Duration = Duration::from_millis(1);
/// Pause before reopening a connection that could not be opened.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Highest latency the histogram tracks, in microseconds (60 s); longer ones are recorded as 60 s.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What the workers do, beyond the pool they send.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub mode: Mode,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    /// Depth of the verdicts in an answer ([`verdict::SINGLE_DEPTH`] or [`verdict::BATCH_DEPTH`]).
    pub verdict_depth: u32,
}

/// Counts of the measuring window.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    /// Answers received to measured requests.
    pub requests: u64,
    /// Credentials in those requests.
    pub verifications: u64,
    /// Requests lost to a connection that failed or closed (no answer).
    pub io_errors: u64,
    /// Answers with a status other than 200.
    pub status_errors: u64,
    /// Answers that could not be framed, or whose body did not hold one verdict per credential.
    pub body_errors: u64,
    /// Requests unanswered after `--timeout`.
    pub timeouts: u64,
    /// Failed attempts to reopen a connection.
    pub connect_errors: u64,
    /// Credentials whose `is_valid` was not the expected one, by class.
    pub mismatches: [u64; 4],
    /// Rate mode: requests due in the window that were never sent (the generator fell behind).
    pub unsent: u64,
    /// The last status other than 200 seen, for the report.
    pub last_bad_status: Option<u16>,
}

impl Counts {
    pub fn errors(&self) -> u64 {
        self.io_errors + self.status_errors + self.body_errors + self.timeouts + self.connect_errors
    }

    pub fn mismatches(&self) -> u64 {
        self.mismatches.iter().sum()
    }

    fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.verifications += o.verifications;
        self.io_errors += o.io_errors;
        self.status_errors += o.status_errors;
        self.body_errors += o.body_errors;
        self.timeouts += o.timeouts;
        self.connect_errors += o.connect_errors;
        for (m, n) in self.mismatches.iter_mut().zip(o.mismatches) {
            *m += n;
        }
        self.unsent += o.unsent;
        self.last_bad_status = o.last_bad_status.or(self.last_bad_status);
    }
}

/// The merged outcome of a run.
pub struct Outcome {
    pub counts: Counts,
    /// Latency in microseconds.
    pub histogram: Histogram<u64>,
    /// Rate mode: how late the generator itself sent, in microseconds (see [`Worker::queue_due`]).
    pub lag: Histogram<u64>,
    /// The measuring window as it happened.
    pub elapsed: Duration,
}

/// One worker's live totals (all answers, warmup included), for the progress line. Written by
/// its worker only; on its own cache lines so workers do not contend.
#[repr(align(128))]
#[derive(Default)]
struct Live {
    answers: AtomicU64,
    errors: AtomicU64,
    mismatches: AtomicU64,
}

/// The start, the end of the warmup, and the end of the measuring window.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    measure: Instant,
    end: Instant,
}

/// Opens the connections, runs the workers, prints progress every second, and merges results.
pub fn run(plan: &Plan, pool: Arc<Pool>) -> anyhow::Result<Outcome> {
    // Open every connection before the clock starts, so the first second is not spent in
    // handshakes, and a target that is down fails the run at once.
    let mut shares: Vec<Vec<(usize, StdTcpStream)>> = (0..plan.threads).map(|_| Vec::new()).collect();
    for index in 0..plan.connections {
        let stream = plan
            .target
            .connect(plan.timeout)
            .with_context(|| format!("cannot open connection {} to {}", index + 1, plan.target.url))?;
        shares[index % plan.threads].push((index, stream));
    }
    let live: Arc<Vec<Live>> = Arc::new((0..plan.threads).map(|_| Live::default()).collect());
    // A little slack for the threads to start and register their sockets.
    let start = Instant::now() + Duration::from_millis(20);
    let clock = Clock { start, measure: start + plan.warmup, end: start + plan.warmup + plan.duration };

    let workers: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(i, streams)| {
            let (plan, pool, live) = (plan.clone(), Arc::clone(&pool), Arc::clone(&live));
            thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || Worker::new(&plan, &pool, streams, clock)?.run(&live[i]))
                .context("cannot start a worker thread")
        })
        .collect::<Result<_, _>>()?;

    progress(plan, &live, clock, || workers.iter().all(|w| w.is_finished()));

    let mut counts = Counts::default();
    let mut histogram = new_histogram();
    let mut lag = new_histogram();
    for worker in workers {
        let result = worker.join().map_err(|_| anyhow!("a worker thread panicked"))??;
        counts.add(&result.counts);
        histogram.add(&result.histogram).context("merging latency histograms")?;
        lag.add(&result.lag).context("merging lag histograms")?;
    }
    Ok(Outcome { counts, histogram, lag, elapsed: plan.duration })
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("1 µs to 60 s at 3 digits is a valid histogram")
}

/// Prints a line to stderr every second until `done()`.
fn progress(plan: &Plan, live: &[Live], clock: Clock, done: impl Fn() -> bool) {
    let sum = |f: fn(&Live) -> &AtomicU64| live.iter().map(|l| f(l).load(Ordering::Relaxed)).sum::<u64>();
    let mut last_answers = 0;
    let mut next = clock.start + Duration::from_secs(1);
    while !done() {
        let now = Instant::now();
        if now < next {
            // Short sleeps so the end of the run is not held up by the progress thread.
            thread::sleep((next - now).min(Duration::from_millis(20)));
            continue;
        }
        // The line covers the second that just ended; name the phase it began in.
        let second = next - Duration::from_secs(1);
        next += Duration::from_secs(1);
        let answers = sum(|l| &l.answers);
        let phase = if second < clock.measure {
            "warmup"
        } else if second < clock.end {
            "measure"
        } else if plan.mode == Mode::Closed {
            "end"
        } else {
            "drain"
        };
        let target = match plan.mode {
            Mode::Rate { per_second } => format!(" (target {per_second:.0})"),
            Mode::Closed => String::new(),
        };
        eprintln!(
            "[{:>4.0}s] {phase:<7} {:>9} req/s{target}  errors {}  mismatches {}",
            now.saturating_duration_since(clock.start).as_secs_f64(),
            answers - last_answers,
            sum(|l| &l.errors),
            sum(|l| &l.mismatches),
        );
        last_answers = answers;
    }
}

/// One request in flight.
#[derive(Debug, Clone, Copy)]
struct Flight {
    request: usize,
    /// Where latency counts from: the send (closed loop) or the intended send (rate).
    start: Instant,
    /// When it was written, for the timeout.
    sent: Instant,
    measured: bool,
}

struct Conn {
    /// `None` while it waits to be reopened.
    stream: Option<TcpStream>,
    retry_at: Instant,
    /// The position of the connection among all of the run's: its offset into the pool and
    /// its phase in the rate schedule.
    index: usize,
    read: Vec<u8>,
    /// `read[consumed..filled]` is received and not yet framed.
    consumed: usize,
    filled: usize,
    write: Vec<u8>,
    written: usize,
    flights: VecDeque<Flight>,
    /// The next pool request to send.
    cursor: usize,
    /// Rate mode: how many of its scheduled requests it has sent.
    sent: u64,
    /// When it last had an answer (or was opened): from then on it had room to send.
    answered_at: Instant,
}

/// Why a connection is given up.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Io,
    Frame,
    Timeout,
    /// The server closed (or announced it would, with `Connection: close`).
    Closed,
}

struct Worker<'a> {
    poll: Poll,
    conns: Vec<Conn>,
    pool: &'a Pool,
    target: Target,
    mode: Mode,
    pipeline: usize,
    timeout: Duration,
    depth: u32,
    clock: Clock,
    /// Rate mode: nanoseconds between two sends of one connection, and between connections.
    period_ns: f64,
    phase_ns: f64,
    counts: Counts,
    histogram: Histogram<u64>,
    lag: Histogram<u64>,
    answers: u64,
    errors: u64,
    mismatches: u64,
}

impl<'a> Worker<'a> {
    fn new(plan: &Plan, pool: &'a Pool, streams: Vec<(usize, StdTcpStream)>, clock: Clock) -> anyhow::Result<Self> {
        let poll = Poll::new().context("cannot create a poller")?;
        let mut conns = Vec::with_capacity(streams.len());
        for (slot, (index, stream)) in streams.into_iter().enumerate() {
            stream.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(stream);
            poll.registry().register(&mut stream, Token(slot), Interest::READABLE | Interest::WRITABLE)?;
            conns.push(Conn {
                stream: Some(stream),
                retry_at: clock.start,
                answered_at: clock.start,
                index,
                read: vec![0; READ_BUF],
                consumed: 0,
                filled: 0,
                write: Vec::with_capacity(plan.pipeline * 4096),
                written: 0,
                flights: VecDeque::with_capacity(plan.pipeline),
                // Spread the connections over the pool so they do not send in lockstep.
                cursor: index * pool.len() / plan.connections,
                sent: 0,
            });
        }
        let (period_ns, phase_ns) = match plan.mode {
            Mode::Rate { per_second } => (plan.connections as f64 * 1e9 / per_second, 1e9 / per_second),
            Mode::Closed => (0.0, 0.0),
        };
        Ok(Worker {
            poll,
            conns,
            pool,
            target: plan.target.clone(),
            mode: plan.mode,
            pipeline: plan.pipeline,
            timeout: plan.timeout,
            depth: plan.verdict_depth,
            clock,
            period_ns,
            phase_ns,
            counts: Counts::default(),
            histogram: new_histogram(),
            lag: new_histogram(),
            answers: 0,
            errors: 0,
            mismatches: 0,
        })
    }

    /// Connection `c`'s `k`-th intended send time.
    fn due(&self, c: usize, k: u64) -> Instant {
        let offset = self.conns[c].index as f64 * self.phase_ns + k as f64 * self.period_ns;
        self.clock.start + Duration::from_nanos(offset as u64)
    }

    fn run(mut self, live: &Live) -> anyhow::Result<WorkerResult> {
        let now = Instant::now();
        if now < self.clock.start {
            thread::sleep(self.clock.start - now);
        }
        let drain_until = self.clock.end + self.timeout;
        let mut events = Events::with_capacity(self.conns.len().max(16) * 2);
        loop {
            let now = Instant::now();
            let finished = match self.mode {
                Mode::Closed => now >= self.clock.end,
                Mode::Rate { .. } => now >= drain_until || (now >= self.clock.end && self.owes_nothing()),
            };
            if finished {
                break;
            }
            let mut wake = now + TICK;
            for c in 0..self.conns.len() {
                if let Some(at) = self.service(c, now) {
                    wake = wake.min(at);
                }
            }
            let wait = match self.mode {
                // Timeouts and the end are noticed to the millisecond, which is all they need.
                Mode::Closed => ceil_millis(wake.min(self.clock.end).saturating_duration_since(Instant::now())),
                // Sleep in whole milliseconds, waking at least `SPIN` early; then poll without
                // blocking until the send is due.
                Mode::Rate { .. } => {
                    let left = wake.min(drain_until).saturating_duration_since(Instant::now()).saturating_sub(SPIN);
                    Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
                }
            };
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("polling the connections failed"),
            }
            let now = Instant::now();
            for event in events.iter() {
                let c = event.token().0;
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                if readable {
                    if let Err(failure) = self.on_readable(c) {
                        self.fail(c, failure, now);
                        continue;
                    }
                }
                if event.is_writable() || readable {
                    if let Err(failure) = self.flush(c) {
                        self.fail(c, failure, now);
                    }
                }
            }
            live.answers.store(self.answers, Ordering::Relaxed);
            live.errors.store(self.errors, Ordering::Relaxed);
            live.mismatches.store(self.mismatches, Ordering::Relaxed);
        }
        if self.mode != Mode::Closed {
            // Still unanswered after the drain: as good as timed out.
            for conn in &self.conns {
                self.counts.timeouts += conn.flights.iter().filter(|f| f.measured).count() as u64;
            }
            // Whatever was due in the window and never sent is a measure of falling behind.
            for c in 0..self.conns.len() {
                let mut k = self.conns[c].sent;
                loop {
                    let due = self.due(c, k);
                    if due >= self.clock.end {
                        break;
                    }
                    if due >= self.clock.measure {
                        self.counts.unsent += 1;
                    }
                    k += 1;
                }
            }
        }
        Ok(WorkerResult { counts: self.counts, histogram: self.histogram, lag: self.lag })
    }

    /// Rate mode: every connection has its answers and nothing due before the end.
    fn owes_nothing(&self) -> bool {
        (0..self.conns.len())
            .all(|c| self.conns[c].flights.is_empty() && self.due(c, self.conns[c].sent) >= self.clock.end)
    }

    /// Reopens, times out, and sends what is due on connection `c`; returns when it next needs
    /// attention, if that is sooner than the next event.
    fn service(&mut self, c: usize, now: Instant) -> Option<Instant> {
        if self.conns[c].stream.is_none() {
            if now < self.conns[c].retry_at {
                return Some(self.conns[c].retry_at);
            }
            self.reconnect(c, now);
            if self.conns[c].stream.is_none() {
                return Some(self.conns[c].retry_at);
            }
        }
        if let Some(oldest) = self.conns[c].flights.front() {
            if now.saturating_duration_since(oldest.sent) >= self.timeout {
                self.fail(c, Failure::Timeout, now);
                return Some(self.conns[c].retry_at);
            }
        }
        let mut wake = None;
        match self.mode {
            Mode::Closed => {
                let measured = now >= self.clock.measure;
                while now < self.clock.end && self.conns[c].flights.len() < self.pipeline {
                    self.queue(c, now, now, measured);
                }
            }
            Mode::Rate { .. } => {
                while self.conns[c].flights.len() < self.pipeline {
                    let due = self.due(c, self.conns[c].sent);
                    if due >= self.clock.end {
                        break;
                    }
                    if due > now {
                        wake = Some(due);
                        break;
                    }
                    self.queue_due(c, due, now);
                }
            }
        }
        if let Err(failure) = self.flush(c) {
            self.fail(c, failure, now);
        }
        wake
    }

    /// Rate mode: queues the request due at `due`, and records how late the generator itself is.
    /// A send can be late because the connection still waits for an answer (the server is
    /// slow: that wait is part of the latency) or because the generator did not get to it (its
    /// thread was busy or descheduled). The second is the generator's lag: the time since the
    /// later of `due` and the connection's last answer. It is exact with `--pipeline 1` and a
    /// lower bound otherwise. A large lag means the latencies include the generator's delays.
    fn queue_due(&mut self, c: usize, due: Instant, now: Instant) {
        let measured = due >= self.clock.measure;
        if measured {
            let lag = now.saturating_duration_since(due.max(self.conns[c].answered_at));
            self.lag.saturating_record(u64::try_from(lag.as_micros()).unwrap_or(MAX_LATENCY_US).max(1));
        }
        self.queue(c, due, now, measured);
        self.conns[c].sent += 1;
    }

    /// Appends the connection's next request to its write buffer.
    fn queue(&mut self, c: usize, start: Instant, sent: Instant, measured: bool) {
        let conn = &mut self.conns[c];
        let request = conn.cursor;
        conn.cursor = (conn.cursor + 1) % self.pool.len();
        conn.write.extend_from_slice(self.pool.request(request));
        conn.flights.push_back(Flight { request, start, sent, measured });
    }

    /// Writes as much of the write buffer as the socket takes.
    fn flush(&mut self, c: usize) -> Result<(), Failure> {
        let conn = &mut self.conns[c];
        let Some(stream) = conn.stream.as_mut() else { return Ok(()) };
        while conn.written < conn.write.len() {
            match stream.write(&conn.write[conn.written..]) {
                Ok(0) => return Err(Failure::Io),
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Failure::Io),
            }
        }
        conn.write.clear();
        conn.written = 0;
        Ok(())
    }

    /// Reads until the socket is empty, handling each complete answer.
    fn on_readable(&mut self, c: usize) -> Result<(), Failure> {
        loop {
            let conn = &mut self.conns[c];
            if conn.filled == conn.read.len() {
                // Full of an unfinished answer: compact, or grow if it starts at the front.
                let need = if conn.consumed > 0 { conn.read.len() - conn.consumed + 1 } else { conn.read.len() * 2 };
                make_room(conn, need);
            }
            let Some(stream) = conn.stream.as_mut() else { return Ok(()) };
            let space = conn.read.len() - conn.filled;
            let drained = match stream.read(&mut conn.read[conn.filled..]) {
                Ok(0) => return Err(Failure::Closed),
                Ok(n) => {
                    conn.filled += n;
                    // A short read emptied the socket: whatever arrives later raises a new
                    // edge-triggered event, so the read that would only say `WouldBlock` is
                    // skipped (a syscall per answer saved; tokio does the same).
                    n < space
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Failure::Io),
            };
            let now = Instant::now();
            self.on_bytes(c, now)?;
            if drained {
                return Ok(());
            }
        }
    }

    /// Frames and checks every complete answer in the read buffer.
    fn on_bytes(&mut self, c: usize, now: Instant) -> Result<(), Failure> {
        loop {
            let conn = &mut self.conns[c];
            let framed = http::frame(&conn.read[conn.consumed..conn.filled]).map_err(|_: FrameError| Failure::Frame)?;
            let response = match framed {
                Framed::Complete(response) => response,
                Framed::Partial { total } => {
                    if let Some(total) = total {
                        make_room(conn, total);
                    }
                    if conn.consumed == conn.filled {
                        conn.consumed = 0;
                        conn.filled = 0;
                    }
                    return Ok(());
                }
            };
            // An answer nobody asked for means the connection is out of step.
            let flight = conn.flights.pop_front().ok_or(Failure::Frame)?;
            conn.answered_at = now;
            let body = conn.consumed + response.body.start..conn.consumed + response.body.end;
            conn.consumed += response.len;
            self.answers += 1;
            let classes = self.pool.classes(flight.request);
            let body = &self.conns[c].read[body];
            let mut bad_status = false;
            let mut bad_body = false;
            let mut wrong = [0u64; 4];
            if response.status != 200 {
                bad_status = true;
            } else {
                let mut i = 0;
                let found = verdict::scan(body, self.depth, |valid| {
                    if let Some(class) = classes.get(i) {
                        if valid != class.expect_valid() {
                            wrong[class.index()] += 1;
                        }
                    }
                    i += 1;
                });
                bad_body = found != Some(classes.len());
            }
            let wrong_total: u64 = wrong.iter().sum();
            self.errors += u64::from(bad_status) + u64::from(bad_body);
            self.mismatches += wrong_total;
            if flight.measured {
                let counts = &mut self.counts;
                counts.requests += 1;
                counts.verifications += classes.len() as u64;
                counts.status_errors += u64::from(bad_status);
                counts.body_errors += u64::from(bad_body);
                if bad_status {
                    counts.last_bad_status = Some(response.status);
                }
                for (m, w) in counts.mismatches.iter_mut().zip(wrong) {
                    *m += w;
                }
                let us = now.saturating_duration_since(flight.start).as_micros();
                self.histogram.saturating_record(u64::try_from(us).unwrap_or(MAX_LATENCY_US).max(1));
            }
            if response.close {
                return Err(Failure::Closed);
            }
        }
    }

    /// Gives up connection `c`: counts its requests in flight as failed, and reopens it.
    fn fail(&mut self, c: usize, failure: Failure, now: Instant) {
        let conn = &mut self.conns[c];
        let mut first = true;
        for flight in conn.flights.drain(..) {
            self.errors += 1;
            if flight.measured {
                let counts = &mut self.counts;
                match (first, failure) {
                    (true, Failure::Timeout) => counts.timeouts += 1,
                    (true, Failure::Frame) => counts.body_errors += 1,
                    _ => counts.io_errors += 1,
                }
            }
            first = false;
        }
        if let Some(mut stream) = conn.stream.take() {
            // The socket is closed when dropped; deregistering first keeps the poller tidy.
            let _ = self.poll.registry().deregister(&mut stream);
        }
        conn.consumed = 0;
        conn.filled = 0;
        conn.write.clear();
        conn.written = 0;
        self.reconnect(c, now);
    }

    fn reconnect(&mut self, c: usize, now: Instant) {
        let opened = self.target.connect(self.timeout.min(Duration::from_secs(1))).and_then(|stream| {
            stream.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(stream);
            self.poll.registry().register(&mut stream, Token(c), Interest::READABLE | Interest::WRITABLE)?;
            Ok(stream)
        });
        let conn = &mut self.conns[c];
        match opened {
            Ok(stream) => {
                conn.stream = Some(stream);
                conn.answered_at = now;
            }
            Err(_) => {
                conn.retry_at = now + RECONNECT_PAUSE;
                self.errors += 1;
                if now >= self.clock.measure && now < self.clock.end {
                    self.counts.connect_errors += 1;
                }
            }
        }
    }
}

/// `d` rounded up to whole milliseconds, so that `poll` never returns before it.
fn ceil_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// Makes `read[consumed..]` at least `need` bytes long: moves the unread bytes to the front, and
/// grows the buffer if that is not enough (only for an answer larger than any before).
fn make_room(conn: &mut Conn, need: usize) {
    if conn.read.len() - conn.consumed >= need {
        return;
    }
    conn.read.copy_within(conn.consumed..conn.filled, 0);
    conn.filled -= conn.consumed;
    conn.consumed = 0;
    if conn.read.len() < need {
        conn.read.resize(need.next_power_of_two(), 0);
    }
}

struct WorkerResult {
    counts: Counts,
    histogram: Histogram<u64>,
    lag: Histogram<u64>,
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::keys::Secrets;
    use crate::mix::{Class, Mix};

    /// How the fake server answers.
    #[derive(Clone, Copy)]
    enum Fake {
        /// `is_valid` true exactly for the valid keys of [`pool`], which end in `_good`.
        Honest,
        /// `is_valid` true for everything.
        Lying,
        /// Honest, with `Connection: close` on every answer.
        Closing,
    }

    /// A verify server on 127.0.0.1: a thread per connection, answering pipelined requests in
    /// order. It runs until the test process ends.
    fn fake_server(fake: Fake) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let url = format!("http://{}", listener.local_addr().expect("has an address"));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                thread::spawn(move || serve(stream, fake));
            }
        });
        Target::parse(&url).expect("a valid URL")
    }

    fn serve(mut stream: StdTcpStream, fake: Fake) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut out = Vec::new();
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut request = httparse::Request::new(&mut headers);
                let Ok(httparse::Status::Complete(head)) = request.parse(&buf) else { break };
                let length: usize = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .expect("the generator sends content-length");
                if buf.len() < head + length {
                    break;
                }
                let body: serde_json::Value = serde_json::from_slice(&buf[head..head + length]).expect("JSON body");
                let credential = body["credential"].as_str().expect("a credential");
                let valid = matches!(fake, Fake::Lying) || credential.ends_with("_good");
                let answer = format!(r#"{{"is_valid":{valid}}}"#);
                let close = if matches!(fake, Fake::Closing) { "connection: close\r\n" } else { "" };
                out.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\n{close}content-length: {}\r\n\r\n{answer}", answer.len()).as_bytes(),
                );
                buf.drain(..head + length);
                if matches!(fake, Fake::Closing) {
                    let _ = stream.write_all(&out);
                    return;
                }
            }
            if stream.write_all(&out).is_err() {
                return;
            }
        }
    }

    fn pool(target: &Target) -> Arc<Pool> {
        let secrets = Secrets {
            valid: (0..10).map(|i| format!("tk_v1_{i}_good")).collect(),
            revoked: (0..3).map(|i| format!("tk_v1_{i}_gone")).collect(),
        };
        let mix = Mix::parse("valid=90,unknown=5,revoked=3,malformed=2").expect("parses");
        Arc::new(Pool::build(&target.host, &secrets, &mix, None, 1000, 1))
    }

    fn plan(target: Target, mode: Mode, pipeline: usize) -> Plan {
        Plan {
            target,
            mode,
            connections: 4,
            threads: 2,
            pipeline,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(400),
            timeout: Duration::from_secs(2),
            verdict_depth: verdict::SINGLE_DEPTH,
        }
    }

    #[test]
    fn closed_loop_checks_every_answer() {
        let target = fake_server(Fake::Honest);
        let outcome = run(&plan(target.clone(), Mode::Closed, 4), pool(&target)).expect("runs");
        let c = &outcome.counts;
        assert!(c.requests > 100, "{c:?}");
        assert_eq!((c.errors(), c.mismatches()), (0, 0), "{c:?}");
        assert_eq!(c.requests, c.verifications);
        assert_eq!(outcome.histogram.len(), c.requests);
    }

    #[test]
    fn counts_wrong_verdicts_by_class() {
        let target = fake_server(Fake::Lying);
        let outcome = run(&plan(target.clone(), Mode::Closed, 1), pool(&target)).expect("runs");
        let c = &outcome.counts;
        assert_eq!(c.errors(), 0, "{c:?}");
        assert_eq!(c.mismatches[Class::Valid.index()], 0, "{c:?}");
        for class in [Class::Unknown, Class::Revoked, Class::Malformed] {
            assert!(c.mismatches[class.index()] > 0, "{class:?}: {c:?}");
        }
    }

    #[test]
    fn reopens_connections_the_server_closes() {
        let target = fake_server(Fake::Closing);
        let outcome = run(&plan(target.clone(), Mode::Closed, 1), pool(&target)).expect("runs");
        let c = &outcome.counts;
        assert!(c.requests > 10, "{c:?}");
        assert_eq!((c.errors(), c.mismatches()), (0, 0), "{c:?}");
    }

    #[test]
    fn fixed_rate_keeps_its_schedule() {
        let target = fake_server(Fake::Honest);
        let outcome = run(&plan(target.clone(), Mode::Rate { per_second: 2000.0 }, 1), pool(&target)).expect("runs");
        let c = &outcome.counts;
        // 2000/s over the 400 ms window is 800 requests, every one sent and answered.
        assert_eq!((c.requests, c.unsent), (800, 0), "{c:?}");
        assert_eq!(outcome.lag.len(), 800);
        assert_eq!((c.errors(), c.mismatches()), (0, 0), "{c:?}");
    }
}
