//! Helpers shared by the `pv` binary's integration tests (each test file is its own crate and
//! includes this module with `mod common;`).
#![allow(dead_code)] // each test crate uses only some of them

use std::path::Path;
use std::process::{Command, Output};

pub mod mini;

/// Run the `pv` binary in `cwd` without colours.
pub fn pv(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pv"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pv")
}

/// The text of the valid demo contract (tests/fixtures/rules/valid/demo-v1.yaml).
pub fn valid_contract() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules/valid/demo-v1.yaml"),
    )
    .expect("valid fixture")
}
