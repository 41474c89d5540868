//! Black-box integration tests: the real `talos` binary over real sockets.

mod harness;
mod planes;
mod sdk;
mod walkthrough;
