//! Metrics: what talos counts, and the Prometheus text it serves on `serve.metrics`.
//!
//! Everything is recorded into plain atomics and read only when scraped. On the data plane every
//! engine worker owns a [`WorkerMetrics`] that only its own thread writes, so recording a
//! verification touches a cache line no other core writes and takes no lock; a scrape sums the
//! workers. The admin plane, the snapshot refresher and the store decorator
//! ([`crate::store::metered`]) are off the hot path and record into shared atomics, or — for the
//! admin's per-route families, whose label sets are only known at run time — into
//! `prometheus-client` families.
//!
//! The exposition is encoded by `prometheus-client` (OpenMetrics text, which Prometheus scrapes
//! natively); this module only decides what is counted and sums it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::snapshot::SnapshotCell;
use crate::verify::Rejection;

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histograms, in seconds: 5 µs to 5 s.
const LATENCY_BUCKETS: [f64; 17] =
    [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5, 1.0, 5.0];

/// The same bounds in nanoseconds, for the comparison on the recording side.
const BUCKET_NANOS: [u64; 17] = {
    let mut nanos = [0u64; 17];
    let mut i = 0;
    while i < LATENCY_BUCKETS.len() {
        nanos[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    nanos
};

/// A latency histogram over [`LATENCY_BUCKETS`] (plus `+Inf`), lock-free.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKET_NANOS.iter().position(|&bound| nanos <= bound).unwrap_or(BUCKET_NANOS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Adds this histogram's counts into `totals` (for summing per-worker histograms).
    fn add_to(&self, totals: &mut HistogramTotals) {
        for (total, bucket) in totals.buckets.iter_mut().zip(&self.buckets) {
            *total += bucket.load(Ordering::Relaxed);
        }
        totals.sum_nanos += self.sum_nanos.load(Ordering::Relaxed);
    }

    fn totals(&self) -> HistogramTotals {
        let mut totals = HistogramTotals::default();
        self.add_to(&mut totals);
        totals
    }
}

#[derive(Default)]
struct HistogramTotals {
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: u64,
}

impl HistogramTotals {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0); LATENCY_BUCKETS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            *slot = (LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::MAX), self.buckets[i]);
        }
        let count = self.buckets.iter().sum();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum_nanos as f64 / 1e9,
            count,
            &buckets,
            None,
        )
    }
}

/// How one verification ended: the `outcome` label of `talos_verifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Valid,
    InvalidFormat,
    NotFound,
    Revoked,
    Expired,
    AudienceMismatch,
    IpNotAllowed,
    SignatureInvalid,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Valid,
        Outcome::InvalidFormat,
        Outcome::NotFound,
        Outcome::Revoked,
        Outcome::Expired,
        Outcome::AudienceMismatch,
        Outcome::IpNotAllowed,
        Outcome::SignatureInvalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::InvalidFormat => "invalid_format",
            Outcome::NotFound => "not_found",
            Outcome::Revoked => "revoked",
            Outcome::Expired => "expired",
            Outcome::AudienceMismatch => "audience_mismatch",
            Outcome::IpNotAllowed => "ip_not_allowed",
            Outcome::SignatureInvalid => "signature_invalid",
        }
    }
}

impl From<Rejection> for Outcome {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::InvalidFormat => Outcome::InvalidFormat,
            Rejection::NotFound => Outcome::NotFound,
            Rejection::Revoked => Outcome::Revoked,
            Rejection::Expired => Outcome::Expired,
            Rejection::AudienceMismatch => Outcome::AudienceMismatch,
            Rejection::IpNotAllowed => Outcome::IpNotAllowed,
            Rejection::SignatureInvalid => Outcome::SignatureInvalid,
        }
    }
}

/// Verification counters: one per outcome, and the latency of verify requests (a batch is one
/// request).
#[derive(Default)]
pub struct VerifyMetrics {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    pub latency: Histogram,
}

impl VerifyMetrics {
    pub fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn add_to(&self, totals: &mut VerifyTotals) {
        for (total, count) in totals.outcomes.iter_mut().zip(&self.outcomes) {
            *total += count.load(Ordering::Relaxed);
        }
        self.latency.add_to(&mut totals.latency);
    }
}

#[derive(Default)]
struct VerifyTotals {
    outcomes: [u64; Outcome::ALL.len()],
    latency: HistogramTotals,
}

/// One engine worker's counters, written by that worker's thread only.
#[derive(Default)]
pub struct WorkerMetrics {
    pub verify: VerifyMetrics,
    open_connections: AtomicI64,
    accepted: AtomicU64,
    shed: AtomicU64,
}

