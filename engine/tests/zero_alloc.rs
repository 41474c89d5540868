//! The data plane's promise: a warm keep-alive connection answers verify requests — valid,
//! unknown, revoked, malformed — without a single heap allocation. The whole process runs under
//! dhat's counting allocator; the count must not move while a warm connection is verified on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::config::Config;
use common::model::{KeyKind, KeyRecord, KeyStatus, RevocationReason};
use common::store::redb::RedbStore;
use common::store::Store;
use common::verify::Verifier;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const SECRET: &str = "zero-alloc-test-secret-0123456789abcdef";

fn verify_request(credential: &str) -> Vec<u8> {
    let body = format!(r#"{{"credential":"{credential}"}}"#);
    format!(
        "POST /v2alpha1/admin/apiKeys:verify HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends one request and reads exactly one response into `buf`, allocation-free.
fn round_trip(stream: &mut TcpStream, request: &[u8], buf: &mut [u8]) -> u16 {
    stream.write_all(request).unwrap();
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).unwrap();
        assert!(n > 0, "connection closed");
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(&buf[..filled]).unwrap() {
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            if filled >= head + len {
                assert_eq!(filled, head + len, "one response per request");
                return resp.code.unwrap();
            }
        }
    }
}

#[test]
fn warm_connection_verifies_without_allocating() {
    let _profiler = dhat::Profiler::builder().testing().build();

    let yaml = format!(
        "credentials:\n  issuer: http://t\n  api_keys:\n    default_ttl: 1h\nsecrets:\n  hmac:\n    current: \"{SECRET}\"\ndb:\n  dsn: memory\n"
    );
    let (config, _) = Config::from_yaml_str(&yaml, &Vec::<(String, String)>::new()).unwrap();
    let verifier = Verifier::new(&config).unwrap();
    let store = Arc::new(RedbStore::in_memory().unwrap());
    let now = common::clock::now();
    let mut credentials = Vec::new();
    for (i, revoked) in [(1u128, false), (2, true)] {
        let key_id = uuid::Uuid::from_u128(0x4000_8000_0000_0000_0000 | i);
        let mut record = KeyRecord {
            key_id: key_id.hyphenated().to_string(),
            token_prefix: "ory_ak".into(),
            scopes: vec!["read".into()],
            create_time: now,
            update_time: now,
            expire_time: now + 3_600_000_000_000,
            ..KeyRecord::empty(KeyKind::Issued)
        };
        if revoked {
            record.revoke(RevocationReason::KeyCompromise, String::new(), None, now);
        }
        assert_eq!(record.status == KeyStatus::Revoked, revoked);
        store.insert(&record).unwrap();
        credentials.push(common::key::generate("ory_ak", common::clock::secs(now), key_id, &verifier.keyring));
    }
    let valid = credentials[0].clone();
    let forged = format!("{}x", &valid[..valid.len() - 1]);
    credentials.push(forged);
    credentials.push("unknown-imported-key".into());
    credentials.push(String::new());

    // A refresh interval longer than the test: the refresher stays asleep.
    let snapshot = common::snapshot::start(store.clone(), verifier.clone(), Duration::from_secs(3600)).unwrap();
    let engine = engine::Engine::start(
        engine::EngineConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            plane: engine::Plane::Check,
            max_staleness: Duration::from_secs(3600),
            max_connections_per_worker: 100,
            pin_workers: false,
            log_every: 0,
            metrics: common::metrics::Metrics::new("check"),
            io_driver: engine::IoDriver::IoUring,
            timeouts: common::config::Timeouts::default(),
        },
        verifier,
        snapshot,
        store,
        None,
    )
    .unwrap();

    let mut requests: Vec<Vec<u8>> = credentials.iter().map(|c| verify_request(c)).collect();
    // And a batch mixing them all.
    let items: Vec<String> = credentials.iter().map(|c| format!(r#"{{"credential":"{c}"}}"#)).collect();
    let batch = format!(r#"{{"requests":[{}]}}"#, items.join(","));
    requests.push(
        format!(
            "POST /v2alpha1/admin/apiKeys:batchVerify HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n{batch}",
            batch.len()
        )
        .into_bytes(),
    );
    let mut stream = TcpStream::connect(engine.local_addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    // Warm up: buffers sized, runtime slabs and per-worker caches filled.
    for _ in 0..200 {
        for request in &requests {
            assert_eq!(round_trip(&mut stream, request, &mut buf), 200);
        }
    }
    let before = dhat::HeapStats::get();
    for _ in 0..500 {
        for request in &requests {
            round_trip(&mut stream, request, &mut buf);
        }
    }
    let after = dhat::HeapStats::get();
    assert_eq!(
        after.total_blocks - before.total_blocks,
        0,
        "{} allocations over {} verify requests on a warm connection",
        after.total_blocks - before.total_blocks,
        500 * requests.len()
    );
    drop(stream);
    engine.shutdown(Duration::from_secs(1));
}
