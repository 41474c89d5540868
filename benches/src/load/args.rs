//! The command line: every option with its help, and the checks that turn it into [`Settings`]
//! with one clear message per mistake.
//!
//! Checks that need the keys (does the mix ask for revoked keys the keys file lacks?) are made
//! once the keys are loaded, in `keys`; this module only checks what the line itself says.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::verify::MAX_BATCH_VERIFY;

use super::http::Target;
use super::mix::{Class, Mix};

/// Most keys one run seeds through the admin API.
const MAX_KEYS: u64 = 10_000_000;
/// Most requests in flight per connection.
const MAX_PIPELINE: usize = 1024;
/// Most connections (file descriptors) per run.
const MAX_CONNECTIONS: usize = 50_000;
/// Most credentials in the pre-built request pool (about 250 bytes each in memory).
pub const MAX_POOL: u64 = 1 << 22;

const ABOUT: &str = "Load generator for talos: seeds API keys, then drives apiKeys:verify";

const LONG_ABOUT: &str = "\
Load generator for talos: seeds API keys through the admin API (or reads them from a file saved
by an earlier run), then drives POST /v2alpha1/admin/apiKeys:verify (or :batchVerify with
--batch) over keep-alive connections, and reports throughput and latency percentiles.

Two modes:
  maximum throughput (default)  a closed loop: each connection keeps --pipeline requests in
                                flight and sends the next as soon as an answer arrives; latency is
                                measured from the moment a request is written.
  fixed rate (--rate R)         R requests per second in total, spread evenly over the
                                connections, each on its own schedule. Latency is measured from
                                the intended send time, so when a connection falls behind, the
                                wait is part of the latency (no coordinated omission).
                                The report adds the generator's own lag (how late it sent
                                when the connection was free): if that is large, the latency
                                includes the generator's delays. The generator busy-polls the
                                last millisecond before each send, so give it its own cores
                                (e.g. taskset -c 1 talos-load ..., server on another core).

Every answer is checked: status 200 and `is_valid` as expected for the credential's class
(valid: true; unknown, revoked, malformed: false). A wrong `is_valid` counts as a mismatch,
anything else unexpected as an error. All request bytes are built before the run; the generator
allocates nothing per request.

Results go to stdout as a table (and to --json PATH), with a progress line on stderr every second.
Exit status: 0 on a clean run, 1 when the run saw any error or mismatch (the report is still
printed) or could not start, 2 on a usage error.

Examples:
  talos-load --keys 1000 -c 32 -t 1 -d 10s
  talos-load --keys 100000 --save-keys keys.txt -d 1s      (seed once)
  talos-load --keys-file keys.txt --rate 20000 -c 64 -d 30s (fixed rate, same keys)
  talos-load --keys-file keys.txt --batch 20 --pipeline 4";

#[derive(Parser, Debug)]
#[command(name = "talos-load", version, about = ABOUT, long_about = LONG_ABOUT, max_term_width = 100)]
pub struct Args {
    /// Base URL of the plane to load (the verify endpoint is appended). http:// only.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4420")]
    pub url: String,

    /// Base URL of the admin plane, used to seed keys [default: --url].
    #[arg(long, value_name = "URL")]
    pub admin_url: Option<String>,

    /// Issue N keys through the admin API before the run (POST /v2alpha1/admin/issuedApiKeys,
    /// TTL 24h), and revoke --revoke of them.
    #[arg(long, value_name = "N", conflicts_with = "keys_file")]
    pub keys: Option<u64>,

    /// How many of the --keys to revoke [default: the mix's share of revoked among valid and
    /// revoked, at least 1 when the mix sends revoked keys].
    #[arg(long, value_name = "N", requires = "keys")]
    pub revoke: Option<u64>,

    /// Reuse keys saved by an earlier --save-keys instead of seeding (keys expire 24h after
    /// they were issued, and verify only against the server that issued them).
    #[arg(long, value_name = "PATH")]
    pub keys_file: Option<PathBuf>,

    /// Save the seeded keys (secrets, one per line with their status) to PATH, mode 0600.
    #[arg(long, value_name = "PATH", requires = "keys")]
    pub save_keys: Option<PathBuf>,

    /// Parallel keep-alive connections used for seeding.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub seed_connections: usize,

    /// Keep-alive connections to the target, spread over the threads.
    #[arg(short = 'c', long, value_name = "C", default_value_t = 32)]
    pub connections: usize,

    /// Threads driving the connections (each polls its share of them).
    #[arg(short = 't', long, value_name = "T", default_value_t = 1)]
    pub threads: usize,

