//! The `talos keys` command line (clap) and how each subcommand becomes one API call: flags are
//! read into the request models of `common::model`, checked here where the client can tell a
//! mistake before sending anything (a usage error), and judged by the server otherwise.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use common::model::{
    BatchImportRequest, DeriveRequest, ImportRequest, IpRestrictionIn, IssueRequest, KeyStatus, RateLimitPolicyIn,
    RevocationReason, RevokeRequest, RotateRequest, TokenAlgorithm, UpdateRequest, VerifyRequest, Visibility,
    WireDuration, WireU64,
};
use common::self_revoke::SelfRevokeRequest;
use serde_json::{Map, Value};

use crate::api::Api;
use crate::output::{self, Format, Shape};
use crate::Error;

/// What `talos keys --help` ends with: the exit codes scripts can rely on.
const EXIT_CODES: &str = "\
Exit codes:
  0  success (verify: the key is valid)
  1  a negative answer: verify found the key invalid (its error_code is printed), or some items
     of a batch import failed; also when the output cannot be written
  2  usage: unknown or malformed flags, no key given, an invalid --endpoint
  3  the server answered with an error: its message and reason are printed on stderr
  4  the server cannot be reached (connection refused, DNS, TLS, timeout)";

/// `talos keys`: manage and check keys on a running server over its HTTP API.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct Keys {
    /// The server's address.
    #[arg(short, long, global = true, env = "TALOS_ENDPOINT", default_value = "http://localhost:4420")]
    endpoint: String,
    /// How answers are printed: table (compact columns), json (the server's JSON, pretty) or yaml.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Issue a key. Its secret is printed once and never shown again.
    Issue(IssueArgs),
    /// List keys, newest first (issued keys; --imported for imported ones).
    List(ListArgs),
    /// Show one key.
    Get(KeyIdArg),
    /// Change a key's name, scopes, metadata, rate limit or IP allowlist. Only the fields given
    /// (and those named by --clear) change.
    Update(UpdateArgs),
    /// Replace an issued key by a new one, revoking the old one; prints the new secret.
    Rotate(RotateArgs),
    /// Revoke a key (it stays readable, and never verifies again).
    Revoke(RevokeArgs),
    /// Import an existing key from another system.
    Import(ImportArgs),
    /// Import up to 1000 keys from a JSON file: {"requests": [{"raw_key": …, "name": …,
    /// "actor_id": …}, …]} or just the array.
    BatchImport(BatchImportArgs),
    /// Delete an imported key for good.
    Delete(KeyIdArg),
    /// Verify a key (exit 0 valid, 1 invalid).
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
    /// Derive a short-lived token (JWT or macaroon) from a key.
    DeriveToken(DeriveArgs),
    /// Revoke a key by proving possession of it.
    SelfRevoke(SelfRevokeArgs),
}

/// The fields a key is created or changed with.
#[derive(Debug, Args)]
struct Fields {
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// A scope (repeat for more).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Metadata, a JSON object, e.g. '{"env": "prod"}'.
    #[arg(long, value_name = "JSON", value_parser = json_object)]
    metadata: Option<Map<String, Value>>,
    /// A CIDR the key may be used from (repeat for more), e.g. 10.0.0.0/8.
    #[arg(long = "allowed-cidr", value_name = "CIDR")]
    allowed_cidrs: Vec<String>,
    /// Rate-limit quota: requests per --rate-limit-window.
    #[arg(long, value_name = "N", requires = "rate_limit_window")]
    rate_limit_quota: Option<u64>,
    /// Rate-limit window, e.g. 1m.
    #[arg(long, value_name = "DURATION", requires = "rate_limit_quota")]
    rate_limit_window: Option<WireDuration>,
}

impl Fields {
    fn scopes(&self) -> Option<Vec<String>> {
        (!self.scopes.is_empty()).then(|| self.scopes.clone())
    }

    fn rate_limit_policy(&self) -> Option<RateLimitPolicyIn> {
        self.rate_limit_quota.map(|quota| RateLimitPolicyIn {
            quota: Some(WireU64(quota)),
            window: self.rate_limit_window,
            unit: None,
        })
    }

    fn ip_restriction(&self) -> Option<IpRestrictionIn> {
        (!self.allowed_cidrs.is_empty()).then(|| IpRestrictionIn { allowed_cidrs: Some(self.allowed_cidrs.clone()) })
    }
}

