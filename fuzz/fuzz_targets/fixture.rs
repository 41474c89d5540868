//! The configuration every fuzz target that needs one shares (`mod fixture;` in each): an
//! issuer, a default TTL, a throw-away JWT signing key, an HMAC secret and the in-memory store.

use std::sync::{Arc, OnceLock};

use common::config::Config;
use common::verify::Verifier;

const CONFIG_YAML: &str = r#"
credentials:
  issuer: "https://talos.fuzz.example"
  api_keys:
    default_ttl: 720h
  derived_tokens:
    jwt:
      signing_keys:
        # A throw-away Ed25519 key for the fuzz targets only (`talos jwk --kid fuzz`).
        urls: ["base64://eyJrZXlzIjpbeyJhbGciOiJFZERTQSIsImNydiI6IkVkMjU1MTkiLCJkIjoiVE9sVHJObEVGdGFrUG16WGFKWVpsdzFsZ0tLQmluOGdXSHVXTDJFTmEtYyIsImtpZCI6ImZ1enoiLCJrdHkiOiJPS1AiLCJ1c2UiOiJzaWciLCJ4IjoidUc0ZUFwMFF5MHplVlpPcEZPY1NRampEX1VmY1Y0cUJKeUNGR2lIdDQ1MCJ9XX0="]
secrets:
  hmac:
    current: "fuzz-secret-0123456789abcdef0123456789"
db:
  dsn: memory
"#;

/// The fixture configuration, validated as `talos serve` validates its own.
pub fn config() -> Arc<Config> {
    static CONFIG: OnceLock<Arc<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let (config, _) = Config::from_yaml_str(CONFIG_YAML, &Vec::<(String, String)>::new()).expect("config");
            Arc::new(config)
        })
        .clone()
}

/// A verifier for [`config`].
pub fn verifier() -> Verifier {
    Verifier::new(&config()).expect("the fixture verifier builds")
}
