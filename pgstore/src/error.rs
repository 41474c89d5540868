//! Driver errors as [`StoreError::Backend`] messages: the whole cause chain (the driver's own
//! `Display` says only "db error"), and never the DSN's password.
//!
//! The driver's messages do not quote the connection string; the server's never echo a password.
//! Connection errors are still scrubbed of the configured password, so that no future driver
//! message can leak it into a log.

use std::error::Error as _;
use std::fmt::Write as _;

use common::store::StoreError;
use postgres::Config;

/// The error and its causes, `outer: inner: innermost`.
pub(crate) fn chain(e: &postgres::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    message
}

/// A failed query or transaction.
/// A lost or refused connection is `Unavailable` (the write did not happen: a 503, retryable);
/// anything the server answered is `Backend`.
pub(crate) fn db(e: postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() && e.code().is_none() && is_io(&e) {
        return StoreError::Unavailable(format!("postgres: {}", chain(&e)));
    }
    StoreError::Backend(format!("postgres: {}", chain(&e)))
}

fn is_io(e: &postgres::Error) -> bool {
    let mut source = e.source();
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A failed connection attempt, with the configured password (raw and percent-encoded) removed.
pub(crate) fn connect_error(config: &Config, e: &postgres::Error) -> StoreError {
    let mut message = chain(e);
    if let Some(password) = config.get_password().map(String::from_utf8_lossy).filter(|p| !p.is_empty()) {
        message = message.replace(password.as_ref(), "<redacted>");
        let encoded: String = password
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
            .collect();
        message = message.replace(&encoded, "<redacted>");
    }
    StoreError::Unavailable(format!("cannot connect to PostgreSQL: {message}"))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn connect_errors_never_carry_the_password() {
        let config = Config::from_str("postgres://talos:s3cr%3Ft@127.0.0.1:1/talos?connect_timeout=2").unwrap();
        let Err(e) = config.connect(postgres::NoTls) else { panic!("nothing listens on port 1") };
        let message = connect_error(&config, &e).to_string();
        assert!(
            message.starts_with("store unavailable: cannot connect to PostgreSQL: error connecting to server"),
            "{message}"
        );
        assert!(!message.contains("s3cr") && !message.contains("%3F"), "{message}");
    }
}
