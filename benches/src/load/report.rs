//! The results of a run, as a table for people and as JSON for scripts; both say the same.
//!
//! This module formats only; it measures nothing and decides nothing about success.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::args::{Mode, Settings};
use super::drive::Outcome;
use super::http::{BATCH_VERIFY_PATH, VERIFY_PATH};
use super::mix::Class;

/// The latency percentiles reported, with their names in the table and in JSON.
const PERCENTILES: [(&str, &str, f64); 4] =
    [("p50", "p50", 50.0), ("p90", "p90", 90.0), ("p99", "p99", 99.0), ("p99.9", "p99_9", 99.9)];

/// Everything a report says.
pub struct Summary<'a> {
    pub settings: &'a Settings,
    /// Valid and revoked keys available to the run.
    pub keys: (usize, usize),
    /// Requests and bytes in the pre-built pool.
    pub pool: (usize, usize),
    /// Credentials of each class in the pool.
    pub dealt: [u64; 4],
    pub outcome: &'a Outcome,
}

/// Latency figures in microseconds, `None` without a single answer.
struct Latency {
    percentiles: [u64; 4],
    max: u64,
    min: u64,
    mean: f64,
}

fn latency(h: &Histogram<u64>) -> Option<Latency> {
    (!h.is_empty()).then(|| Latency {
        percentiles: PERCENTILES.map(|(_, _, p)| h.value_at_percentile(p)),
        max: h.max(),
        min: h.min(),
        mean: h.mean(),
    })
}

