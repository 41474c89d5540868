//! Shared vocabulary of both planes.
