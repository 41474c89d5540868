//! Micro-benchmarks of derived tokens: minting (`apiKeys:derive`) and offline verification of an
//! Ed25519 JWT and of a macaroon, plus an RS256 JWT for scale and a JWT verified through the
//! data plane's [`Verifier`] (credential routing included).
//!
//! Run with `cargo bench -p talos-benches --bench tokens` (add
//! `-- --warm-up-time 1 --measurement-time 3` for a quick pass). Every benchmark reports one
//! element per iteration, so criterion's `thrpt` line reads directly as derivations (or
//! verifications) per second on one core. The JSON answer rendered by a successful verify is
//! part of the measured work; HTTP framing and the request's JSON body are not.

use std::hint::black_box;

use common::clock::{self, Nanos};
use common::config::Config;
use common::key::Keyring;
use common::model::Visibility;
use common::token::{generate_jwks, jwks_url, Derivation, DerivedTokens};
use common::verify::Verifier;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::Map;

/// The fixture secret (at least 32 characters, as the config requires).
const SECRET: &str = "bench-token-secret-0123456789abcdefghij";

/// The configuration of a deployment that signs JWTs with a freshly generated key (`rsa`: an
/// RSA-2048 key and RS256, else Ed25519 and EdDSA), as `talos jwk` prints it.
fn config(rsa: bool) -> Config {
    let jwks = generate_jwks(rsa, "bench-key").unwrap_or_else(|e| panic!("a signing key is generated: {e}"));
    let yaml = format!(
        "credentials:\n  issuer: https://talos.bench.example\n  derived_tokens:\n    jwt:\n      signing_keys:\n        \
         urls: [\"{}\"]\nsecrets:\n  hmac:\n    current: \"{SECRET}\"\ndb:\n  dsn: memory\n",
        jwks_url(&jwks)
    );
    let (config, _warnings) = Config::from_yaml_str(&yaml, &Vec::<(String, String)>::new())
        .unwrap_or_else(|e| panic!("the fixture config is invalid:\n{e}"));
    config
}

/// The derived-token minter and verifier of that configuration, built as the server builds it.
fn tokens(config: &Config) -> DerivedTokens {
    let keyring = Keyring::new(config.secrets.hmac.current.expose().as_bytes(), []);
    DerivedTokens::new(config, &keyring).unwrap_or_else(|e| panic!("the derived tokens load: {e}"))
}

/// A typical derivation: one scope, one metadata entry, an hour to live, no audience or CIDR
/// restriction (so a verify needs no client address or expected audience).
fn derivation(macaroon: bool) -> Derivation<'static> {
    let mut metadata = Map::new();
    metadata.insert("team".into(), "ci".into());
    Derivation {
        macaroon,
        parent_key_id: "0b6f3c2e-5d7a-4e1f-9a8b-2c4d6e8f0a1b",
        actor_id: "svc-builder",
        scopes: vec!["read".into()],
        metadata,
        visibility: Visibility::Secret,
        allowed_cidrs: vec![],
        audiences: vec![],
        custom_claims: Map::new(),
        ttl_secs: 3600,
    }
}

/// Derive and verify of one token kind. The derivation request is built outside the timed
/// part (the admin plane builds it from the request body); minting includes the claims' JSON,
/// the signature or HMAC chain, and the encoding.
fn derive_and_verify(c: &mut Criterion, label: &str, rsa: bool, macaroon: bool) {
    let config = config(rsa);
    let tokens = tokens(&config);
    let now: Nanos = clock::now();
    let (token, _claims) = tokens.derive(derivation(macaroon), now).expect("the token is derived");
    assert!(tokens.verify(&token, macaroon, &[], now, None).is_ok(), "the fixture token verifies");

    let mut group = c.benchmark_group(label);
    group.throughput(Throughput::Elements(1));
    group.bench_function("derive", |b| {
        b.iter_batched(
            || derivation(macaroon),
            |d| tokens.derive(d, now).map(|(token, _)| token.len()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify", |b| {
        b.iter(|| tokens.verify(black_box(&token), macaroon, &[], now, None).map(|answer| answer.len()))
    });
    group.finish();
}

fn jwt_ed25519(c: &mut Criterion) {
    derive_and_verify(c, "jwt_ed25519", false, false);
}

fn macaroon(c: &mut Criterion) {
    derive_and_verify(c, "macaroon", false, true);
}

fn jwt_rs256(c: &mut Criterion) {
    derive_and_verify(c, "jwt_rs256", true, false);
}

/// A derived JWT and a macaroon presented to the data plane's [`Verifier`]: the credential is
/// routed as a derived token (no snapshot lookup) and verified offline, as a verify request
/// carrying one does.
fn through_verifier(c: &mut Criterion) {
    let config = config(false);
    let verifier = Verifier::new(&config).unwrap_or_else(|e| panic!("the verifier builds: {e}"));
    let snapshot = common::snapshot::from_records([], &verifier);
    let now = clock::now();
    let (jwt, _) = verifier.derived.derive(derivation(false), now).expect("the JWT is derived");
    let (mac, _) = verifier.derived.derive(derivation(true), now).expect("the macaroon is derived");
    for token in [&jwt, &mac] {
        assert!(verifier.verify(token, &[], now, None, &snapshot).is_ok(), "the fixture token verifies");
    }
    let mut group = c.benchmark_group("verifier");
    group.throughput(Throughput::Elements(1));
    group.bench_function("jwt_ed25519", |b| {
        b.iter(|| verifier.verify(black_box(&jwt), &[], now, None, &snapshot).map(|a| a.body().len()))
    });
    group.bench_function("macaroon", |b| {
        b.iter(|| verifier.verify(black_box(&mac), &[], now, None, &snapshot).map(|a| a.body().len()))
    });
    group.finish();
}

criterion_group!(benches, jwt_ed25519, macaroon, jwt_rs256, through_verifier);
criterion_main!(benches);
