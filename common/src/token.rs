//! Derived tokens (talos-api.md §5, decisions.md §5.1): short-lived JWTs and macaroons minted from
//! an API key, and their offline verification on either plane — no store, no network.
//!
//! JWTs are JWS compact, EdDSA for Ed25519 keys and RS256 for RSA keys, signed with the JWKS of
//! `credentials.derived_tokens.jwt.signing_keys.urls`. The verifier picks the key by `kid` and the
//! algorithm from the *key*, never from the token: `alg: none`, HS256 or an algorithm that does
//! not match the key fails. `exp`/`nbf` are checked with exactly `credentials.clock_skew`.
//!
//! Macaroons are `<prefix>_v1_<base64url(V2 binary)>` with the issuer as location, `{"jti":…}` as
//! identifier, one first-party caveat holding the claims as JSON, under the root key
//! `HMAC-SHA256(hmac secret, "talos/macaroon/v1/root-key")`.

use std::net::IpAddr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::{Signer as _, Verifier as _};
use ipnet::IpNet;
use rsa::pkcs1v15;
use rsa::signature::SignatureEncoding;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::clock::{format_rfc3339, secs, Nanos, NANOS_PER_SEC};
use crate::config::Config;
use crate::key::{HmacKey, Keyring, NIL_NID};
use crate::macaroon::Macaroon;
use crate::model::Visibility;
use crate::verify::Rejection;

/// Claim names talos sets itself; custom claims with these names are dropped (§5.1 step 6).
pub const RESERVED_CLAIMS: [&str; 17] = [
    "jti", "sub", "iss", "aud", "iat", "exp", "nbf", "nid", "akid", "pid", "tty", "oid", "scp", "scope", "meta", "vis",
    "acl",
];
const TOKEN_TYPE: &str = "derived";
const MACAROON_ROOT_KEY_LABEL: &[u8] = b"talos/macaroon/v1/root-key";
/// Largest derived token (§2.4).
pub const MAX_TOKEN_LEN: usize = 8192;

/// The claims of a derived token. Unknown claims are the custom ones. Only `iss` is required
/// of a token we verify: as in the reference, `exp`/`nbf` are checked when set, `akid` falls back
/// to `sub`, and `tty` is checked when present — a validly signed token is not refused for a
/// claim it may omit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub: String,
    pub iss: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub nid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub akid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tty: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oid: String,
    #[serde(default)]
    pub scp: Vec<String>,
    #[serde(default)]
    pub meta: Map<String, Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vis: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<String>,
    #[serde(flatten)]
    pub custom: Map<String, Value>,
}

/// `aud` is a string or a list of strings (RFC 7519 §4.1.3).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// One configured JWK.
#[derive(Clone)]
enum KeyMaterial {
    Ed25519 { signing: Option<Box<ed25519_dalek::SigningKey>>, verifying: Box<ed25519_dalek::VerifyingKey> },
    Rsa { private: Option<Box<RsaPrivateKey>>, public: RsaPublicKey },
}

#[derive(Clone)]
struct Jwk {
    kid: String,
    is_sig: bool,
    material: KeyMaterial,
}

impl Jwk {
    fn alg(&self) -> &'static str {
        match self.material {
            KeyMaterial::Ed25519 { .. } => "EdDSA",
            KeyMaterial::Rsa { .. } => "RS256",
        }
    }

    fn can_sign(&self) -> bool {
        match &self.material {
            KeyMaterial::Ed25519 { signing, .. } => signing.is_some(),
            KeyMaterial::Rsa { private, .. } => private.is_some(),
        }
    }

    fn public_jwk(&self) -> Value {
        let mut v = match &self.material {
            KeyMaterial::Ed25519 { verifying, .. } => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(verifying.as_bytes())})
            }
            KeyMaterial::Rsa { public, .. } => json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            }),
        };
        v["kid"] = self.kid.clone().into();
        v["alg"] = self.alg().into();
        v["use"] = "sig".into();
        v
    }

    fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        match &self.material {
            KeyMaterial::Ed25519 { signing: Some(k), .. } => Some(k.sign(message).to_bytes().to_vec()),
            KeyMaterial::Rsa { private: Some(k), .. } => {
                let signer = pkcs1v15::SigningKey::<Sha256>::new((**k).clone());
                Some(signer.sign(message).to_vec())
            }
            _ => None,
        }
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Ed25519 { verifying, .. } => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| verifying.verify_strict(message, &sig).is_ok()),
            KeyMaterial::Rsa { public, .. } => {
                let verifier = pkcs1v15::VerifyingKey::<Sha256>::new(public.clone());
                pkcs1v15::Signature::try_from(signature).is_ok_and(|sig| verifier.verify(message, &sig).is_ok())
            }
        }
    }
}