    /// How long to measure, after the warmup ("10s", "1m", "500ms").
    #[arg(short = 'd', long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// How long to run before measuring; its answers are checked but not reported.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Weights of the credential classes: valid (issued, not revoked), unknown (well-formed,
    /// never issued), revoked, malformed (e.g. "x"). Weights need not sum to 100; a class left
    /// out is not sent.
    #[arg(
        long,
        value_name = "CLASS=WEIGHT,...",
        default_value = "valid=90,unknown=5,revoked=3,malformed=2",
        value_parser = Mix::parse
    )]
    pub mix: Mix,

    /// Send K credentials per request to :batchVerify instead of one per request to :verify
    /// (1 to 100).
    #[arg(long, value_name = "K")]
    pub batch: Option<usize>,

    /// Requests in flight per connection (HTTP/1.1 pipelining). In --rate mode this is the most
    /// a connection may have in flight when it is behind its schedule.
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub pipeline: usize,

    /// Fixed total rate in requests per second (HTTP requests: with --batch each carries K
    /// credentials) instead of maximum throughput.
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// A request unanswered this long is an error and its connection is reopened; also how long
    /// a --rate run waits for its last answers.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Credentials in the pre-built request pool, which every connection cycles through from
    /// its own offset [default: enough to use every key once, at least 16384, at most 4194304].
    #[arg(long, value_name = "N")]
    pub pool: Option<u64>,

    /// Seed of the shuffle of the pool and of the unknown keys, for repeatable runs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Also write the results as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    common::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// How the load is paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// A closed loop: each connection keeps `pipeline` requests in flight.
    Closed,
    /// `per_second` requests in total, each connection on its own schedule.
    Rate { per_second: f64 },
}

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Issue `keys` through the admin API and revoke `revoke` of them.
    Seed {
        keys: u64,
        revoke: u64,
        save: Option<PathBuf>,
    },
    File(PathBuf),
    /// The mix sends neither valid nor revoked keys.
    None,
}

/// The checked command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: Target,
    pub admin: Target,
    pub keys: KeySource,
    pub seed_connections: usize,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub mix: Mix,
    pub batch: Option<usize>,
    pub pipeline: usize,
    pub mode: Mode,
    pub timeout: Duration,
    pub pool: Option<u64>,
    pub seed: u64,
    pub json: Option<PathBuf>,
}

impl Settings {
    /// Credentials per request.
    pub fn per_request(&self) -> usize {
        self.batch.unwrap_or(1)
    }
}

impl Args {
    /// Checks the options together; returns every problem found, one per line.
    pub fn check(self) -> Result<Settings, String> {
        let mut problems = Vec::new();
        let target = Target::parse(&self.url).map_err(|e| problems.push(format!("--url: {e}"))).ok();
        let admin = Target::parse(self.admin_url.as_deref().unwrap_or(&self.url))
            .map_err(|e| problems.push(format!("--admin-url: {e}")))
            .ok();

        let needs_valid = self.mix.weight(Class::Valid) > 0;
        let needs_revoked = self.mix.weight(Class::Revoked) > 0;
        let keys = match (self.keys, self.keys_file) {
            (Some(keys), _) => {
                if !(1..=MAX_KEYS).contains(&keys) {
                    problems.push(format!("--keys must be from 1 to {MAX_KEYS}, got {keys}"));
                }
                let revoke = self.revoke.unwrap_or_else(|| default_revoke(keys, &self.mix));
                if revoke > keys {
                    problems.push(format!("--revoke {revoke} is more than --keys {keys}"));
                } else if needs_valid && revoke == keys {
                    problems.push(format!("--revoke {revoke} leaves no valid key, but the mix sends valid keys"));
                }
                if needs_revoked && revoke == 0 {
                    problems.push("--revoke 0, but the mix sends revoked keys".to_owned());
                }
                KeySource::Seed { keys, revoke, save: self.save_keys }
            }
            (None, Some(path)) => KeySource::File(path),
            (None, None) => {
                if needs_valid || needs_revoked {
                    problems.push(
                        "the mix sends valid or revoked keys: seed them with --keys N or reuse them with \
                         --keys-file PATH (or send only unknown and malformed credentials with --mix)"
                            .to_owned(),
                    );
                }
                KeySource::None
            }
        };

        if !(1..=64).contains(&self.seed_connections) {
            problems.push(format!("--seed-connections must be from 1 to 64, got {}", self.seed_connections));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            problems.push(format!("-c/--connections must be from 1 to {MAX_CONNECTIONS}, got {}", self.connections));
        }
        if self.threads == 0 {
            problems.push("-t/--threads must be at least 1".to_owned());
        } else if self.connections > 0 && self.threads > self.connections {
            problems.push(format!(
                "-t {} threads need at least as many connections, got -c {}",
                self.threads, self.connections
            ));
        }
        if self.duration.is_zero() {
            problems.push("-d/--duration must be more than 0".to_owned());
        }
        if self.timeout.is_zero() {
            problems.push("--timeout must be more than 0".to_owned());
        }
        if let Some(k) = self.batch {
            if !(1..=MAX_BATCH_VERIFY).contains(&k) {
                problems.push(format!("--batch must be from 1 to {MAX_BATCH_VERIFY} (the server's limit), got {k}"));
            }
        }
        if !(1..=MAX_PIPELINE).contains(&self.pipeline) {
            problems.push(format!("--pipeline must be from 1 to {MAX_PIPELINE}, got {}", self.pipeline));
        }
        let mode = match self.rate {
            None => Mode::Closed,
            Some(r) if r.is_finite() && r > 0.0 && r <= 1e8 => Mode::Rate { per_second: r },
            Some(r) => {
                problems.push(format!("--rate must be a number of requests per second above 0, got {r}"));
                Mode::Closed
            }
        };
        if let Some(n) = self.pool {
            let per_request = self.batch.unwrap_or(1) as u64;
            if !(per_request..=MAX_POOL).contains(&n) {
                problems.push(format!("--pool must be from {per_request} (one request) to {MAX_POOL}, got {n}"));
            }
        }

        match (target, admin) {
            (Some(target), Some(admin)) if problems.is_empty() => Ok(Settings {
                target,
                admin,
                keys,
                seed_connections: self.seed_connections,
                connections: self.connections,
                threads: self.threads,
                duration: self.duration,
                warmup: self.warmup,
                mix: self.mix,
                batch: self.batch,
                pipeline: self.pipeline,
                mode,
                timeout: self.timeout,
                pool: self.pool,
                seed: self.seed,
                json: self.json,
            }),
            _ => Err(problems.join("\n")),
        }
    }
}

