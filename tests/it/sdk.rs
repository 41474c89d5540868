//! The official Ory SDK (`ory-client`, pinned in `tests/sdk/requirements.txt`) against the real
//! binary, unchanged: `tests/sdk/run.sh` makes a venv, starts talos, and runs pytest. This test
//! fails (never skips) when Python, pip or the package index is unavailable.

use std::process::Command;

#[test]
fn ory_client_sdk_works_unchanged() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/tests/sdk/run.sh"))
        .arg(crate::harness::binary())
        .current_dir(root)
        .output()
        .expect("bash runs tests/sdk/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SDK tests failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed"), "pytest ran no test:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("skipped"), "SDK tests must not skip:\n{stdout}");
}
