//! Micro-benchmarks of the verify hot path, stage by stage: key parsing and checksum, the CPU
//! precheck, the snapshot lookup at 10k and 1M keys, the HTTP head parse, the whole in-memory
//! verify with the answer copied into a reused buffer, and one request from its bytes to the
//! response's bytes, as a data-plane worker does it.
//!
//! Run with `cargo bench -p talos-benches --bench verify` (add
//! `-- --warm-up-time 1 --measurement-time 3` for a quick pass). The network and the store are
//! deliberately out of scope: these numbers are the floor under one verify.

use std::hint::black_box;

use common::clock::{self, Nanos};
use common::key;
use common::snapshot::Snapshot;
use common::verify::Verifier;
use criterion::{criterion_group, criterion_main, Criterion};
use engine::parse::{self, BodyFraming, MAX_HEADERS};
use engine::respond::Persist;
use engine::verify::{Reply, Source};
use talos_benches::{absent_key_id, identifier, issued_key, snapshot, verifier, verify_request, PREFIX};

/// Distinct ids each lookup benchmark cycles through, so a large map is read across its whole
/// table (cache misses included) rather than at one hot slot. A power of two, for a cheap mask.
const PROBES: usize = 4096;

/// Parsing the issued key format, then the HMAC checksum under the current secret, and the
/// base58 and HMAC steps inside them on their own.
fn key_format(c: &mut Criterion) {
    let now = clock::now();
    let verifier = verifier();
    let key = issued_key(7, now, &verifier);
    let now_secs = clock::secs(now);
    let mut group = c.benchmark_group("key");
    group.bench_function("parse_issued", |b| b.iter(|| key::parse_issued(black_box(&key)).is_some()));
    group.bench_function("parse_issued+checksum_matches", |b| {
        b.iter(|| {
            let parsed = key::parse_issued(black_box(&key)).expect("the fixture key parses");
            key::checksum_matches(&parsed, &verifier.keyring, now_secs)
        })
    });
    // The two base58 steps inside the above, on their own: decoding the identifier (parse) and
    // encoding the HMAC digest to compare with the presented checksum. Base58 is quadratic in
    // the length, so these show how much of a verify is encoding rather than cryptography.
    let parsed = key::parse_issued(&key).expect("the fixture key parses");
    let identifier = parsed.signed[PREFIX.len() + "_v1_".len()..parsed.signed.len() - 1].to_vec();
    let digest = verifier.keyring.current().sign(&[parsed.signed]);
    group.bench_function("base58_decode_identifier", |b| {
        let mut decoded = [0u8; 128];
        b.iter(|| bs58::decode(black_box(&identifier)).onto(&mut decoded[..]).map_err(|_| ()))
    });
    group.bench_function("base58_encode_digest", |b| {
        let mut encoded = [0u8; 44];
        b.iter(|| bs58::encode(black_box(digest)).onto(&mut encoded[..]).map_err(|_| ()))
    });
    group.bench_function("hmac_sha256_signed_part", |b| {
        b.iter(|| verifier.keyring.current().sign(&[black_box(parsed.signed)]))
    });
    group.finish();
}

/// The whole CPU stage: a valid key (parse, checksum, timestamp, prefix), a key of the right
/// shape with a forged checksum, and garbage, which routes as an imported key and is hashed.
fn precheck(c: &mut Criterion) {
    let now = clock::now();
    let verifier = verifier();
    let valid = issued_key(7, now, &verifier);
    // Same shape and length as a real key; only the checksum's last character differs.
    let mut forged = valid.clone();
    let last = forged.pop().expect("a key is not empty");
    forged.push(if last == 'z' { 'y' } else { 'z' });
    let garbage = "Bearer this-is-not-an-api-key-at-all-0123456789";
    assert!(verifier.precheck(&valid, now).is_ok());
    assert!(verifier.precheck(&forged, now).is_err());

    let mut group = c.benchmark_group("precheck");
    group.bench_function("valid", |b| b.iter(|| verifier.precheck(black_box(&valid), now)));
    group.bench_function("forged_checksum", |b| b.iter(|| verifier.precheck(black_box(&forged), now)));
    group.bench_function("garbage", |b| b.iter(|| verifier.precheck(black_box(garbage), now)));
    group.finish();
}