fn b64_field(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = jwk.get(name).and_then(Value::as_str).ok_or_else(|| format!("missing \"{name}\""))?;
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| format!("\"{name}\" is not base64url"))
}

fn parse_jwk(jwk: &Value) -> Result<Option<Jwk>, String> {
    let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("").to_owned();
    let is_sig = jwk.get("use").and_then(Value::as_str) == Some("sig");
    let material = match jwk.get("kty").and_then(Value::as_str) {
        Some("OKP") => {
            if jwk.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                return Err("only the Ed25519 curve is supported for OKP keys".into());
            }
            let x: [u8; 32] = b64_field(jwk, "x")?.try_into().map_err(|_| "\"x\" must be 32 bytes".to_owned())?;
            let verifying =
                ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| "\"x\" is not an Ed25519 key".to_owned())?;
            let signing = match jwk.get("d") {
                None => None,
                Some(_) => {
                    let d: [u8; 32] =
                        b64_field(jwk, "d")?.try_into().map_err(|_| "\"d\" must be 32 bytes".to_owned())?;
                    let key = ed25519_dalek::SigningKey::from_bytes(&d);
                    if key.verifying_key() != verifying {
                        return Err("\"d\" does not match \"x\"".into());
                    }
                    Some(Box::new(key))
                }
            };
            KeyMaterial::Ed25519 { signing, verifying: Box::new(verifying) }
        }
        Some("RSA") => {
            let n = BigUint::from_bytes_be(&b64_field(jwk, "n")?);
            let e = BigUint::from_bytes_be(&b64_field(jwk, "e")?);
            let public = RsaPublicKey::new(n.clone(), e.clone()).map_err(|_| "invalid RSA public key".to_owned())?;
            let private = match jwk.get("d") {
                None => None,
                Some(_) => {
                    let d = BigUint::from_bytes_be(&b64_field(jwk, "d")?);
                    let primes = vec![
                        BigUint::from_bytes_be(&b64_field(jwk, "p")?),
                        BigUint::from_bytes_be(&b64_field(jwk, "q")?),
                    ];
                    let key = RsaPrivateKey::from_components(n, e, d, primes)
                        .map_err(|_| "invalid RSA private key".to_owned())?;
                    key.validate().map_err(|_| "invalid RSA private key".to_owned())?;
                    Some(Box::new(key))
                }
            };
            KeyMaterial::Rsa { private, public }
        }
        // Symmetric and unknown key types are skipped (§5.2).
        _ => return Ok(None),
    };
    if kid.is_empty() {
        return Err("every key needs a \"kid\"".into());
    }
    Ok(Some(Jwk { kid, is_sig, material }))
}

/// Parses a `base64://<std base64 of a JWKS>` URL.
fn parse_jwks_url(url: &str) -> Result<Vec<Jwk>, String> {
    let encoded = url.strip_prefix("base64://").ok_or("only base64:// URLs are supported")?;
    let raw = STANDARD
        .decode(encoded.trim())
        .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim().trim_end_matches('=')))
        .map_err(|_| "not valid base64".to_owned())?;
    let set: Value = serde_json::from_slice(&raw).map_err(|_| "not a JSON Web Key Set".to_owned())?;
    let keys = set.get("keys").and_then(Value::as_array).ok_or("not a JSON Web Key Set (no \"keys\")")?;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if let Some(jwk) = parse_jwk(k).map_err(|e| format!("key {i}: {e}"))? {
            out.push(jwk);
        }
    }
    Ok(out)
}

/// Generates a signing JWKS for `talos jwk`: Ed25519 by default, RSA-2048 on request.
pub fn generate_jwks(rsa: bool, kid: &str) -> Result<Value, String> {
    let mut rng = rand_core::OsRng;
    let jwk = if rsa {
        let key = RsaPrivateKey::new(&mut rng, 2048).map_err(|e| format!("cannot generate an RSA key: {e}"))?;
        let primes = key.primes();
        json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            "d": URL_SAFE_NO_PAD.encode(key.d().to_bytes_be()),
            "p": URL_SAFE_NO_PAD.encode(primes[0].to_bytes_be()),
            "q": URL_SAFE_NO_PAD.encode(primes[1].to_bytes_be()),
        })
    } else {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
            "d": URL_SAFE_NO_PAD.encode(key.to_bytes()),
        })
    };
    Ok(json!({ "keys": [jwk] }))
}

