//! What `talos keys` prints on stdout: the server's JSON (pretty), the same as YAML, or a compact
//! table read from the `common::model` response models. Nothing here writes to stderr.

use std::io::{self, Write};

use common::model::{
    ApiKey, BatchImportResponse, DeriveResponse, IssueResponse, ListResponse, RotateResponse, VerifyResponse,
};
use serde_json::Value;

use crate::Error;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Which table an answer is shown as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// One key (get, update, import).
    Key,
    Issued,
    Rotated,
    List,
    BatchImport,
    Verify,
    Derived,
    /// An answer without content (revoke, delete, self-revoke): this line stands for it.
    Done(String),
}

/// Prints `answer` (`None`: an empty answer) on stdout in `format`.
pub fn print(format: Format, shape: Shape, answer: Option<&Value>) -> Result<(), Error> {
    let empty = Value::Object(Default::default());
    let answer = answer.unwrap_or(&empty);
    let text = match format {
        Format::Json => serde_json::to_string_pretty(answer).expect("a JSON value serialises") + "\n",
        Format::Yaml => serde_norway::to_string(answer).map_err(|e| Error::Output(io::Error::other(e)))?,
        Format::Table => table(shape, answer)?,
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(Error::Output)
}

/// Reads `answer` as the response model `T`.
fn read<T: serde::de::DeserializeOwned>(answer: &Value) -> Result<T, Error> {
    T::deserialize(answer).map_err(|e| Error::Unexpected(format!("cannot read the answer: {e}")))
}

fn table(shape: Shape, answer: &Value) -> Result<String, Error> {
    let mut rows: Vec<(&str, String)> = Vec::new();
    match shape {
        Shape::Key => key_rows(&read::<ApiKey>(answer)?, &mut rows),
        Shape::Issued => {
            let issued: IssueResponse = read(answer)?;
            key_rows(&issued.issued_api_key, &mut rows);
            rows.push(("secret", issued.secret.unwrap_or_else(|| "(not shown again: idempotent replay)".into())));
        }
        Shape::Rotated => {
            let rotated: RotateResponse = read(answer)?;
            key_rows(&rotated.issued_api_key, &mut rows);
            rows.push(("old_key_id", rotated.old_issued_api_key.key_id));
            rows.push(("old_status", rotated.old_issued_api_key.status.as_str().into()));
            rows.push(("secret", rotated.secret));
        }
        Shape::Verify => {
            let verified: VerifyResponse = read(answer)?;
            if !verified.is_valid {
                let code = verified.error_code.unwrap_or_default();
                return Ok(format!("invalid  {code}  {}\n", verified.error_message.unwrap_or_default()));
            }
            rows.push(("valid", "true".into()));
            rows.push(("key_id", verified.key_id));
            push_nonempty(&mut rows, "actor_id", verified.actor_id);
            rows.push(("scopes", verified.scopes.join(",")));
            push_nonempty(&mut rows, "status", verified.status.map(|s| s.as_str().to_owned()).unwrap_or_default());
            push_nonempty(&mut rows, "expire_time", verified.expire_time.unwrap_or_default());
            push_nonempty(&mut rows, "issuer", verified.issuer.unwrap_or_default());
        }
        Shape::Derived => {
            let derived: DeriveResponse = read(answer)?;
            rows.push(("token", derived.token.token));
            rows.push(("expire_time", derived.token.expire_time));
            rows.push(("scopes", derived.token.scopes.join(",")));
            push_nonempty(&mut rows, "audiences", derived.token.audiences.join(","));
        }
        Shape::List => {
            let list: ListResponse = read(answer)?;
            let keys = list.issued_api_keys.or(list.imported_api_keys).unwrap_or_default();
            let mut lines = vec![["KEY_ID", "NAME", "ACTOR_ID", "STATUS", "EXPIRE_TIME", "SCOPES"].map(String::from)];
            lines.extend(keys.iter().map(|k| {
                [
                    k.key_id.clone(),
                    k.name.clone(),
                    k.actor_id.clone(),
                    short_status(k.status.as_str()),
                    k.expire_time.clone(),
                    k.scopes.join(","),
                ]
            }));
            let mut text = columns(&lines);
            if !list.next_page_token.is_empty() {
                text.push_str(&format!("next_page_token: {}\n", list.next_page_token));
            }
            return Ok(text);
        }
        Shape::BatchImport => {
            let batch: BatchImportResponse = read(answer)?;
            let mut lines = vec![["INDEX", "KEY_ID", "ERROR"].map(String::from)];
            lines.extend(batch.results.into_iter().map(|r| {
                let error = match (r.error_code, r.error_message) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (code, message) => code.or(message).unwrap_or_default(),
                };
                [r.index.to_string(), r.imported_api_key.map(|k| k.key_id).unwrap_or_default(), error]
            }));
            let mut text = columns(&lines);
            text.push_str(&format!("imported {}, failed {}\n", batch.success_count, batch.failure_count));
            return Ok(text);
        }
        Shape::Done(line) => return Ok(format!("{line}\n")),
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    Ok(rows.iter().map(|(name, value)| format!("{name:<width$}  {value}").trim_end().to_owned() + "\n").collect())
}

fn push_nonempty<'a>(rows: &mut Vec<(&'a str, String)>, name: &'a str, value: String) {
    if !value.is_empty() {
        rows.push((name, value));
    }
}