/// Lookups and the whole in-memory verify against a snapshot of `n` keys, built once for the
/// group (the 1M snapshot takes seconds to build).
fn snapshot_group(c: &mut Criterion, label: &str, n: u64) {
    let now = clock::now();
    let verifier = verifier();
    let snapshot = snapshot(n, now);
    assert_eq!(snapshot.len(), usize::try_from(n).expect("fits"));
    let stride = (n / PROBES as u64).max(1);
    let hits: Vec<Vec<u8>> = (0..PROBES as u64).map(|j| identifier((j * stride) % n, now)).collect();
    let misses: Vec<Vec<u8>> =
        (0..PROBES as u64).map(|j| key::identifier(clock::secs(now), absent_key_id(j)).into_bytes()).collect();
    let key = issued_key(n / 2, now, &verifier);
    let expected = verifier.verify(&key, &[], now, None, &snapshot).expect("the key verifies");
    let expected = expected.body().to_vec();

    let mut group = c.benchmark_group(format!("snapshot_{label}"));
    group.bench_function("get_hit", |b| cycle(b, &snapshot, &hits, true));
    group.bench_function("get_miss", |b| cycle(b, &snapshot, &misses, false));
    group.bench_function("verify_valid+copy", |b| {
        let mut out: Vec<u8> = Vec::with_capacity(4096);
        b.iter(|| verify_into(&verifier, &snapshot, black_box(&key), now, &mut out));
        assert_eq!(out, expected, "every iteration answered valid");
    });
    group.finish();
}

/// Looks up the probes in turn; the counter and mask cost about a nanosecond of the result.
fn cycle(b: &mut criterion::Bencher<'_>, snapshot: &Snapshot, probes: &[Vec<u8>], expect_found: bool) {
    let mut i = 0usize;
    b.iter(|| {
        let id = &probes[i & (PROBES - 1)];
        i = i.wrapping_add(1);
        let found = snapshot.issued(black_box(id)).is_some();
        debug_assert_eq!(found, expect_found);
        found
    });
}

/// What the data plane does per verify once the body is parsed: verify from the snapshot and
/// append the pre-rendered answer (or the rejection body) to the reused write buffer. The
/// fixture keys have no IP allowlist, so no client address is needed.
fn verify_into(verifier: &Verifier, snapshot: &Snapshot, credential: &str, now: Nanos, out: &mut Vec<u8>) {
    out.clear();
    match verifier.verify(credential, &[], now, None, snapshot) {
        Ok(answer) => out.extend_from_slice(answer.body()),
        Err(rejection) => out.extend_from_slice(rejection.body()),
    }
}

fn snapshot_10k(c: &mut Criterion) {
    snapshot_group(c, "10k", 10_000);
}

fn snapshot_1m(c: &mut Criterion) {
    snapshot_group(c, "1M", 1_000_000);
}

/// Framing a typical verify request, with a fresh header array per request as the connection
/// loop has it.
fn http_head(c: &mut Criterion) {
    let now = clock::now();
    let request = verify_request(&issued_key(7, now, &verifier()));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = parse::parse_head(&request, &mut headers).expect("frames").expect("is complete");
    assert!(matches!(head.body, BodyFraming::Length(n) if head.head_len + n == request.len()));

    let mut group = c.benchmark_group("http");
    group.bench_function("parse_head_verify", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            parse::parse_head(black_box(&request), &mut headers).map(|head| head.map(|h| h.head_len))
        })
    });
    group.finish();
}

/// The whole data-plane path of one request, bytes in to response bytes out, as a worker runs
/// it between a read and a write: frame the head, read the JSON body in place, verify from a
/// 10k-key snapshot, compose status line, headers and the pre-rendered answer into the reused
/// write buffer. Only the socket calls are left out.
fn request_to_response(c: &mut Criterion) {
    let now = clock::now();
    let verifier = verifier();
    let snapshot = snapshot(10_000, now);
    let store = common::store::redb::RedbStore::in_memory().expect("memory store");
    let metrics = common::metrics::Metrics::new("check").worker();
    let valid = verify_request(&issued_key(5_000, now, &verifier));
    let unknown = verify_request(&key::generate(PREFIX, clock::secs(now), absent_key_id(1), &verifier.keyring));
    let source = Source {
        verifier: &verifier,
        snapshot: &snapshot,
        store: &store,
        bypass: false,
        client_ip: None,
        metrics: &metrics.verify,
    };
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let answer = |request: &[u8], out: &mut Vec<u8>| {
        out.clear();
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse::parse_head(request, &mut headers).expect("frames").expect("is complete");
        let BodyFraming::Length(n) = head.body else { unreachable!("the fixture has a Content-Length") };
        let body = &request[head.head_len..head.head_len + n];
        let reply = Reply {
            persist: Persist::of(head.keep_alive, head.minor_version),
            head_only: false,
            request_id: head.request_id,
        };
        engine::verify::respond(engine::verify::verify, &source, body, &reply, out);
    };
    answer(&valid, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n") && out.windows(15).any(|w| w == b"\"is_valid\":true"));
    answer(&unknown, &mut out);
    assert!(out.windows(16).any(|w| w == b"\"is_valid\":false"));

    let mut group = c.benchmark_group("request_to_response_10k");
    group.bench_function("valid", |b| b.iter(|| answer(black_box(&valid), &mut out)));
    group.bench_function("unknown_key", |b| b.iter(|| answer(black_box(&unknown), &mut out)));
    group.finish();
}

criterion_group!(benches, key_format, precheck, http_head, request_to_response, snapshot_10k, snapshot_1m);
criterion_main!(benches);
