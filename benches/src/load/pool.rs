//! The pre-built requests: every byte the load will send, composed before the run in one buffer,
//! with the class of each credential so that each answer can be checked.
//!
//! The credentials are dealt by the mix, shuffled with a seeded generator, and cut into requests
//! of `batch` credentials. Valid and revoked keys are used round-robin in a shuffled order, so a
//! pool at least as large as the key set touches every key. Connections cycle through the pool
//! from spread-out offsets. Building allocates; reading ([`Pool::request`], [`Pool::classes`])
//! never does.

use std::ops::Range;

use common::key::{self, Keyring};

use super::http;
use super::keys::Secrets;
use super::mix::{Class, Mix};

/// Credentials in a pool at least, so the mix is dealt finely enough whatever the key count.
pub const MIN_POOL: u64 = 16_384;

/// Not keys at all. Each must answer `200` with `is_valid: false` (an empty or unparseable
/// credential is `VERIFICATION_ERROR_INVALID_FORMAT` or `…_NOT_FOUND`).
const MALFORMED: [&str; 6] = ["x", "", "not-a-key", "ory_ak_v1_", "ory_ak_v2_abc_def", "ory_ak_v1_0OIl_xyz"];

/// All requests of a run.
pub struct Pool {
    bytes: Vec<u8>,
    requests: Vec<Entry>,
    classes: Vec<Class>,
    /// Credentials of each class in the pool.
    pub counts: [u64; 4],
}

struct Entry {
    bytes: Range<usize>,
    classes: Range<usize>,
}

/// The default pool size: enough credentials that each valid and each revoked key is sent at
/// least once per pass, within [`MIN_POOL`] and `max`.
pub fn default_size(secrets: &Secrets, mix: &Mix, max: u64) -> u64 {
    let total = mix.total();
    let need = |keys: usize, class: Class| match mix.weight(class) {
        0 => 0,
        w => (keys as u64 * total).div_ceil(u64::from(w)),
    };
    need(secrets.valid.len(), Class::Valid).max(need(secrets.revoked.len(), Class::Revoked)).clamp(MIN_POOL, max)
}

impl Pool {
    /// Builds about `size` credentials (rounded up to whole requests) of verify requests for
    /// `host`, `batch` credentials per request (`None`: single verify).
    pub fn build(host: &str, secrets: &Secrets, mix: &Mix, batch: Option<usize>, size: u64, seed: u64) -> Pool {
        let per_request = batch.unwrap_or(1) as u64;
        let size = size.div_ceil(per_request) * per_request;
        let counts = mix.apportion(size);
        let mut rng = fastrand::Rng::with_seed(seed);

        let mut deal: Vec<Class> = Vec::with_capacity(size as usize);
        for class in Class::ALL {
            deal.extend(std::iter::repeat_n(class, counts[class.index()] as usize));
        }
        rng.shuffle(&mut deal);

        let mut valid = Cycle::new(&secrets.valid, &mut rng);
        let mut revoked = Cycle::new(&secrets.revoked, &mut rng);
        let mut unknown = Unknown::new(prefix_of(secrets), &mut rng);
        let mut malformed = MALFORMED.iter().copied().cycle();

        let mut pool = Pool {
            bytes: Vec::with_capacity(size as usize * 256),
            requests: Vec::with_capacity((size / per_request) as usize),
            classes: Vec::with_capacity(size as usize),
            counts,
        };
        let mut credentials: Vec<String> = Vec::with_capacity(per_request as usize);
        for chunk in deal.chunks(per_request as usize) {
            credentials.clear();
            for class in chunk {
                credentials.push(match class {
                    // `Cycle::next` is only reached for a class the mix deals, and the keys were
                    // checked to cover the mix; an empty list would yield "" (malformed) rather
                    // than panic.
                    Class::Valid => valid.next().to_owned(),
                    Class::Revoked => revoked.next().to_owned(),
                    Class::Unknown => unknown.next(&mut rng),
                    Class::Malformed => malformed.next().unwrap_or("x").to_owned(),
                });
            }
            let request = match batch {
                Some(_) => http::batch_verify_request(host, credentials.iter().map(String::as_str)),
                None => http::verify_request(host, &credentials[0]),
            };
            let start = pool.bytes.len();
            pool.bytes.extend_from_slice(&request);
            let first = pool.classes.len();
            pool.classes.extend_from_slice(chunk);
            pool.requests.push(Entry { bytes: start..pool.bytes.len(), classes: first..pool.classes.len() });
        }
        pool
    }

    /// Requests in the pool.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// The bytes of request `i`.
    pub fn request(&self, i: usize) -> &[u8] {
        &self.bytes[self.requests[i].bytes.clone()]
    }

    /// The classes of request `i`'s credentials, in order.
    pub fn classes(&self, i: usize) -> &[Class] {
        &self.classes[self.requests[i].classes.clone()]
    }