impl WorkerMetrics {
    pub fn connection_opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection refused because the worker was at its cap.
    pub fn connection_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The store operations timed by [`crate::store::metered::MeteredStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Insert,
    InsertBatch,
    Get,
    Modify,
    Delete,
    List,
    Scan,
    Revision,
    ChangesSince,
    CountActive,
    Ping,
    RecordLastUsed,
}

impl StoreOp {
    const ALL: [StoreOp; 12] = [
        StoreOp::Insert,
        StoreOp::InsertBatch,
        StoreOp::Get,
        StoreOp::Modify,
        StoreOp::Delete,
        StoreOp::List,
        StoreOp::Scan,
        StoreOp::Revision,
        StoreOp::ChangesSince,
        StoreOp::CountActive,
        StoreOp::Ping,
        StoreOp::RecordLastUsed,
    ];

    fn label(self) -> &'static str {
        match self {
            StoreOp::Insert => "insert",
            StoreOp::InsertBatch => "insert_batch",
            StoreOp::Get => "get",
            StoreOp::Modify => "modify",
            StoreOp::Delete => "delete",
            StoreOp::List => "list",
            StoreOp::Scan => "scan",
            StoreOp::Revision => "revision",
            StoreOp::ChangesSince => "changes_since",
            StoreOp::CountActive => "count_active",
            StoreOp::Ping => "ping",
            StoreOp::RecordLastUsed => "record_last_used",
        }
    }
}

/// Store operation latency and failures, per operation.
#[derive(Default)]
pub struct StoreMetrics {
    latency: [Histogram; StoreOp::ALL.len()],
    errors: [AtomicU64; StoreOp::ALL.len()],
}

impl StoreMetrics {
    pub fn record(&self, op: StoreOp, elapsed: Duration, failed: bool) {
        self.latency[op as usize].observe(elapsed);
        if failed {
            self.errors[op as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Labels of the admin's per-route families: the route template (key ids replaced by
/// `{key_id}`, unknown paths as `unmatched`) and the status.
type RouteStatus = [(&'static str, String); 2];

/// Every metric of one talos process.
pub struct Metrics {
    /// The `plane` label: `all`, `admin` or `check` (the serve mode).
    plane: &'static str,
    workers: Mutex<Vec<Arc<WorkerMetrics>>>,
    /// Verifications answered by the admin plane (`talos serve admin`).
    pub admin_verify: VerifyMetrics,
    admin_requests: Family<RouteStatus, Counter>,
    admin_latency: Mutex<std::collections::BTreeMap<String, Arc<Histogram>>>,
    admin_connections: AtomicI64,
    pub store: StoreMetrics,
    snapshot: OnceLock<Arc<SnapshotCell>>,
}

impl Metrics {
    pub fn new(plane: &'static str) -> Arc<Metrics> {
        Arc::new(Metrics {
            plane,
            workers: Mutex::new(Vec::new()),
            admin_verify: VerifyMetrics::default(),
            admin_requests: Family::default(),
            admin_latency: Mutex::new(Default::default()),
            admin_connections: AtomicI64::new(0),
            store: StoreMetrics::default(),
            snapshot: OnceLock::new(),
        })
    }

    /// A new engine worker's counters (called once per worker at start).
    pub fn worker(&self) -> Arc<WorkerMetrics> {
        let worker = Arc::new(WorkerMetrics::default());
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).push(worker.clone());
        worker
    }

    /// The snapshot whose revision, age, size and refreshes are reported.
    pub fn watch_snapshot(&self, cell: Arc<SnapshotCell>) {
        let _ = self.snapshot.set(cell);
    }

    /// One answered admin request. `route` is the loggable route template.
    pub fn admin_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.admin_requests.get_or_create(&[("route", route.to_owned()), ("status", status.to_string())]).inc();
        let histogram = {
            let mut latency = self.admin_latency.lock().unwrap_or_else(|e| e.into_inner());
            match latency.get(route) {
                Some(h) => h.clone(),
                None => latency.entry(route.to_owned()).or_default().clone(),
            }
        };
        histogram.observe(elapsed);
    }

    pub fn admin_connection_opened(&self) {
        self.admin_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn admin_connection_closed(&self) {
        self.admin_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// The whole exposition, OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn render(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition(self.clone())));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// The collector that encodes [`Metrics`] at scrape time.
struct Exposition(Arc<Metrics>);

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exposition")
    }
}

fn counter(encoder: &mut MetricEncoder<'_>, labels: &[(&str, &str)], value: u64) -> Result<(), std::fmt::Error> {
    if labels.is_empty() {
        return encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&value, None);
    }
    encoder.encode_family(&labels)?.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&value, None)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut MetricEncoder<'_>,
    labels: &[(&str, &str)],
    value: V,
) -> Result<(), std::fmt::Error> {
    if labels.is_empty() {
        return encoder.encode_gauge(&value);
    }
    encoder.encode_family(&labels)?.encode_gauge(&value)
}

impl Collector for Exposition {
    fn encode(&self, mut out: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let metrics = &*self.0;
        let plane = metrics.plane;

        let mut info = out.encode_descriptor("talos_build", "talos build information", None, MetricType::Info)?;
        info.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;

        // Verifications: the engine workers' counters summed, plus the admin plane's own.
        let mut engine = VerifyTotals::default();
        let (mut open, mut accepted, mut shed) = (0i64, 0u64, 0u64);
        for worker in metrics.workers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            worker.verify.add_to(&mut engine);
            open += worker.open_connections.load(Ordering::Relaxed);
            accepted += worker.accepted.load(Ordering::Relaxed);
            shed += worker.shed.load(Ordering::Relaxed);
        }
        let mut admin = VerifyTotals::default();
        metrics.admin_verify.add_to(&mut admin);
        let sources = [(plane, &engine), ("admin", &admin)];
        let sources = if plane == "admin" { &sources[1..] } else { &sources[..1] };

        let mut e = out.encode_descriptor(
            "talos_verifications",
            "API key and derived token verifications, by outcome",
            None,
            MetricType::Counter,
        )?;
        for (plane, totals) in sources {
            for outcome in Outcome::ALL {
                counter(&mut e, &[("plane", plane), ("outcome", outcome.label())], totals.outcomes[outcome as usize])?;
            }
        }
        let mut e = out.encode_descriptor(
            "talos_verify_request_duration_seconds",
            "Time to answer a verify or batch verify request, from parsed request to composed response",
            None,
            MetricType::Histogram,
        )?;
        for (plane, totals) in sources {
            totals.latency.encode(e.encode_family(&[("plane", *plane)])?)?;
        }

        if plane != "admin" {
            let mut e = out.encode_descriptor(
                "talos_engine_connections_open",
                "Open data-plane connections",
                None,
                MetricType::Gauge,
            )?;
            gauge(&mut e, &[("plane", plane)], open)?;
            let mut e = out.encode_descriptor(
                "talos_engine_connections_accepted",
                "Data-plane connections accepted",
                None,
                MetricType::Counter,
            )?;
            counter(&mut e, &[("plane", plane)], accepted)?;
            let mut e = out.encode_descriptor(
                "talos_engine_connections_shed",
                "Data-plane connections refused (503 and closed) because a worker was at serve.max_connections_per_worker",
                None,
                MetricType::Counter,
            )?;
            counter(&mut e, &[("plane", plane)], shed)?;
        }

        if plane != "check" {
            let e = out.encode_descriptor(
                "talos_admin_requests",
                "Admin-plane requests, by route and status",
                None,
                MetricType::Counter,
            )?;
            metrics.admin_requests.encode(e)?;
            let mut e = out.encode_descriptor(
                "talos_admin_request_duration_seconds",
                "Admin-plane request latency, by route",
                None,
                MetricType::Histogram,
            )?;
            let routes: Vec<(String, Arc<Histogram>)> = metrics
                .admin_latency
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(route, h)| (route.clone(), h.clone()))
                .collect();
            for (route, histogram) in routes {
                histogram.totals().encode(e.encode_family(&[("route", route.as_str())])?)?;
            }
            if plane == "admin" {
                let mut e = out.encode_descriptor(
                    "talos_admin_connections_open",
                    "Open admin-plane connections",
                    None,
                    MetricType::Gauge,
                )?;
                gauge(&mut e, &[], metrics.admin_connections.load(Ordering::Relaxed))?;
            }
        }

        let mut e = out.encode_descriptor(
            "talos_store_operation_duration_seconds",
            "Store operation latency, by operation",
            None,
            MetricType::Histogram,
        )?;
        for op in StoreOp::ALL {
            metrics.store.latency[op as usize].totals().encode(e.encode_family(&[("operation", op.label())])?)?;
        }
        let mut e = out.encode_descriptor(
            "talos_store_errors",
            "Failed store operations, by operation",
            None,
            MetricType::Counter,
        )?;
        for op in StoreOp::ALL {
            counter(&mut e, &[("operation", op.label())], metrics.store.errors[op as usize].load(Ordering::Relaxed))?;
        }

        if let Some(cell) = metrics.snapshot.get() {
            let snapshot = cell.load();
            let mut e = out.encode_descriptor(
                "talos_snapshot_revision",
                "Store revision of the published snapshot",
                None,
                MetricType::Gauge,
            )?;
            gauge(&mut e, &[], snapshot.revision())?;
            let mut e = out.encode_descriptor(
                "talos_snapshot_keys",
                "Keys in the published snapshot",
                None,
                MetricType::Gauge,
            )?;
            gauge(&mut e, &[], snapshot.len() as u64)?;
            let mut e = out.encode_descriptor(
                "talos_snapshot_age_seconds",
                "Time since the snapshot refresher last read the store successfully",
                None,
                MetricType::Gauge,
            )?;
            gauge(&mut e, &[], cell.age().as_secs_f64())?;
            let e = out.encode_descriptor(
                "talos_snapshot_refresh_duration_seconds",
                "Time to read changes from the store and publish a new snapshot (refreshes that found changes)",
                None,
                MetricType::Histogram,
            )?;
            cell.refresh_latency().totals().encode(e)?;
            let mut e = out.encode_descriptor(
                "talos_snapshot_refresh_failures",
                "Snapshot refreshes that failed (the last snapshot kept serving)",
                None,
                MetricType::Counter,
            )?;
            counter(&mut e, &[], cell.refresh_failures())?;
        }

        if let Some(rss) = resident_memory_bytes() {
            let mut e = out.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                MetricType::Gauge,
            )?;
            gauge(&mut e, &[], rss)?;
        }
        Ok(())
    }
}

/// The process's resident set size, from `/proc/self/statm` (Linux).
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn worker_counters_are_summed_per_plane_and_outcome() {
        let metrics = Metrics::new("check");
        let (a, b) = (metrics.worker(), metrics.worker());
        a.verify.count(Outcome::Valid);
        b.verify.count(Outcome::Valid);
        b.verify.count(Outcome::Revoked);
        a.verify.latency.observe(Duration::from_micros(3));
        b.verify.latency.observe(Duration::from_millis(2));
        a.connection_opened();
        b.connection_opened();
        b.connection_closed();
        let text = metrics.render();
        assert_eq!(sample(&text, r#"talos_verifications_total{plane="check",outcome="valid"}"#), Some(2.0), "{text}");
        assert_eq!(sample(&text, r#"talos_verifications_total{plane="check",outcome="revoked"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"talos_verifications_total{plane="check",outcome="expired"}"#), Some(0.0));
        assert_eq!(sample(&text, r#"talos_verify_request_duration_seconds_count{plane="check"}"#), Some(2.0));
        assert_eq!(
            sample(&text, r#"talos_verify_request_duration_seconds_bucket{le="0.000005",plane="check"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"talos_verify_request_duration_seconds_bucket{le="0.0025",plane="check"}"#),
            Some(2.0)
        );
        assert_eq!(sample(&text, r#"talos_engine_connections_open{plane="check"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"talos_engine_connections_accepted_total{plane="check"}"#), Some(2.0));
        assert!(!text.contains("talos_admin_requests"), "a check plane has no admin routes");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn admin_requests_are_counted_by_route_and_status() {
        let metrics = Metrics::new("admin");
        metrics.admin_request("/v2alpha1/admin/issuedApiKeys", 200, Duration::from_millis(1));
        metrics.admin_request("/v2alpha1/admin/issuedApiKeys", 200, Duration::from_millis(1));
        metrics.admin_request("/v2alpha1/admin/issuedApiKeys", 400, Duration::from_millis(1));
        metrics.admin_verify.count(Outcome::NotFound);
        let text = metrics.render();
        assert_eq!(
            sample(&text, r#"talos_admin_requests_total{route="/v2alpha1/admin/issuedApiKeys",status="200"}"#),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"talos_admin_requests_total{route="/v2alpha1/admin/issuedApiKeys",status="400"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"talos_admin_request_duration_seconds_count{route="/v2alpha1/admin/issuedApiKeys"}"#),
            Some(3.0)
        );
        assert_eq!(sample(&text, r#"talos_verifications_total{plane="admin",outcome="not_found"}"#), Some(1.0));
        assert!(!text.contains("talos_engine_connections_open"), "an admin plane has no engine");
    }

    #[test]
    fn histogram_buckets_hold_their_upper_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_nanos(5_000));
        h.observe(Duration::from_nanos(5_001));
        h.observe(Duration::from_secs(60));
        let totals = h.totals();
        assert_eq!(totals.buckets[0], 1);
        assert_eq!(totals.buckets[1], 1);
        assert_eq!(totals.buckets[LATENCY_BUCKETS.len()], 1);
    }
}
