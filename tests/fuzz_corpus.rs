//! Replays the fuzz corpora (fuzz/corpus/TARGET/*) through the fuzz harnesses on the stable
//! toolchain, so every input the fuzzers kept stays a regression test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
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