/// The revoked share of the seeded keys: the mix's share of revoked among valid and revoked, so
/// that every key is sent about equally often; at least one if the mix sends revoked keys.
fn default_revoke(keys: u64, mix: &Mix) -> u64 {
    let revoked = u64::from(mix.weight(Class::Revoked));
    let valid = u64::from(mix.weight(Class::Valid));
    if revoked == 0 {
        return 0;
    }
    let share = (keys * revoked).div_ceil(valid + revoked);
    // Leave one valid key when the mix needs one (with a single key this makes the check fail
    // with a clear message instead).
    share.clamp(1, if valid > 0 { keys.saturating_sub(1).max(1) } else { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Settings, String> {
        let args = Args::try_parse_from(std::iter::once("talos-load").chain(line.split_whitespace()))
            .map_err(|e| e.to_string())?;
        args.check()
    }

    fn check_err(line: &str, fragment: &str) {
        let e = parse(line).expect_err(line);
        assert!(e.contains(fragment), "{line:?}: {e:?} does not mention {fragment:?}");
    }

    #[test]
    fn accepts_good_lines() {
        let s = parse("--keys 1000 -c 32 -t 1 -d 5s").expect("valid");
        assert_eq!((s.connections, s.threads, s.duration), (32, 1, Duration::from_secs(5)));
        assert!(matches!(s.keys, KeySource::Seed { keys: 1000, revoke: 33, save: None }), "{:?}", s.keys);
        assert_eq!(s.mode, Mode::Closed);
        let s = parse("--keys-file k.txt --rate 10000 --batch 10 --pipeline 2").expect("valid");
        assert_eq!((s.mode, s.per_request(), s.pipeline), (Mode::Rate { per_second: 10000.0 }, 10, 2));
        let s = parse("--mix unknown=1,malformed=1").expect("no keys needed");
        assert!(matches!(s.keys, KeySource::None));
        assert_eq!(s.admin.addr, s.target.addr);
    }

    #[test]
    fn rejects_bad_lines() {
        check_err("--keys 10 -c 2 -t 4", "-t 4 threads need at least as many connections");
        check_err("--keys 10 -c 0", "-c/--connections must be from 1");
        check_err("--keys 10 --batch 101", "--batch must be from 1 to 100");
        check_err("--keys 10 --pipeline 0", "--pipeline must be from 1");
        check_err("--keys 10 --rate 0", "--rate must be");
        check_err("--keys 10 --rate -5", "--rate must be");
        check_err("--keys 10 -d 0s", "-d/--duration must be more than 0");
        check_err("--keys 10 -d 10", "missing unit");
        check_err("--keys 10 --revoke 11", "--revoke 11 is more than --keys 10");
        check_err("--keys 10 --revoke 10", "leaves no valid key");
        check_err("--keys 10 --revoke 0", "the mix sends revoked keys");
        check_err("--keys 0", "--keys must be from 1");
        check_err("-d 1s", "seed them with --keys N");
        check_err("--keys 10 --keys-file k.txt", "cannot be used with");
        check_err("--save-keys k.txt", "--keys");
        check_err("--keys 10 --url https://127.0.0.1:1", "https is not supported");
        check_err("--keys 10 --mix valid=1,bogus=2", "unknown class");
        check_err("--keys 10 --batch 10 --pool 5", "--pool must be from 10");
        // Every problem is reported at once.
        let e = parse("--keys 10 -c 0 --pipeline 0").expect_err("two problems");
        assert_eq!(e.lines().count(), 2, "{e}");
    }

    #[test]
    fn revokes_the_mix_share_by_default() {
        let mix = |s: &str| Mix::parse(s).expect("parses");
        assert_eq!(default_revoke(1000, &mix("valid=90,unknown=5,revoked=3,malformed=2")), 33);
        assert_eq!(default_revoke(10, &mix("valid=99,revoked=1")), 1);
        assert_eq!(default_revoke(10, &mix("valid=1")), 0);
        assert_eq!(default_revoke(10, &mix("revoked=1")), 10);
        assert_eq!(default_revoke(2, &mix("valid=1,revoked=99")), 1);
    }
}
