//! Integration tests of the PostgreSQL store against a real server: the shared store conformance
//! suite, migrations, concurrency (idempotency across instances, revision order), the listener,
//! and error reporting. Each test works in a schema of its own, so tests run in parallel.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/test` unless `TALOS_TEST_POSTGRES` names
//! another. When it is unreachable every test fails: none is skipped.

mod concurrency;
mod errors;
mod listen;
mod migrate;
mod store;
mod support;