/// `KEY_STATUS_ACTIVE` → `ACTIVE`: the column has room for the meaning only.
fn short_status(status: &str) -> String {
    status.strip_prefix("KEY_STATUS_").unwrap_or(status).to_owned()
}

/// One key as `field  value` lines; empty optional fields are left out.
fn key_rows(key: &ApiKey, rows: &mut Vec<(&str, String)>) {
    rows.push(("key_id", key.key_id.clone()));
    push_nonempty(rows, "name", key.name.clone());
    push_nonempty(rows, "actor_id", key.actor_id.clone());
    rows.push(("status", key.status.as_str().into()));
    rows.push(("visibility", key.visibility.as_str().into()));
    rows.push(("scopes", key.scopes.join(",")));
    if !key.metadata.is_empty() {
        rows.push(("metadata", Value::Object(key.metadata.clone()).to_string()));
    }
    rows.push(("create_time", key.create_time.clone()));
    rows.push(("update_time", key.update_time.clone()));
    rows.push(("expire_time", key.expire_time.clone()));
    push_nonempty(rows, "last_used_time", key.last_used_time.clone().unwrap_or_default());
    if let Some(policy) = &key.rate_limit_policy {
        rows.push(("rate_limit_policy", serde_json::to_value(policy).expect("a policy serialises").to_string()));
    }
    if let Some(cidrs) = key.ip_restriction.as_ref().and_then(|r| r.allowed_cidrs.as_ref()) {
        rows.push(("allowed_cidrs", cidrs.join(",")));
    }
    if key.revocation_reason != Default::default() {
        rows.push(("revocation_reason", key.revocation_reason.as_str().into()));
    }
    push_nonempty(rows, "revocation_description", key.revocation_description.clone());
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn columns<const N: usize>(lines: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for line in lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for line in lines {
        let mut row = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i + 1 < N {
                row.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                row.push_str(cell);
            }
        }
        text.push_str(row.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_do_not_pad_the_last() {
        let lines = [["A", "BB"].map(String::from), ["ccc", "d"].map(String::from), ["e", ""].map(String::from)];
        assert_eq!(columns(&lines), "A    BB\nccc  d\ne\n");
    }

    #[test]
    fn verify_tables() {
        let invalid = json!({"is_valid": false, "error_code": "VERIFICATION_ERROR_REVOKED", "error_message": "gone"});
        assert_eq!(table(Shape::Verify, &invalid).unwrap(), "invalid  VERIFICATION_ERROR_REVOKED  gone\n");
        let valid = json!({"is_valid": true, "key_id": "k", "scopes": ["a", "b"], "status": "KEY_STATUS_ACTIVE"});
        assert_eq!(
            table(Shape::Verify, &valid).unwrap(),
            "valid   true\nkey_id  k\nscopes  a,b\nstatus  KEY_STATUS_ACTIVE\n"
        );
    }

    #[test]
    fn an_answer_of_another_shape_is_an_error_not_a_panic() {
        assert!(matches!(table(Shape::Issued, &json!({"nope": 1})), Err(Error::Unexpected(_))));
        assert!(matches!(table(Shape::List, &json!([1, 2])), Err(Error::Unexpected(_))));
    }
}
