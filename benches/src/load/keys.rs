//! The keys a run sends: seeded through the admin API, or read from a keys file an earlier run
//! saved, then checked against the target before the load starts.
//!
//! Seeding uses a few blocking keep-alive connections in parallel, with a progress line a second.
//! This module does not write to a store directly and never sends load; it only makes sure the
//! load will send keys the server agrees are valid or revoked.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::http::{self, Client, Target};
use super::mix::{Class, Mix};
use super::verdict;

const ISSUE_PATH: &str = "/v2alpha1/admin/issuedApiKeys";
const ISSUE_BODY: &[u8] = br#"{"name":"load","ttl":"24h"}"#;
const REVOKE_BODY: &[u8] = br#"{"reason":"REVOCATION_REASON_KEY_COMPROMISE"}"#;
/// The first line of a keys file.
const KEYS_FILE_HEADER: &str = "# talos-load keys: one \"valid <secret>\" or \"revoked <secret>\" per line";
/// How long the target may take to see the seeded keys (a separate `serve check` process
/// refreshes its snapshot by polling).
const VISIBLE_WITHIN: Duration = Duration::from_secs(10);

/// The secrets of the keys a run sends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Secrets {
    pub valid: Vec<String>,
    pub revoked: Vec<String>,
}

impl Secrets {
    /// Checks that the keys cover what the mix sends.
    pub fn check_covers(&self, mix: &Mix, origin: &str) -> anyhow::Result<()> {
        if mix.weight(Class::Valid) > 0 && self.valid.is_empty() {
            bail!("the mix sends valid keys but {origin} holds none");
        }
        if mix.weight(Class::Revoked) > 0 && self.revoked.is_empty() {
            bail!("the mix sends revoked keys but {origin} holds none (set revoked=0 in --mix, or seed with --keys)");
        }
        Ok(())
    }
}

/// A key as issued: its id (to revoke it) and its secret.
struct Issued {
    key_id: String,
    secret: String,
}

/// Issues `keys` keys through `admin` and revokes `revoke` of them, over `connections`
/// connections.
pub fn seed(admin: &Target, keys: u64, revoke: u64, connections: usize, timeout: Duration) -> anyhow::Result<Secrets> {
    let issue = http::post_json(&admin.host, ISSUE_PATH, ISSUE_BODY);
    let mut issued = in_parallel("issued", keys, connections, admin, timeout, |client, _| {
        let (status, body) = client.send(&issue)?;
        if !(200..300).contains(&status) {
            bail!("issuing a key answered HTTP {status}: {}", excerpt(&body));
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("the issue answer is not JSON: {}", excerpt(&body)))?;
        let field = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let secret = field(&answer["secret"]).ok_or_else(|| anyhow!("the issue answer has no secret"))?;
        let key_id = field(&answer["issued_api_key"]["key_id"])
            .ok_or_else(|| anyhow!("the issue answer has no issued_api_key.key_id"))?;
        Ok(Issued { key_id, secret })
    })?;
    // Revoke the last ones; which ones does not matter, the pool is shuffled.
    let revoked = issued.split_off(issued.len() - revoke as usize);
    in_parallel("revoked", revoke, connections, admin, timeout, |client, i| {
        let key = &revoked[i as usize];
        let path = format!("{ISSUE_PATH}/{}:revoke", key.key_id);
        let (status, body) = client.send(&http::post_json(&admin.host, &path, REVOKE_BODY))?;
        if !(200..300).contains(&status) {
            bail!("revoking key {} answered HTTP {status}: {}", key.key_id, excerpt(&body));
        }
        Ok(())
    })?;
    Ok(Secrets {
        valid: issued.into_iter().map(|k| k.secret).collect(),
        revoked: revoked.into_iter().map(|k| k.secret).collect(),
    })
}

/// Runs `call(client, i)` for `i` in `0..total` on `connections` threads, each with its own
/// keep-alive client, printing progress every second. Stops at the first error.
fn in_parallel<T: Send>(
    what: &str,
    total: u64,
    connections: usize,
    target: &Target,
    timeout: Duration,
    call: impl Fn(&mut Client, u64) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    if total == 0 {
        return Ok(Vec::new());
    }
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    let results = thread::scope(|scope| {
        let workers: Vec<_> = (0..connections.min(total as usize))
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::new(target.clone(), timeout);
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total || failed.load(Ordering::Relaxed) {
                            return Ok(out);
                        }
                        match call(&mut client, i) {
                            Ok(v) => out.push(v),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let mut last = Instant::now();
        while !workers.iter().all(|w| w.is_finished()) {
            // A short sleep keeps the progress line on time without holding up the end.
            thread::sleep(Duration::from_millis(20));
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                progress(what, done.load(Ordering::Relaxed), total, started);
            }
        }
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(anyhow!("a seeding thread panicked"))))
            .collect::<Vec<_>>()
    });
    let mut all = Vec::with_capacity(total as usize);
    for result in results {
        all.extend(result?);
    }
    progress(what, total, total, started);
    Ok(all)
}