/// The fields of a new key (issue, import).
#[derive(Debug, Args)]
struct NewKey {
    #[command(flatten)]
    fields: Fields,
    /// Who the key belongs to.
    #[arg(long)]
    actor_id: Option<String>,
    /// Lifetime, e.g. 24h, 30d (the server's default_ttl without it).
    #[arg(long, value_name = "DURATION", conflicts_with = "expire_time")]
    ttl: Option<WireDuration>,
    /// Expiry as an RFC 3339 time, e.g. 2030-01-01T00:00:00Z; sent as the ttl from now.
    #[arg(long, value_name = "TIME")]
    expire_time: Option<String>,
    /// secret (default) or public (needs credentials.api_keys.prefix.public_current).
    #[arg(long, value_parser = visibility)]
    visibility: Option<Visibility>,
    /// Idempotency key: repeating a request with it returns the first key.
    #[arg(long)]
    request_id: Option<String>,
}

impl NewKey {
    fn request(&self) -> Result<IssueRequest, Error> {
        let ttl = match &self.expire_time {
            Some(at) => Some(ttl_until(at)?),
            None => self.ttl,
        };
        Ok(IssueRequest {
            name: self.fields.name.clone(),
            actor_id: self.actor_id.clone(),
            scopes: self.fields.scopes(),
            metadata: self.fields.metadata.clone(),
            ttl,
            rate_limit_policy: self.fields.rate_limit_policy(),
            ip_restriction: self.fields.ip_restriction(),
            visibility: self.visibility,
            request_id: self.request_id.clone(),
        })
    }
}

#[derive(Debug, Args)]
struct IssueArgs {
    #[command(flatten)]
    key: NewKey,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// The key to import; `-` reads it from stdin.
    #[arg(long, value_name = "KEY")]
    raw_key: String,
    #[command(flatten)]
    key: NewKey,
}

#[derive(Debug, Args)]
struct BatchImportArgs {
    /// The JSON file; `-` reads stdin.
    file: PathBuf,
}

#[derive(Debug, Args)]
struct KeyIdArg {
    /// The key id (a UUID for issued keys, 64 hex digits for imported ones).
    #[arg(value_parser = key_id)]
    key_id: String,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// List imported keys instead of issued ones.
    #[arg(long)]
    imported: bool,
    /// Keys per page (server default 50, at most 1000).
    #[arg(long)]
    page_size: Option<u32>,
    /// The next_page_token of the previous page.
    #[arg(long)]
    page_token: Option<String>,
    /// Only this actor's keys.
    #[arg(long)]
    actor_id: Option<String>,
    /// Only keys in this status: active, revoked or expired (with --actor-id).
    #[arg(long, value_parser = status)]
    status: Option<KeyStatus>,
}

#[derive(Debug, Args)]
struct UpdateArgs {
    #[command(flatten)]
    id: KeyIdArg,
    #[command(flatten)]
    fields: Fields,
    /// Clear a field: name, scopes, metadata, rate_limit_policy or ip_restriction (repeatable).
    #[arg(long, value_name = "FIELD", value_parser = clap::builder::PossibleValuesParser::new(UpdateRequest::PATHS))]
    clear: Vec<String>,
}

#[derive(Debug, Args)]
struct RotateArgs {
    #[command(flatten)]
    id: KeyIdArg,
    #[command(flatten)]
    fields: Fields,
    /// The new key's visibility (the old one's without it).
    #[arg(long, value_parser = visibility)]
    visibility: Option<Visibility>,
    /// How long the old key keeps verifying, e.g. 10m (never past its expiry).
    #[arg(long, value_name = "DURATION")]
    grace_period: Option<WireDuration>,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[command(flatten)]
    id: KeyIdArg,
    /// key-compromise, affiliation-changed, superseded or privilege-withdrawn.
    #[arg(long, value_parser = revocation_reason)]
    reason: RevocationReason,
    /// Why (only with privilege-withdrawn).
    #[arg(long)]
    description: Option<String>,
}

/// Where a raw key comes from. Arguments are visible to other users in `ps`: prefer stdin or
/// TALOS_API_KEY.
#[derive(Debug, Args)]
struct Credential {
    /// The key; `-` reads it from stdin. Arguments show in `ps`: prefer stdin or TALOS_API_KEY.
    #[arg(value_name = "KEY", env = "TALOS_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Read the key from stdin.
    #[arg(long)]
    key_stdin: bool,
}

