//! Crash safety: `talos serve` is killed with SIGKILL in the middle of a burst of issues,
//! rotations and revocations from several client threads, then restarted on the same store.
//! Every write that was answered 2xx must be there after the restart, and no revoked key may
//! verify — through the snapshot or the store. A write whose answer was lost with the process
//! may have happened or not; the restarted server decides which, and must be consistent about
//! it. Several kills per store, on redb and on PostgreSQL.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// Client threads per burst.
const CLIENTS: usize = 6;
/// Kill-and-restart cycles per store.
const CYCLES: usize = 5;

#[derive(Clone, Debug)]
struct Key {
    id: String,
    secret: String,
}

/// What the clients know of every key they hold a secret for.
#[derive(Default)]
struct Model {
    /// Acknowledged, and nothing acknowledged or attempted since revoked it.
    live: Vec<Key>,
    /// Revoked by an acknowledged revocation, or superseded by an acknowledged rotation (`true`).
    revoked: Vec<(Key, bool)>,
    /// Acknowledged once, but a revocation or rotation of it was in flight at the kill.
    uncertain: Vec<Key>,
}

/// One burst's outcome.
#[derive(Default)]
struct Burst {
    model: Model,
    acknowledged: usize,
    /// Writes sent whose answer never came (the kill).
    lost: usize,
    /// Anything else: a non-2xx answer, or a failure before the kill.
    anomalies: Vec<String>,
}

/// One request on a fresh connection; `None` when the connection fails or the answer is cut.
fn try_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: talos.test\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).ok()?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = resp.parse(&out).ok()? else { return None };
    // A 204 has no Content-Length; every other answer of talos has one.
    let len: usize = match resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")) {
        Some(h) => std::str::from_utf8(h.value).ok()?.parse().ok()?,
        None => 0,
    };
    let body = out.get(head..head + len)?;
    Some((resp.code?, if body.is_empty() { Value::Null } else { serde_json::from_slice(body).ok()? }))
}

/// A small xorshift generator: the burst's choices need variety, not quality.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng(uuid::Uuid::new_v4().as_u64_pair().0 | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Shared by the clients and the killer.
#[derive(Default)]
struct Counters {
    acked: AtomicUsize,
    in_flight: AtomicUsize,
    killed: AtomicBool,
}

/// One client: issues, rotates and revokes its own keys until a request fails; `killed` says
/// whether a failure is the kill.
fn client(addr: SocketAddr, mut live: Vec<Key>, counters: Arc<Counters>) -> Burst {
    let mut rng = Rng::new();
    let mut burst = Burst::default();
    loop {
        let choice = if live.len() < 3 { 0 } else { rng.below(10) };
        let target = (choice >= 4).then(|| live.swap_remove(rng.below(live.len())));
        let (path, body) = match (&target, choice) {
            (None, _) => ("/v2alpha1/admin/issuedApiKeys".to_owned(), json!({"actor_id": "crash", "ttl": "1h"})),
            (Some(key), 4..=6) => (format!("/v2alpha1/admin/issuedApiKeys/{}:rotate", key.id), json!({})),
            (Some(key), _) => (
                format!("/v2alpha1/admin/issuedApiKeys/{}:revoke", key.id),
                json!({"reason": "REVOCATION_REASON_KEY_COMPROMISE"}),
            ),
        };
        counters.in_flight.fetch_add(1, Ordering::SeqCst);
        let answer = try_request(addr, "POST", &path, &body.to_string());
        counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        let Some((status, json)) = answer else {
            if !counters.killed.load(Ordering::SeqCst) {
                burst.anomalies.push(format!("POST {path}: no answer before the kill"));
            }
            burst.lost += 1;
            burst.model.uncertain.extend(target);
            break;
        };
        let issued = || Key {
            id: json["issued_api_key"]["key_id"].as_str().unwrap_or_default().to_owned(),
            secret: json["secret"].as_str().unwrap_or_default().to_owned(),
        };
        match (target, status) {
            (None, 201) => live.push(issued()),
            (Some(old), 201) if path.ends_with(":rotate") => {
                live.push(issued());
                burst.model.revoked.push((old, true));
            }
            (Some(old), 204) => burst.model.revoked.push((old, false)),
            (target, status) => {
                burst.anomalies.push(format!("POST {path}: {status} {json}"));
                live.extend(target);
                continue;
            }
        }
        burst.acknowledged += 1;
        counters.acked.fetch_add(1, Ordering::SeqCst);
    }
    burst.model.live = live;
    burst
}

/// The key's status in the store and its verdict on the data plane, from the snapshot and from
/// the store (`Cache-Control: no-cache`): `(status, revocation_reason, [verdict; 2])`.
fn observe(server: &Server, key: &Key) -> (String, String, [String; 2]) {
    let got = server.get(&format!("/v2alpha1/admin/issuedApiKeys/{}", key.id));
    assert_eq!(got.status, 200, "acknowledged key {} is gone: {}", key.id, got.text);
    let record = got.json();
    let verdict = |headers: &[(&str, &str)]| {
        let resp = request(
            server.addr,
            "POST",
            "/v2alpha1/admin/apiKeys:verify",
            headers,
            &json!({"credential": key.secret}).to_string(),
        );
        assert_eq!(resp.status, 200, "{}", resp.text);
        resp.json()["error_code"].as_str().unwrap_or("VALID").to_owned()
    };
    (
        record["status"].as_str().unwrap_or_default().to_owned(),
        record["revocation_reason"].as_str().unwrap_or_default().to_owned(),
        [verdict(&[]), verdict(&[("cache-control", "no-cache")])],
    )
}

