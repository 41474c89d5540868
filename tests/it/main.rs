//! Black-box integration tests: the real `talos` binary over real sockets.

mod config_errors;
mod crash;
mod derive;
mod framing;
mod harness;
mod hygiene;
mod manage;
mod planes;
mod postgres;
mod sdk;
mod walkthrough;