/// `base64://…` for a JWKS, ready for `credentials.derived_tokens.jwt.signing_keys.urls`.
pub fn jwks_url(jwks: &Value) -> String {
    format!("base64://{}", STANDARD.encode(jwks.to_string()))
}

/// A derivation request after validation (the admin plane builds it).
pub struct Derivation<'a> {
    pub macaroon: bool,
    pub parent_key_id: &'a str,
    pub actor_id: &'a str,
    pub scopes: Vec<String>,
    pub metadata: Map<String, Value>,
    pub visibility: Visibility,
    pub allowed_cidrs: Vec<String>,
    pub audiences: Vec<String>,
    pub custom_claims: Map<String, Value>,
    pub ttl_secs: i64,
}

/// Why a derivation failed on the server side (config), not the client's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    #[error("no signing key URLs configured")]
    NoSigningKeys,
    #[error("signing key \"{0}\" not found (credentials.derived_tokens.jwt.signing_key_id)")]
    SigningKeyNotFound(String),
}

/// Mints and verifies derived tokens; built once from the config.
#[derive(Clone)]
pub struct DerivedTokens {
    keys: Vec<Jwk>,
    signing_key_id: String,
    issuer: String,
    /// Current then retired issuers still accepted (expiry as Unix seconds).
    issuers: Vec<(String, Option<i64>)>,
    skew_secs: i64,
    keyring: Keyring,
    macaroon_prefix: String,
    macaroon_prefixes: Vec<String>,
}

impl std::fmt::Debug for DerivedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DerivedTokens({} keys)", self.keys.len())
    }
}

impl DerivedTokens {
    /// Loads the signing keys; an error names the URL index and never the key material.
    pub fn new(config: &Config, keyring: &Keyring) -> Result<Self, String> {
        let tokens = &config.credentials.derived_tokens;
        let mut keys = Vec::new();
        for (i, url) in tokens.jwt_signing_key_urls.iter().enumerate() {
            keys.extend(
                parse_jwks_url(url)
                    .map_err(|e| format!("credentials.derived_tokens.jwt.signing_keys.urls[{i}]: {e}"))?,
            );
        }
        let mut issuers = vec![(config.credentials.issuer.clone(), None)];
        issuers.extend(
            config
                .credentials
                .issuer_retired
                .iter()
                .map(|r| (r.value.clone(), r.expires_at.map(|t| t.unix_timestamp()))),
        );
        let derived = DerivedTokens {
            keys,
            signing_key_id: tokens.jwt_signing_key_id.clone(),
            issuer: config.credentials.issuer.clone(),
            issuers,
            skew_secs: i64::try_from(config.credentials.clock_skew.as_secs()).unwrap_or(i64::MAX),
            keyring: keyring.clone(),
            macaroon_prefix: tokens.macaroon_prefix.clone(),
            macaroon_prefixes: std::iter::once(&tokens.macaroon_prefix)
                .chain(&tokens.macaroon_prefix_retired)
                .cloned()
                .collect(),
        };
        if !derived.signing_key_id.is_empty() && !derived.keys.is_empty() {
            derived.signer().map_err(|e| e.to_string())?;
        }
        Ok(derived)
    }

    #[cfg(test)]
    fn with_issuer_for_test(mut self, issuer: &str, retired: Vec<(String, Option<i64>)>) -> Self {
        self.issuer = issuer.to_owned();
        self.issuers = std::iter::once((issuer.to_owned(), None)).chain(retired).collect();
        self
    }

    /// The public JWKS (`GET /v2alpha1/derivedKeys/jwks.json`); `None` when there is no key.
    pub fn public_jwks(&self) -> Option<Value> {
        let keys: Vec<Value> = self.keys.iter().map(Jwk::public_jwk).collect();
        (!keys.is_empty()).then(|| json!({ "jwks": { "keys": keys } }))
    }

    /// The signing key: `signing_key_id`, else the first `use: sig` key, else the first (§5.2).
    fn signer(&self) -> Result<&Jwk, DeriveError> {
        let signing = self.keys.iter().filter(|k| k.can_sign());
        if !self.signing_key_id.is_empty() {
            return self
                .keys
                .iter()
                .find(|k| k.kid == self.signing_key_id && k.can_sign())
                .ok_or_else(|| DeriveError::SigningKeyNotFound(self.signing_key_id.clone()));
        }
        let mut signing = signing.peekable();
        let first = signing.peek().copied().ok_or(DeriveError::NoSigningKeys)?;
        Ok(signing.find(|k| k.is_sig).unwrap_or(first))
    }

