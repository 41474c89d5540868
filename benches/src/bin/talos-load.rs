//! `talos-load`, the bundled load generator: seeds keys through the admin API (or reads a keys
//! file), then drives `apiKeys:verify` (or `:batchVerify`) at maximum throughput or a fixed rate
//! and reports throughput and latency percentiles. `--help` documents every option.
//!
//! This file parses and dispatches only; the parts live in `benches/src/load/`, one module per
//! concept. They are modules of this binary rather than of the `talos_benches` library, so the
//! criterion fixtures do not link the load generator's dependencies and vice versa.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

#[path = "../load/args.rs"]
mod args;
#[path = "../load/drive.rs"]
mod drive;
#[path = "../load/http.rs"]
mod http;
#[path = "../load/keys.rs"]
mod keys;
#[path = "../load/mix.rs"]
mod mix;
#[path = "../load/pool.rs"]
mod pool;
#[path = "../load/report.rs"]
mod report;
#[path = "../load/verdict.rs"]
mod verdict;

use args::{Args, KeySource, Settings};
use keys::Secrets;

fn main() -> ExitCode {
    let settings = match Args::parse().check() {
        Ok(settings) => settings,
        Err(problems) => {
            for problem in problems.lines() {
                eprintln!("error: {problem}");
            }
            eprintln!("\nFor more information, try '--help'.");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the load; `Ok(false)` if it saw errors or mismatches.
fn run(s: &Settings) -> anyhow::Result<bool> {
    let (secrets, origin) = match &s.keys {
        KeySource::Seed { keys, revoke, save } => {
            eprintln!("seeding {keys} keys through {} ({revoke} to revoke)", s.admin.url);
            let secrets = keys::seed(&s.admin, *keys, *revoke, s.seed_connections, s.timeout)?;
            if let Some(path) = save {
                keys::save(path, &secrets)?;
                eprintln!("saved the keys to {}", path.display());
            }
            (secrets, "the seeded set".to_owned())
        }
        KeySource::File(path) => (keys::load(path)?, path.display().to_string()),
        KeySource::None => (Secrets::default(), "no keys".to_owned()),
    };
    secrets.check_covers(&s.mix, &origin)?;
    keys::wait_visible(&s.target, &secrets, s.timeout)?;

    let size = s.pool.unwrap_or_else(|| pool::default_size(&secrets, &s.mix, args::MAX_POOL));
    let pool = pool::Pool::build(&s.target.host, &secrets, &s.mix, s.batch, size, s.seed);
    eprintln!(
        "built {} requests ({:.1} MB); {} on {}",
        pool.len(),
        pool.byte_len() as f64 / 1e6,
        if s.warmup.is_zero() { "measuring".to_owned() } else { format!("warming up for {:?}", s.warmup) },
        s.target.url
    );
    let (requests, bytes, dealt) = (pool.len(), pool.byte_len(), pool.counts);
    let plan = drive::Plan {
        target: s.target.clone(),
        mode: s.mode,
        connections: s.connections,
        threads: s.threads,
        pipeline: s.pipeline,
        warmup: s.warmup,
        duration: s.duration,
        timeout: s.timeout,
        verdict_depth: if s.batch.is_some() { verdict::BATCH_DEPTH } else { verdict::SINGLE_DEPTH },
    };
    let outcome = drive::run(&plan, Arc::new(pool))?;

    let summary = report::Summary {
        settings: s,
        keys: (secrets.valid.len(), secrets.revoked.len()),
        pool: (requests, bytes),
        dealt,
        outcome: &outcome,
    };
    print!("{}", summary.table());
    if let Some(path) = &s.json {
        let mut text = serde_json::to_string_pretty(&summary.json()).context("rendering the JSON report")?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let counts = &outcome.counts;
    let clean = counts.errors() == 0 && counts.mismatches() == 0;
    if !clean {
        eprintln!("talos-load: the run saw {} errors and {} mismatches", counts.errors(), counts.mismatches());
    }
    Ok(clean)
}
