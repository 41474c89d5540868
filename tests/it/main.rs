//! Black-box integration tests: the real `talos` binary over real sockets.

mod cli;
mod config_errors;
mod conformance;
mod crash;
mod derive;
mod framing;
mod harness;
mod hygiene;
mod manage;
mod metrics;
mod planes;
mod postgres;
mod sdk;
mod walkthrough;
