//! Any bytes as the JSON body of a verify or batch verify request, read into the request models
//! the admin plane uses (talos-api.md §4.8). Wrong types and malformed JSON must come back as
//! errors (a 400 upstream), never as a panic or a stack overflow.
#![no_main]

use common::model::{BatchVerifyRequest, VerifyRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<VerifyRequest>(data);
    let _ = serde_json::from_slice::<BatchVerifyRequest>(data);
});