impl Credential {
    fn read(&self) -> Result<String, Error> {
        if self.key_stdin || self.key.as_deref() == Some("-") {
            return read_stdin_line();
        }
        match &self.key {
            Some(key) if !key.is_empty() => Ok(key.clone()),
            _ => Err(Error::Usage("no key given: pass KEY, `-` or --key-stdin (stdin), or set TALOS_API_KEY".into())),
        }
    }
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    credential: Credential,
    /// An audience the credential must name (derived tokens; repeatable).
    #[arg(long = "audience", value_name = "AUDIENCE")]
    audiences: Vec<String>,
}

#[derive(Debug, Args)]
struct DeriveArgs {
    #[command(flatten)]
    credential: Credential,
    /// jwt (default) or macaroon.
    #[arg(long, value_parser = algorithm)]
    algorithm: Option<TokenAlgorithm>,
    /// A scope of the parent key to keep (repeatable; all of them without it).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Lifetime, e.g. 15m (credentials.derived_tokens.default_ttl without it).
    #[arg(long, value_name = "DURATION")]
    ttl: Option<WireDuration>,
    /// Extra claims, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = json_object)]
    claims: Option<Map<String, Value>>,
    /// An audience to bind the token to (repeatable).
    #[arg(long = "audience", value_name = "AUDIENCE")]
    audiences: Vec<String>,
}

#[derive(Debug, Args)]
struct SelfRevokeArgs {
    #[command(flatten)]
    credential: Credential,
    /// key-compromise, affiliation-changed or superseded.
    #[arg(long, value_parser = revocation_reason)]
    reason: RevocationReason,
}

/// Runs one subcommand: one call, its answer printed. `Ok(false)` for a negative answer.
pub fn execute(keys: Keys) -> Result<bool, Error> {
    let api = Api::new(&keys.endpoint)?;
    let format = keys.format;
    let print = |shape, answer: Option<Value>| output::print(format, shape, answer.as_ref());
    match keys.command {
        KeysCommand::Issue(args) => {
            print(Shape::Issued, api.post("/v2alpha1/admin/issuedApiKeys", &args.key.request()?)?)?
        }
        KeysCommand::Import(args) => {
            let raw_key = if args.raw_key == "-" { read_stdin_line()? } else { args.raw_key };
            let request = ImportRequest { raw_key: Some(raw_key), fields: args.key.request()? };
            print(Shape::Key, api.post("/v2alpha1/admin/importedApiKeys", &request)?)?;
        }
        KeysCommand::BatchImport(args) => {
            let request = batch_file(&args.file)?;
            let answer = api.post("/v2alpha1/admin/importedApiKeys:batchCreate", &request)?;
            let failures = answer.as_ref().and_then(|a| a["failure_count"].as_u64()).unwrap_or(0);
            print(Shape::BatchImport, answer)?;
            return Ok(failures == 0);
        }
        KeysCommand::List(args) => {
            let mut query = Vec::new();
            if let Some(size) = args.page_size {
                query.push(("page_size", size.to_string()));
            }
            if let Some(token) = args.page_token {
                query.push(("page_token", token));
            }
            let mut filter = Vec::new();
            if let Some(actor) = &args.actor_id {
                if actor.contains('"') {
                    return Err(Error::Usage("--actor-id cannot contain a double quote".into()));
                }
                filter.push(format!("actor_id=\"{actor}\""));
            }
            if let Some(status) = args.status {
                filter.push(format!("status={}", status.as_str()));
            }
            if !filter.is_empty() {
                query.push(("filter", filter.join(" AND ")));
            }
            let collection = if args.imported { "importedApiKeys" } else { "issuedApiKeys" };
            print(Shape::List, api.get(&format!("/v2alpha1/admin/{collection}"), &query)?)?;
        }
        KeysCommand::Get(id) => print(Shape::Key, api.get(&key_path(&id.key_id), &[])?)?,
        KeysCommand::Update(args) => {
            let fields = &args.fields;
            let request = UpdateRequest {
                name: fields.name.clone(),
                scopes: fields.scopes(),
                metadata: fields.metadata.clone(),
                rate_limit_policy: fields.rate_limit_policy(),
                ip_restriction: fields.ip_restriction(),
            };
            let mut mask = request.present_paths();
            if let Some(both) = args.clear.iter().find(|c| mask.contains(&c.as_str())) {
                return Err(Error::Usage(format!("--clear {both} contradicts the value given for it")));
            }
            mask.extend(UpdateRequest::PATHS.iter().filter(|p| args.clear.iter().any(|c| c == *p)));
            if mask.is_empty() {
                return Err(Error::Usage("nothing to update: give a field to change or --clear".into()));
            }
            let query = [("update_mask", mask.join(","))];
            print(Shape::Key, api.patch(&key_path(&args.id.key_id), &query, &request)?)?;
        }
        KeysCommand::Rotate(args) => {
            let request = RotateRequest {
                name: args.fields.name.clone(),
                scopes: args.fields.scopes(),
                metadata: args.fields.metadata.clone(),
                rate_limit_policy: args.fields.rate_limit_policy(),
                ip_restriction: args.fields.ip_restriction(),
                visibility: args.visibility,
                grace_period: args.grace_period,
            };
            let path = format!("/v2alpha1/admin/issuedApiKeys/{}:rotate", args.id.key_id);
            print(Shape::Rotated, api.post(&path, &request)?)?;
        }
        KeysCommand::Revoke(args) => {
            let request = RevokeRequest { reason: Some(args.reason), description: args.description };
            api.post(&format!("{}:revoke", key_path(&args.id.key_id)), &request)?;
            print(Shape::Done(format!("revoked {}", args.id.key_id)), None)?;
        }
        KeysCommand::Delete(id) => {
            api.delete(&key_path(&id.key_id))?;
            print(Shape::Done(format!("deleted {}", id.key_id)), None)?;
        }
        KeysCommand::Verify(args) => {
            let request = VerifyRequest {
                credential: Some(args.credential.read()?),
                expected_audiences: (!args.audiences.is_empty()).then_some(args.audiences),
            };
            let answer = api.post("/v2alpha1/admin/apiKeys:verify", &request)?;
            let valid = answer.as_ref().and_then(|a| a["is_valid"].as_bool()).unwrap_or(false);
            print(Shape::Verify, answer)?;
            return Ok(valid);
        }
        KeysCommand::DeriveToken(args) => {
            let request = DeriveRequest {
                credential: Some(args.credential.read()?),
                algorithm: args.algorithm,
                scopes: (!args.scopes.is_empty()).then_some(args.scopes),
                ttl: args.ttl,
                custom_claims: args.claims,
                audiences: (!args.audiences.is_empty()).then_some(args.audiences),
            };
            print(Shape::Derived, api.post("/v2alpha1/admin/apiKeys:derive", &request)?)?;
        }
        KeysCommand::SelfRevoke(args) => {
            let request = SelfRevokeRequest { credential: Some(args.credential.read()?), reason: Some(args.reason) };
            let answer = api.post("/v2alpha1/apiKeys:selfRevoke", &request)?;
            print(Shape::Done("revoked".into()), answer)?;
        }
    }
    Ok(true)
}