fn progress(what: &str, done: u64, total: u64, started: Instant) {
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
    eprintln!("seeding: {done}/{total} keys {what} ({rate:.0}/s)");
}

/// The start of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// Writes `secrets` to `path` (created with mode 0600: they are live credentials).
pub fn save(path: &Path, secrets: &Secrets) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    writeln!(out, "{KEYS_FILE_HEADER}")?;
    for (status, list) in [("valid", &secrets.valid), ("revoked", &secrets.revoked)] {
        for secret in list {
            writeln!(out, "{status} {secret}")?;
        }
    }
    out.flush().with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a keys file written by [`save`].
pub fn load(path: &Path) -> anyhow::Result<Secrets> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read keys file {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid keys file {}", path.display()))
}

fn parse(text: &str) -> anyhow::Result<Secrets> {
    let mut secrets = Secrets::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (status, secret) = line.split_once(' ').map(|(s, k)| (s, k.trim())).unwrap_or((line, ""));
        if secret.is_empty() || secret.contains(char::is_whitespace) {
            bail!("line {}: expected \"valid <secret>\" or \"revoked <secret>\"", n + 1);
        }
        match status {
            "valid" => secrets.valid.push(secret.to_owned()),
            "revoked" => secrets.revoked.push(secret.to_owned()),
            other => bail!("line {}: unknown key status {other:?} (expected valid or revoked)", n + 1),
        }
    }
    Ok(secrets)
}

/// Waits until `target` answers the last valid key as valid and the last revoked key as
/// revoked: this proves the keys belong to this server, and that a data plane in another
/// process has refreshed its snapshot since seeding.
pub fn wait_visible(target: &Target, secrets: &Secrets, timeout: Duration) -> anyhow::Result<()> {
    let mut client = Client::new(target.clone(), timeout);
    let probes = [(secrets.valid.last(), true), (secrets.revoked.last(), false)];
    for (secret, expected) in probes.into_iter().filter_map(|(s, e)| Some((s?, e))) {
        let request = http::verify_request(&target.host, secret);
        let started = Instant::now();
        let deadline = started + VISIBLE_WITHIN;
        let mut told = false;
        loop {
            let (status, body) = client.send(&request)?;
            let mut verdict = None;
            if status == 200 {
                verdict::scan(&body, verdict::SINGLE_DEPTH, |v| verdict = Some(v));
            }
            if verdict == Some(expected) {
                break;
            }
            if status != 200 || Instant::now() >= deadline {
                let shown: String = secret.chars().take(16).collect();
                bail!(
                    "the {} key {shown}… does not verify as expected at {} after {}s (expired, or \
                     issued by another server?): HTTP {status}: {}",
                    if expected { "valid" } else { "revoked" },
                    target.url,
                    VISIBLE_WITHIN.as_secs(),
                    excerpt(&body)
                );
            }
            if !told && started.elapsed() >= Duration::from_secs(1) {
                eprintln!("waiting up to {}s for {} to see the keys", VISIBLE_WITHIN.as_secs(), target.url);
                told = true;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_files_round_trip() {
        let secrets = Secrets { valid: vec!["a_v1_b_c".into(), "d".into()], revoked: vec!["e".into()] };
        let dir = std::env::temp_dir().join(format!("talos-load-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("keys.txt");
        save(&path, &secrets).expect("saves");
        assert_eq!(load(&path).expect("loads"), secrets);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(&dir).expect("cleans up");
    }

    #[test]
    fn rejects_bad_keys_files() {
        for (text, fragment) in [
            ("valid", "line 1: expected"),
            ("# c\n\nvalid a b", "line 3: expected"),
            ("expired k", "unknown key status \"expired\""),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(fragment), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn checks_the_mix_is_covered() {
        let mix = Mix::parse("valid=9,revoked=1").expect("parses");
        let only_valid = Secrets { valid: vec!["k".into()], revoked: vec![] };
        assert!(only_valid.check_covers(&mix, "f").is_err());
        assert!(only_valid.check_covers(&Mix::parse("valid=1").expect("parses"), "f").is_ok());
    }
}