    fn macaroon_root_key(secret: &HmacKey) -> [u8; 32] {
        secret.sign(&[MACAROON_ROOT_KEY_LABEL])
    }

    /// Mints a token; returns the token string and its claims.
    pub fn derive(&self, d: Derivation<'_>, now: Nanos) -> Result<(String, Claims), DeriveError> {
        let now_secs = secs(now);
        let custom: Map<String, Value> =
            d.custom_claims.into_iter().filter(|(k, _)| !RESERVED_CLAIMS.contains(&k.as_str())).collect();
        let claims = Claims {
            jti: uuid::Uuid::new_v4().to_string(),
            sub: d.parent_key_id.to_owned(),
            iss: self.issuer.clone(),
            aud: d.audiences,
            iat: Some(now_secs),
            exp: Some(now_secs.saturating_add(d.ttl_secs)),
            nbf: Some(now_secs),
            nid: NIL_NID.to_owned(),
            akid: d.parent_key_id.to_owned(),
            pid: d.parent_key_id.to_owned(),
            tty: TOKEN_TYPE.to_owned(),
            oid: d.actor_id.to_owned(),
            scp: d.scopes,
            meta: d.metadata,
            vis: match d.visibility {
                Visibility::Public => "public",
                _ => "secret",
            }
            .to_owned(),
            acl: d.allowed_cidrs,
            custom,
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialise");
        let token = if d.macaroon {
            let root = Self::macaroon_root_key(self.keyring.current());
            let identifier = serde_json::to_vec(&json!({ "jti": claims.jti })).expect("JSON serialises");
            let m = Macaroon::mint(&root, self.issuer.as_bytes(), &identifier, vec![payload]);
            format!("{}_v1_{}", self.macaroon_prefix, URL_SAFE_NO_PAD.encode(m.serialize_v2()))
        } else {
            let key = self.signer()?;
            let header = json!({ "alg": key.alg(), "kid": key.kid, "typ": "JWT" });
            let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
            token.push('.');
            token.push_str(&URL_SAFE_NO_PAD.encode(&payload));
            let signature = key.sign(token.as_bytes()).ok_or(DeriveError::NoSigningKeys)?;
            token.push('.');
            token.push_str(&URL_SAFE_NO_PAD.encode(signature));
            token
        };
        Ok((token, claims))
    }

    fn issuer_allowed(&self, iss: &str, now_secs: i64) -> bool {
        self.issuers.iter().any(|(i, expires)| i == iss && expires.is_none_or(|at| now_secs < at))
    }

    /// Checks a JWT's signature with the key its `kid` names, by that key's own algorithm.
    fn jwt_claims(&self, token: &str) -> Option<Value> {
        let (signed, signature) = token.rsplit_once('.')?;
        let (header, payload) = signed.split_once('.')?;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        let kid = header.get("kid")?.as_str()?;
        let key = self.keys.iter().find(|k| k.kid == kid)?;
        if header.get("alg")?.as_str()? != key.alg() {
            return None;
        }
        if !key.verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).ok()?) {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    /// Checks a macaroon's chain under every active secret and returns its caveat's claims.
    fn macaroon_claims(&self, token: &str, now_secs: i64) -> Option<Value> {
        let body = self.macaroon_prefixes.iter().find_map(|p| token.strip_prefix(p.as_str())?.strip_prefix("_v1_"))?;
        let m = Macaroon::deserialize_v2(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        let identifier: Value = serde_json::from_slice(&m.identifier).ok()?;
        if identifier.get("jti")?.as_str()?.is_empty() || m.caveats.len() != 1 {
            return None;
        }
        if !self.keyring.active(now_secs).any(|s| m.verify_signature(&Self::macaroon_root_key(s))) {
            return None;
        }
        let claims: Value = serde_json::from_slice(&m.caveats[0]).ok()?;
        // The caveat's `exp` is strict (no skew), as in the reference's macaroon checker.
        if claims.get("exp").is_some_and(|exp| exp.as_i64().is_none_or(|exp| now_secs >= exp)) {
            return None;
        }
        Some(claims)
    }

    /// Verifies a derived token offline (§5.3) and renders its `VerifyApiKeyResponse`.
    pub fn verify(
        &self,
        token: &str,
        macaroon: bool,
        expected_audiences: &[&str],
        now: Nanos,
        client_ip: Option<IpAddr>,
    ) -> Result<Vec<u8>, Rejection> {
        let now_secs = secs(now);
        let raw = if macaroon { self.macaroon_claims(token, now_secs) } else { self.jwt_claims(token) }
            .ok_or(Rejection::SignatureInvalid)?;
        // Wrongly typed claims (e.g. `exp` as a string) fail like a bad signature.
        let claims: Claims = serde_json::from_value(raw).map_err(|_| Rejection::SignatureInvalid)?;
        if !self.issuer_allowed(&claims.iss, now_secs)
            || claims.exp.is_some_and(|exp| now_secs >= exp.saturating_add(self.skew_secs))
            || claims.nbf.is_some_and(|nbf| nbf > now_secs.saturating_add(self.skew_secs))
        {
            return Err(Rejection::SignatureInvalid);
        }
        if !claims.tty.is_empty() && claims.tty != TOKEN_TYPE {
            return Err(Rejection::InvalidFormat);
        }
        if claims.nid != NIL_NID {
            return Err(Rejection::NotFound);
        }
        if !claims.acl.is_empty() {
            let nets: Vec<IpNet> = claims.acl.iter().filter_map(|c| c.parse().ok()).collect();
            if !client_ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))) {
                return Err(Rejection::IpNotAllowed);
            }
        }
        // RFC 7519 §4.1.3: an audience-restricted token needs a matching expectation, and an
        // expectation needs a matching audience.
        let audience_ok = if expected_audiences.is_empty() {
            claims.aud.is_empty()
        } else {
            claims.aud.iter().any(|a| expected_audiences.contains(&a.as_str()))
        };
        if !audience_ok {
            return Err(Rejection::AudienceMismatch);
        }
        Ok(render_valid(&claims))
    }
}