/// The resource path of a key; the collection follows from the id's shape (imported key ids are
/// 64 hex digits, issued ones UUIDs).
fn key_path(key_id: &str) -> String {
    let imported = key_id.len() == 64 && key_id.bytes().all(|b| b.is_ascii_hexdigit());
    let collection = if imported { "importedApiKeys" } else { "issuedApiKeys" };
    format!("/v2alpha1/admin/{collection}/{key_id}")
}

/// A key id goes into the URL path, so it may only hold what ids are made of.
fn key_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("expected a key id: a UUID, or 64 hex digits for an imported key".into());
    }
    Ok(s.to_owned())
}

/// `--metadata` / `--claims`: a JSON object.
fn json_object(s: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(s) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object, e.g. '{\"env\": \"prod\"}'".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// A wire enum from its short name (`key-compromise`) or its full name
/// (`REVOCATION_REASON_KEY_COMPROMISE`); UNSPECIFIED is never a choice.
fn wire_name<T: PartialEq + Default>(s: &str, prefix: &str, from_name: fn(&str) -> Option<T>) -> Option<T> {
    let upper = s.trim().to_ascii_uppercase().replace('-', "_");
    let full = if upper.starts_with(prefix) { upper } else { format!("{prefix}{upper}") };
    from_name(&full).filter(|v| *v != T::default())
}

fn visibility(s: &str) -> Result<Visibility, String> {
    wire_name(s, "KEY_VISIBILITY_", Visibility::from_name).ok_or_else(|| "expected secret or public".into())
}

fn revocation_reason(s: &str) -> Result<RevocationReason, String> {
    wire_name(s, "REVOCATION_REASON_", RevocationReason::from_name)
        .ok_or_else(|| "expected key-compromise, affiliation-changed, superseded or privilege-withdrawn".into())
}

fn algorithm(s: &str) -> Result<TokenAlgorithm, String> {
    wire_name(s, "TOKEN_ALGORITHM_", TokenAlgorithm::from_name).ok_or_else(|| "expected jwt or macaroon".into())
}

fn status(s: &str) -> Result<KeyStatus, String> {
    wire_name(s, "KEY_STATUS_", KeyStatus::from_name).ok_or_else(|| "expected active, revoked or expired".into())
}

/// `--expire-time` as the ttl from now, rounded up to whole seconds.
fn ttl_until(at: &str) -> Result<WireDuration, Error> {
    let until = common::clock::parse_rfc3339(at).ok_or_else(|| {
        Error::Usage(format!("invalid --expire-time {at:?}: expected RFC 3339, e.g. 2030-01-01T00:00:00Z"))
    })?;
    let left = until.saturating_sub(common::clock::now());
    if left <= 0 {
        return Err(Error::Usage(format!("--expire-time {at} is not in the future")));
    }
    let secs = (left as u64).div_ceil(common::clock::NANOS_PER_SEC as u64);
    Ok(WireDuration { negative: false, value: std::time::Duration::from_secs(secs) })
}

/// Most bytes read from stdin for one key (the server takes at most 8192).
const MAX_STDIN_KEY: u64 = 64 * 1024;

/// A key from stdin: its first line, without surrounding whitespace.
fn read_stdin_line() -> Result<String, Error> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_STDIN_KEY)
        .read_to_string(&mut text)
        .map_err(|e| Error::Usage(format!("cannot read the key from stdin: {e}")))?;
    let key = text.lines().next().unwrap_or("").trim();
    if key.is_empty() {
        return Err(Error::Usage("no key on stdin".into()));
    }
    Ok(key.to_owned())
}

