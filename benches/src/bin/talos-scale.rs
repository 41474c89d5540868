//! Snapshot scale: fills a redb store with N issued keys, then measures what a data plane pays
//! for them — the cold load of its snapshot (time, resident memory per key), a verify from the
//! full snapshot, and the cost of a refresh after one and after many changes.
//!
//! ```text
//! cargo run --release -p talos-benches --bin talos-scale -- --keys 1000000 --changes 1000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clock;
use common::model::{KeyKind, RevocationReason};
use common::store::redb::RedbStore;
use common::store::Store;
use common::verify::Verifier;
use talos_benches::{issued_key, record, verifier};

/// Resident set size of this process, from /proc (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(default)
}

fn main() {
    let keys = arg("--keys", 1_000_000);
    let changes = arg("--changes", 1000).min(keys);
    // --keep DIR: leave the store in DIR, with a config to serve it and a talos-load keys file.
    let keep = std::env::args().skip_while(|a| a != "--keep").nth(1).map(std::path::PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("talos-scale-{}", std::process::id())));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.join("scale.redb")).expect("store"));
    let verifier = verifier();
    let now = clock::now();

    let started = Instant::now();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(10_000) {
        let batch: Vec<_> = chunk.iter().map(|i| record(*i, now)).collect();
        store.insert_batch(&batch).expect("insert");
    }
    eprintln!("filled the store with {keys} keys in {:.1}s", started.elapsed().as_secs_f64());

    let rss_before = rss_bytes();
    let started = Instant::now();
    let cell = common::snapshot::start(store.clone(), verifier.clone(), Duration::from_secs(3600)).expect("snapshot");
    let cold_load = started.elapsed();
    let rss_after = rss_bytes();
    assert_eq!(cell.load().len() as u64, keys);

    // A verify from the full snapshot.
    let key = issued_key(keys / 2, now, &verifier);
    let snapshot = cell.load();
    let started = Instant::now();
    let rounds = 100_000;
    for _ in 0..rounds {
        let answer = verifier.verify(std::hint::black_box(&key), &[], now, None, &**snapshot);
        assert!(answer.is_ok());
    }
    let verify_ns = started.elapsed().as_nanos() as f64 / f64::from(rounds);
    // And over many keys spread across the key space: what a real mix pays in cache misses.
    let spread: Vec<String> =
        (0..keys.min(100_000)).map(|n| issued_key(n * (keys / keys.min(100_000)), now, &verifier)).collect();
    let started = Instant::now();
    for key in spread.iter().cycle().take(rounds as usize) {
        let answer = verifier.verify(std::hint::black_box(key), &[], now, None, &**snapshot);
        assert!(answer.is_ok());
    }
    let verify_spread_ns = started.elapsed().as_nanos() as f64 / f64::from(rounds);
    drop(snapshot);

    // Refresh after one change, then after `changes` changes.
    let revoke = |i: u64| {
        store
            .modify(KeyKind::Issued, &talos_benches::key_id(i).hyphenated().to_string(), &mut |r| {
                r.revoke(RevocationReason::KeyCompromise, String::new(), None, clock::now());
                Ok(None)
            })
            .expect("revoke")
            .1
    };
    let revision = revoke(0);
    let started = Instant::now();
    assert!(cell.wait_for(revision, Duration::from_secs(60)));
    let refresh_one = started.elapsed();
    let mut revision = 0;
    for i in 1..=changes {
        revision = revoke(i);
    }
    let started = Instant::now();
    assert!(cell.wait_for(revision, Duration::from_secs(60)));
    let refresh_many = started.elapsed();

    println!(
        "{{\"keys\":{keys},\"cold_load_s\":{:.3},\"rss_per_key_bytes\":{:.0},\"verify_ns\":{:.0},\"verify_spread_ns\":{:.0},\"refresh_1_change_ms\":{:.3},\"refresh_{changes}_changes_ms\":{:.3}}}",
        cold_load.as_secs_f64(),
        rss_after.saturating_sub(rss_before) as f64 / keys as f64,
        verify_ns,
        verify_spread_ns,
        refresh_one.as_secs_f64() * 1000.0,
        refresh_many.as_secs_f64() * 1000.0,
    );
    drop(cell);
    match keep {
        Some(dir) => write_serving_kit(&dir, keys, changes, now, &verifier),
        None => {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Next to the kept store: `talos.yaml` (the fixture's secret and issuer, the store, ports from
/// the environment) and `keys.txt`, up to 100,000 of the still-valid keys spread over the whole
/// key space, in talos-load's keys-file format.
fn write_serving_kit(dir: &std::path::Path, keys: u64, revoked: u64, now: clock::Nanos, verifier: &Verifier) {
    let yaml = format!(
        "credentials:\n  issuer: \"{}\"\nsecrets:\n  hmac:\n    current: \"bench-secret-0123456789abcdef0123456789\"\n\
         db:\n  dsn: \"redb://{}\"\nlog:\n  level: warn\n",
        talos_benches::ISSUER,
        dir.join("scale.redb").display()
    );
    std::fs::write(dir.join("talos.yaml"), yaml).expect("write talos.yaml");
    let valid = keys - (revoked + 1).min(keys);
    let sample = valid.clamp(1, 100_000);
    let mut out = String::from("# talos-load keys: one \"valid <secret>\" or \"revoked <secret>\" per line\n");
    for n in 0..sample {
        let i = revoked + 1 + n * (valid / sample).max(1);
        if i < keys {
            out.push_str("valid ");
            out.push_str(&issued_key(i, now, verifier));
            out.push('\n');
        }
    }
    std::fs::write(dir.join("keys.txt"), out).expect("write keys.txt");
}