/// The successful `VerifyApiKeyResponse` for a derived token.
fn render_valid(claims: &Claims) -> Vec<u8> {
    let mut metadata = claims.custom.clone();
    for (k, v) in &claims.meta {
        metadata.insert(k.clone(), v.clone());
    }
    let key_id = if claims.akid.is_empty() { &claims.sub } else { &claims.akid };
    let mut v = Map::new();
    v.insert("is_valid".into(), true.into());
    v.insert("key_id".into(), key_id.clone().into());
    if !claims.oid.is_empty() {
        v.insert("actor_id".into(), claims.oid.clone().into());
    }
    v.insert("scopes".into(), claims.scp.clone().into());
    v.insert("metadata".into(), metadata.into());
    if let Some(exp) = claims.exp {
        v.insert("expire_time".into(), format_rfc3339(exp.saturating_mul(NANOS_PER_SEC)).into());
    }
    v.insert("status".into(), "KEY_STATUS_ACTIVE".into());
    let vis = if claims.vis == "public" { Visibility::Public } else { Visibility::Secret };
    v.insert("visibility".into(), vis.as_str().into());
    v.insert("issuer".into(), claims.iss.clone().into());
    if !claims.aud.is_empty() {
        v.insert("audiences".into(), claims.aud.clone().into());
    }
    serde_json::to_vec(&Value::Object(v)).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const NOW: i64 = 1_800_000_000;

    fn tokens(extra: &str) -> DerivedTokens {
        let jwks = generate_jwks(false, "k1").unwrap();
        let yaml = format!(
            "credentials:\n  issuer: https://issuer.test\n  clock_skew: 30s\n{extra}  derived_tokens:\n    jwt:\n      signing_keys:\n        urls: [\"{}\"]\n\
             secrets:\n  hmac:\n    current: \"token-test-secret-0123456789abcdefghij\"\ndb:\n  dsn: memory\n",
            jwks_url(&jwks)
        );
        let (config, _) = Config::from_yaml_str(&yaml, &Vec::<(String, String)>::new()).unwrap();
        let keyring = Keyring::new(config.secrets.hmac.current.expose().as_bytes(), []);
        DerivedTokens::new(&config, &keyring).unwrap()
    }

    fn derivation(macaroon: bool, ttl_secs: i64) -> Derivation<'static> {
        Derivation {
            macaroon,
            parent_key_id: "00000000-0000-4000-8000-000000000001",
            actor_id: "actor",
            scopes: vec!["read".into()],
            metadata: Map::new(),
            visibility: Visibility::Secret,
            allowed_cidrs: vec![],
            audiences: vec![],
            custom_claims: Map::new(),
            ttl_secs,
        }
    }

    fn at(secs: i64) -> Nanos {
        secs * NANOS_PER_SEC
    }

    #[test]
    fn jwt_expiry_boundary_uses_exactly_the_clock_skew() {
        let t = tokens("");
        let (jwt, claims) = t.derive(derivation(false, 60), at(NOW)).unwrap();
        assert_eq!(claims.exp, Some(NOW + 60));
        let check = |secs| t.verify(&jwt, false, &[], at(secs), None).map(|_| ());
        assert_eq!(check(NOW), Ok(()));
        // Valid until exp + skew (exclusive), then SIGNATURE_INVALID.
        assert_eq!(check(NOW + 60 + 29), Ok(()));
        assert_eq!(check(NOW + 60 + 30), Err(Rejection::SignatureInvalid));
        // Not before nbf - skew.
        assert_eq!(check(NOW - 30), Ok(()));
        assert_eq!(check(NOW - 31), Err(Rejection::SignatureInvalid));
    }

    #[test]
    fn macaroon_expiry_is_strict() {
        let t = tokens("");
        let (token, _) = t.derive(derivation(true, 60), at(NOW)).unwrap();
        let check = |secs| t.verify(&token, true, &[], at(secs), None).map(|_| ());
        assert_eq!(check(NOW + 59), Ok(()));
        assert_eq!(check(NOW + 60), Err(Rejection::SignatureInvalid));
        assert_eq!(check(NOW - 30), Ok(()));
        assert_eq!(check(NOW - 31), Err(Rejection::SignatureInvalid));
    }

    #[test]
    fn tokens_from_another_deployment_fail() {
        let (jwt, _) = tokens("").derive(derivation(false, 60), at(NOW)).unwrap();
        let (mac, _) = tokens("").derive(derivation(true, 60), at(NOW)).unwrap();
        // Another JWKS (kid k1 again, different key): the signature fails. The macaroon shares the
        // HMAC secret, so it verifies — the root key is what binds it.
        let other = tokens("");
        assert_eq!(other.verify(&jwt, false, &[], at(NOW), None).map(|_| ()), Err(Rejection::SignatureInvalid));
        assert!(other.verify(&mac, true, &[], at(NOW), None).is_ok());
    }

    #[test]
    fn retired_issuer_still_verifies_until_it_expires() {
        let old = tokens("");
        let (mac, _) = old.derive(derivation(true, 600), at(NOW)).unwrap();
        let moved =
            tokens("").with_issuer_for_test("https://new.test", vec![("https://issuer.test".into(), Some(NOW + 10))]);
        assert!(moved.verify(&mac, true, &[], at(NOW + 9), None).is_ok());
        assert_eq!(moved.verify(&mac, true, &[], at(NOW + 10), None).map(|_| ()), Err(Rejection::SignatureInvalid));
    }

    #[test]
    fn acl_and_audiences() {
        let t = tokens("");
        let mut d = derivation(false, 60);
        d.allowed_cidrs = vec!["10.0.0.0/8".into()];
        d.audiences = vec!["api".into()];
        let (jwt, _) = t.derive(d, at(NOW)).unwrap();
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(t.verify(&jwt, false, &["api"], at(NOW), ip("10.1.1.1")).is_ok());
        assert_eq!(t.verify(&jwt, false, &["api"], at(NOW), ip("11.1.1.1")).map(|_| ()), Err(Rejection::IpNotAllowed));
        assert_eq!(t.verify(&jwt, false, &[], at(NOW), ip("10.1.1.1")).map(|_| ()), Err(Rejection::AudienceMismatch));
    }

    #[test]
    fn bad_jwks_urls_are_named_without_key_material() {
        for url in ["https://example.com/jwks.json", "base64://not-base64!", "base64://e30="] {
            let yaml = format!(
                "credentials:\n  issuer: i\n  derived_tokens:\n    jwt:\n      signing_keys:\n        urls: [\"{url}\"]\n\
                 secrets:\n  hmac:\n    current: \"token-test-secret-0123456789abcdefghij\"\n"
            );
            let Ok((config, _)) = Config::from_yaml_str(&yaml, &Vec::<(String, String)>::new()) else { continue };
            let keyring = Keyring::new(b"token-test-secret-0123456789abcdefghij", []);
            let err = DerivedTokens::new(&config, &keyring).unwrap_err();
            assert!(err.starts_with("credentials.derived_tokens.jwt.signing_keys.urls[0]: "), "{err}");
        }
    }
}
