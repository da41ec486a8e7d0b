//! Replays the fuzz corpora (fuzz/corpus/TARGET/*) through the fuzz harnesses on the stable
//! toolchain, so every input the fuzzers kept stays a regression test.
//!
//! A debug build replays every 10th file (by name, so the sample is the same on every run);
//! `MCP_POLICY_FULL_CORPUS=1` replays all of them, as `.ci/run` does in a release build
//! (`cargo test --release --test fuzz_corpus`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let full = std::env::var_os("MCP_POLICY_FULL_CORPUS").is_some_and(|v| v == "1");
    let step = if full { 1 } else { 10 };
    let mut n = 0;
    for path in paths.into_iter().step_by(step) {
        let data = std::fs::read(&path).unwrap();
        if std::env::var_os("FUZZ_CORPUS_VERBOSE").is_some() {
            eprintln!("replaying {}", path.display());
        }
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{target}: {} broke an invariant", path.display());
        n += 1;
    }
    assert!(n > 0, "no corpus for {target}");
}

#[test]
fn load_corpus() {
    replay("load", harness::load);
}

#[test]
fn condition_corpus() {
    replay("condition", harness::condition);
}

#[test]
fn evaluate_corpus() {
    replay("evaluate", harness::evaluate);
}