impl Summary<'_> {
    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.outcome.elapsed.as_secs_f64()
    }

    fn path(&self) -> &'static str {
        if self.settings.batch.is_some() {
            BATCH_VERIFY_PATH
        } else {
            VERIFY_PATH
        }
    }

    fn mode(&self) -> String {
        let s = self.settings;
        let pacing = match s.mode {
            Mode::Closed => "maximum throughput (closed loop)".to_owned(),
            Mode::Rate { per_second } => format!("fixed rate {per_second} req/s"),
        };
        format!(
            "{pacing}, {} connections on {} thread{}, pipeline {}, batch {}",
            s.connections,
            s.threads,
            if s.threads == 1 { "" } else { "s" },
            s.pipeline,
            s.per_request()
        )
    }

    /// The report as an aligned plain-text table.
    pub fn table(&self) -> String {
        let s = self.settings;
        let c = &self.outcome.counts;
        let mut out = String::new();
        let secs = |d: std::time::Duration| d.as_secs_f64();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "mode           {}", self.mode());
        let _ = writeln!(out, "target         {}{}", s.target.url.trim_end_matches('/'), self.path());
        let _ = writeln!(out, "duration       {}s after {}s warmup", secs(self.outcome.elapsed), secs(s.warmup));
        let _ = writeln!(
            out,
            "keys           {} valid, {} revoked; pool of {} requests ({:.1} MB)",
            self.keys.0,
            self.keys.1,
            self.pool.0,
            self.pool.1 as f64 / 1e6
        );
        let dealt: Vec<String> = Class::ALL.iter().map(|k| format!("{} {}", self.dealt[k.index()], k.name())).collect();
        let _ = writeln!(out, "mix            {} (pool: {})", s.mix, dealt.join(", "));
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<14} {:>12} {:>14}", "", "total", "per second");
        let _ = writeln!(out, "{:<14} {:>12} {:>14.1}", "requests", c.requests, self.per_second(c.requests));
        let _ =
            writeln!(out, "{:<14} {:>12} {:>14.1}", "verifications", c.verifications, self.per_second(c.verifications));
        let _ = writeln!(
            out,
            "{:<14} {:>12}   io {}, status {}{}, body {}, timeout {}, connect {}",
            "errors",
            c.errors(),
            c.io_errors,
            c.status_errors,
            c.last_bad_status.map(|s| format!(" (last HTTP {s})")).unwrap_or_default(),
            c.body_errors,
            c.timeouts,
            c.connect_errors
        );
        let by_class: Vec<String> =
            Class::ALL.iter().map(|k| format!("{} {}", k.name(), c.mismatches[k.index()])).collect();
        let _ = writeln!(out, "{:<14} {:>12}   {}", "mismatches", c.mismatches(), by_class.join(", "));
        if let Mode::Rate { per_second } = s.mode {
            let _ = writeln!(
                out,
                "{:<14} {:>12}   requests due in the window but never sent{}",
                "unsent",
                c.unsent,
                if c.unsent > 0 || self.per_second(c.requests) < 0.99 * per_second {
                    " (the target rate was not sustained)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(out);
        let _ = write!(out, "{:<14}", "latency (µs)");
        for (name, _, _) in PERCENTILES {
            let _ = write!(out, " {name:>9}");
        }
        let _ = writeln!(out, " {:>9} {:>9}", "max", "mean");
        let _ = write!(out, "{:<14}", if matches!(s.mode, Mode::Rate { .. }) { "from intended" } else { "from send" });
        match latency(&self.outcome.histogram) {
            Some(l) => {
                for v in l.percentiles {
                    let _ = write!(out, " {v:>9}");
                }
                let _ = writeln!(out, " {:>9} {:>9.1}", l.max, l.mean);
            }
            None => {
                let _ = writeln!(out, " no answers");
            }
        }
        if let (Mode::Rate { .. }, Some(l)) = (s.mode, latency(&self.outcome.lag)) {
            let _ = write!(out, "{:<14}", "generator lag");
            for v in l.percentiles {
                let _ = write!(out, " {v:>9}");
            }
            let _ = writeln!(out, " {:>9} {:>9.1}", l.max, l.mean);
        }
        out
    }

    /// The report as JSON; latency in microseconds, `null` without a single answer.
    pub fn json(&self) -> Value {
        let s = self.settings;
        let c = &self.outcome.counts;
        let as_json = |l: Latency| {
            let mut v = serde_json::Map::new();
            for ((_, key, _), value) in PERCENTILES.iter().zip(l.percentiles) {
                v.insert((*key).to_owned(), value.into());
            }
            v.insert("max".into(), l.max.into());
            v.insert("min".into(), l.min.into());
            v.insert("mean".into(), l.mean.into());
            Value::Object(v)
        };
        let lag = match s.mode {
            Mode::Closed => None,
            Mode::Rate { .. } => latency(&self.outcome.lag).map(as_json),
        };
        let latency = latency(&self.outcome.histogram).map(as_json);
        let mismatches: serde_json::Map<String, Value> =
            Class::ALL.iter().map(|k| (k.name().to_owned(), c.mismatches[k.index()].into())).collect();
        let dealt: serde_json::Map<String, Value> =
            Class::ALL.iter().map(|k| (k.name().to_owned(), self.dealt[k.index()].into())).collect();
        let mix: serde_json::Map<String, Value> =
            Class::ALL.iter().map(|k| (k.name().to_owned(), s.mix.weight(*k).into())).collect();
        json!({
            "target": format!("{}{}", s.target.url.trim_end_matches('/'), self.path()),
            "mode": match s.mode { Mode::Closed => "closed", Mode::Rate { .. } => "rate" },
            "rate": match s.mode { Mode::Closed => None, Mode::Rate { per_second } => Some(per_second) },
            "connections": s.connections,
            "threads": s.threads,
            "pipeline": s.pipeline,
            "batch": s.per_request(),
            "duration_s": self.outcome.elapsed.as_secs_f64(),
            "warmup_s": s.warmup.as_secs_f64(),
            "mix": mix,
            "keys": { "valid": self.keys.0, "revoked": self.keys.1 },
            "pool": { "requests": self.pool.0, "bytes": self.pool.1, "credentials": dealt },
            "requests": c.requests,
            "requests_per_s": self.per_second(c.requests),
            "verifications": c.verifications,
            "verifications_per_s": self.per_second(c.verifications),
            "errors": {
                "total": c.errors(),
                "io": c.io_errors,
                "status": c.status_errors,
                "last_bad_status": c.last_bad_status,
                "body": c.body_errors,
                "timeout": c.timeouts,
                "connect": c.connect_errors,
            },
            "mismatches": { "total": c.mismatches(), "by_class": mismatches },
            "unsent": match s.mode { Mode::Closed => None, Mode::Rate { .. } => Some(c.unsent) },
            "latency_us": latency,
            "latency_from": match s.mode { Mode::Closed => "send", Mode::Rate { .. } => "intended send" },
            "generator_lag_us": lag,
        })
    }
}