/// Checks every key of `model` on the restarted `server`, resolves the uncertain ones from what
/// it says, and returns the model to carry into the next cycle and how many of the lost
/// revocations and rotations took effect.
fn audit(server: &Server, model: Model) -> (Model, usize) {
    let revoked = ["VERIFICATION_ERROR_REVOKED".to_owned(), "VERIFICATION_ERROR_REVOKED".to_owned()];
    let valid = ["VALID".to_owned(), "VALID".to_owned()];
    let mut next = Model::default();
    let mut took_effect = 0;
    for key in model.live {
        let (status, _, verdicts) = observe(server, &key);
        assert_eq!((status.as_str(), &verdicts), ("KEY_STATUS_ACTIVE", &valid), "acknowledged key {}", key.id);
        next.live.push(key);
    }
    for (key, superseded) in model.revoked {
        let (status, reason, verdicts) = observe(server, &key);
        assert_eq!((status.as_str(), &verdicts), ("KEY_STATUS_REVOKED", &revoked), "revoked key {}", key.id);
        let expected = if superseded { "REVOCATION_REASON_SUPERSEDED" } else { "REVOCATION_REASON_KEY_COMPROMISE" };
        assert_eq!(reason, expected, "revoked key {}", key.id);
        next.revoked.push((key, superseded));
    }
    for key in model.uncertain {
        // Either outcome is fine; the store and both verdicts must agree on it.
        match observe(server, &key) {
            (status, _, verdicts) if status == "KEY_STATUS_ACTIVE" && verdicts == valid => next.live.push(key),
            (status, reason, verdicts) if status == "KEY_STATUS_REVOKED" && verdicts == revoked => {
                next.revoked.push((key, reason == "REVOCATION_REASON_SUPERSEDED"));
                took_effect += 1;
            }
            other => panic!("key {} after a lost write reads as {other:?}", key.id),
        }
    }
    (next, took_effect)
}

/// Bursts, kills and restarts `talos serve` on the store of `yaml`, [`CYCLES`] times.
fn kill_during_bursts(name: &str, yaml: &str) {
    let started = Instant::now();
    let dir = TempDir::new();
    let config_path = dir.path("talos.yaml");
    let mut server = Server::start_with(&config_path, yaml, &[]);
    let mut model = Model::default();
    let mut rng = Rng::new();
    for cycle in 0..CYCLES {
        let counters = Arc::new(Counters::default());
        // Each client takes its share of the live keys to rotate and revoke.
        let mut shares: Vec<Vec<Key>> = vec![Vec::new(); CLIENTS];
        for (i, key) in std::mem::take(&mut model.live).into_iter().enumerate() {
            shares[i % CLIENTS].push(key);
        }
        let clients: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let (addr, counters) = (server.addr, counters.clone());
                std::thread::spawn(move || client(addr, share, counters))
            })
            .collect();
        // Kill after a random-ish number of acknowledged writes, with half the clients or more
        // waiting for an answer.
        let kill_at = 20 + rng.below(60);
        let in_flight = eventually(Duration::from_secs(20), || {
            let in_flight = counters.in_flight.load(Ordering::SeqCst);
            (counters.acked.load(Ordering::SeqCst) >= kill_at && in_flight >= CLIENTS / 2).then_some(in_flight)
        });
        counters.killed.store(true, Ordering::SeqCst);
        drop(server); // SIGKILL, then reaped
        let mut lost = 0;
        let mut acknowledged = 0;
        for client in clients {
            let burst = client.join().expect("a client thread");
            assert!(burst.anomalies.is_empty(), "{name}: {:?}", burst.anomalies);
            acknowledged += burst.acknowledged;
            lost += burst.lost;
            model.live.extend(burst.model.live);
            model.revoked.extend(burst.model.revoked);
            model.uncertain.extend(burst.model.uncertain);
        }

        // The store opens cleanly on restart, and holds every acknowledged write.
        let restarted = Instant::now();
        server = Server::start_with(&config_path, yaml, &[]);
        let recovery = restarted.elapsed();
        assert_eq!(server.get("/health/ready").status, 200, "{name}: {}", server.log());
        let uncertain = model.uncertain.len();
        let took_effect;
        (model, took_effect) = audit(&server, model);
        eprintln!(
            "{name} cycle {cycle}: killed after {kill_at}+ acks with {in_flight} requests in flight \
             ({acknowledged} acknowledged, {lost} unanswered, {took_effect} of {uncertain} lost revocations and rotations \
             took effect); restart {recovery:?}; {} live, {} revoked keys audited",
            model.live.len(),
            model.revoked.len()
        );
    }
    eprintln!("{name}: {CYCLES} kills in {:?}", started.elapsed());
}

#[test]
fn sigkill_mid_burst_loses_no_acknowledged_write_on_redb() {
    let dir = TempDir::new();
    let dsn = dir.path("talos.redb");
    kill_during_bursts("redb", &config(dsn.to_str().unwrap(), &secrets(SECRET), ""));
}

#[test]
fn sigkill_mid_burst_loses_no_acknowledged_write_on_postgres() {
    let schema = crate::postgres::Schema::new();
    kill_during_bursts("postgres", &config(&schema.dsn(), &secrets(SECRET), ""));
}
