//! `talos keys`: the command-line client of a running server's `v2alpha1` API. It speaks the
//! server's own request and response models (`common::model`), one blocking HTTP call per
//! command, and promises scripts stable exit codes ([`exit`]).
//!
//! It logs nothing. Raw keys reach it from stdin or `TALOS_API_KEY` (arguments show in `ps`) and
//! are only ever sent to the endpoint; the one secret it prints is the one asked for, that of an
//! issued or rotated key.

mod api;
mod command;
mod output;

use std::process::ExitCode;

use common::error::ErrorStatus;

pub use command::Keys;

/// The exit codes of `talos keys` (also listed in its `--help`).
pub mod exit {
    /// Success; for verify, the key is valid.
    pub const OK: u8 = 0;
    /// A negative answer: verify found the key invalid, some batch-import items failed; or the
    /// output could not be written.
    pub const NEGATIVE: u8 = 1;
    /// Bad usage: flags (clap exits with 2 too), a missing key, an invalid endpoint.
    pub const USAGE: u8 = 2;
    /// The server answered with an error.
    pub const API: u8 = 3;
    /// The server could not be reached.
    pub const CONNECTION: u8 = 4;
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    /// The server's error envelope.
    #[error("{}", api_message(.0))]
    Api(ErrorStatus),
    /// An answer that is neither the expected model nor an error envelope.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    #[error("cannot reach {0}")]
    Connection(String),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Api(_) | Error::Unexpected(_) => exit::API,
            Error::Connection(_) => exit::CONNECTION,
            Error::Output(_) => exit::NEGATIVE,
        }
    }
}

/// `404 NOT_FOUND: API key not found (API_KEY_NOT_FOUND)`.
fn api_message(e: &ErrorStatus) -> String {
    let mut text = format!("{} {}: {}", e.code, e.status, e.message);
    if let Some(reason) = e.reason() {
        text.push_str(&format!(" ({reason})"));
    }
    text
}

/// Runs `talos keys …`; errors go to stderr.
pub fn run(keys: Keys) -> ExitCode {
    match command::execute(keys) {
        Ok(true) => ExitCode::from(exit::OK),
        Ok(false) => ExitCode::from(exit::NEGATIVE),
        // A closed stdout (`talos keys list | head`) is not worth a message.
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(exit::NEGATIVE),
        Err(e) => {
            eprintln!("talos: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
