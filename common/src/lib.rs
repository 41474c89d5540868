//! The vocabulary both planes share: the key format and its crypto, configuration, the JSON
//! models and the error envelope, the store trait with its backends, and the verification
//! snapshot.
//!
//! No async runtime lives here: the admin plane wraps these calls in tokio, the data plane calls
//! only the allocation-free parts (`key`, `verify`, `snapshot` lookups) on its workers.

pub mod clock;
pub mod config;
pub mod duration;
pub mod error;
pub mod key;
pub mod last_used;
pub mod macaroon;
pub mod metrics;
pub mod model;
pub mod page_token;
pub mod self_revoke;
pub mod snapshot;
pub mod store;
pub mod token;
pub mod verify;