    /// Bytes of all requests.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Round-robin over a list of keys in a shuffled order.
struct Cycle<'a> {
    keys: &'a [String],
    order: Vec<usize>,
    at: usize,
}

impl<'a> Cycle<'a> {
    fn new(keys: &'a [String], rng: &mut fastrand::Rng) -> Self {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        rng.shuffle(&mut order);
        Cycle { keys, order, at: 0 }
    }

    fn next(&mut self) -> &'a str {
        if self.order.is_empty() {
            return "";
        }
        let key = &self.keys[self.order[self.at]];
        self.at = (self.at + 1) % self.order.len();
        key
    }
}

/// The key prefix the server issues under, read off a seeded key (`ory_ak` without one).
fn prefix_of(secrets: &Secrets) -> String {
    secrets
        .valid
        .iter()
        .chain(&secrets.revoked)
        .find_map(|s| s.find("_v1_").map(|i| s[..i].to_owned()))
        .unwrap_or_else(|| "ory_ak".to_owned())
}

/// Keys of the server's format, current timestamp and random ids, signed with a random secret:
/// what a forger sends. The server parses them and computes the checksum before it rejects them,
/// so they cost it as much as a valid key short of the lookup.
struct Unknown {
    prefix: String,
    keyring: Keyring,
    now_secs: i64,
}

impl Unknown {
    fn new(prefix: String, rng: &mut fastrand::Rng) -> Self {
        let secret: Vec<u8> = (0..32).map(|_| rng.alphanumeric() as u8).collect();
        let now_secs = common::clock::secs(common::clock::now());
        Unknown { prefix, keyring: Keyring::new(&secret, []), now_secs }
    }

    fn next(&mut self, rng: &mut fastrand::Rng) -> String {
        let id = uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes()).into_uuid();
        key::generate(&self.prefix, self.now_secs, id, &self.keyring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets {
            valid: (0..50).map(|i| format!("tk_v1_valid{i}_sum")).collect(),
            revoked: (0..5).map(|i| format!("tk_v1_revoked{i}_sum")).collect(),
        }
    }

    #[test]
    fn deals_the_mix_into_requests() {
        let mix = Mix::parse("valid=90,unknown=5,revoked=3,malformed=2").expect("parses");
        let secrets = secrets();
        let pool = Pool::build("h:1", &secrets, &mix, None, 1000, 7);
        assert_eq!(pool.len(), 1000);
        assert_eq!(pool.counts, [900, 50, 30, 20]);
        let mut seen = [0u64; 4];
        for i in 0..pool.len() {
            let classes = pool.classes(i);
            assert_eq!(classes.len(), 1);
            seen[classes[0].index()] += 1;
            let request = std::str::from_utf8(pool.request(i)).expect("utf-8");
            assert!(request.starts_with("POST /v2alpha1/admin/apiKeys:verify HTTP/1.1\r\nHost: h:1\r\n"));
            if classes[0] == Class::Unknown {
                assert!(request.contains(r#"{"credential":"tk_v1_"#), "unknown keys take the seeded prefix");
            }
        }
        assert_eq!(seen, pool.counts);
        // Every valid key is used (900 valid slots over 50 keys).
        for key in &secrets.valid {
            let needle = format!("\"{key}\"");
            assert!((0..pool.len()).any(|i| pool.request(i).windows(needle.len()).any(|w| w == needle.as_bytes())));
        }
    }

    #[test]
    fn batches_round_up_to_whole_requests() {
        let mix = Mix::parse("valid=1,malformed=1").expect("parses");
        let pool = Pool::build("h", &secrets(), &mix, Some(7), 100, 1);
        assert_eq!(pool.len(), 15);
        assert!((0..pool.len()).all(|i| pool.classes(i).len() == 7));
        let request = pool.request(0);
        let body_at = request.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
        let body: serde_json::Value = serde_json::from_slice(&request[body_at..]).expect("JSON body");
        assert_eq!(body["requests"].as_array().map(Vec::len), Some(7));
        // The same seed builds the same pool.
        let again = Pool::build("h", &secrets(), &mix, Some(7), 100, 1);
        assert_eq!(again.request(3), pool.request(3));
    }

    #[test]
    fn sizes_the_pool_to_the_keys() {
        let mix = Mix::parse("valid=90,revoked=10").expect("parses");
        let few = Secrets { valid: vec!["a".into()], revoked: vec!["b".into()] };
        assert_eq!(default_size(&few, &mix, 1 << 22), MIN_POOL);
        let many = Secrets { valid: vec![String::new(); 90_000], revoked: vec![String::new(); 1] };
        assert_eq!(default_size(&many, &mix, 1 << 22), 100_000);
        assert_eq!(default_size(&many, &mix, 50_000), 50_000);
    }
}