/// A batch-import file: the request object, or the bare array of import requests.
fn batch_file(path: &PathBuf) -> Result<BatchImportRequest, Error> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    // serde's message could quote a raw key from the file: report the position only.
    let invalid = |e: serde_json::Error| {
        Error::Usage(format!(
            "{}: not a batch import request (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        ))
    };
    match serde_json::from_str::<Value>(&text).map_err(invalid)? {
        Value::Array(items) => {
            Ok(BatchImportRequest { requests: Some(serde_json::from_value(Value::Array(items)).map_err(invalid)?) })
        }
        other => serde_json::from_value(other).map_err(invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names() {
        assert_eq!(revocation_reason("key-compromise"), Ok(RevocationReason::KeyCompromise));
        assert_eq!(revocation_reason("REVOCATION_REASON_SUPERSEDED"), Ok(RevocationReason::Superseded));
        assert_eq!(revocation_reason("privilege_withdrawn"), Ok(RevocationReason::PrivilegeWithdrawn));
        assert!(revocation_reason("unspecified").is_err());
        assert!(revocation_reason("bored").is_err());
        assert_eq!(visibility("public"), Ok(Visibility::Public));
        assert_eq!(status("Revoked"), Ok(KeyStatus::Revoked));
        assert_eq!(algorithm("macaroon"), Ok(TokenAlgorithm::Macaroon));
        assert!(algorithm("").is_err());
    }

    #[test]
    fn key_ids_choose_the_collection_and_stay_in_the_path() {
        let uuid = "8d1c1d6e-2d7a-4a4e-9d53-3a3e1f0b9c11";
        assert_eq!(key_path(uuid), format!("/v2alpha1/admin/issuedApiKeys/{uuid}"));
        let hex = "ab".repeat(32);
        assert_eq!(key_path(&hex), format!("/v2alpha1/admin/importedApiKeys/{hex}"));
        assert!(key_id(uuid).is_ok());
        for bad in ["", "a/b", "a:revoke", "a?b", "../x", &"a".repeat(65)] {
            assert!(key_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_objects_only() {
        assert_eq!(json_object(r#"{"a": 1}"#).unwrap()["a"], 1);
        assert!(json_object("[1]").is_err());
        assert!(json_object("{").is_err());
    }

    #[test]
    fn expire_time_becomes_a_ttl() {
        let in_a_day = common::clock::format_rfc3339(common::clock::now() + 86_400 * common::clock::NANOS_PER_SEC);
        let ttl = ttl_until(&in_a_day).unwrap();
        assert!((86_399..=86_400).contains(&ttl.value.as_secs()), "{ttl:?}");
        assert!(matches!(ttl_until("2000-01-01T00:00:00Z"), Err(Error::Usage(_))));
        assert!(matches!(ttl_until("tomorrow"), Err(Error::Usage(_))));
    }
}
