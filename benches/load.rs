//! Loading policies: parse, validate and compile.
//!
//! `cargo bench --bench load`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use criterion::{BatchSize, Criterion, criterion_group};
use mcp_policy::{Evaluator, Policy, ToolCall};
use serde_json::json;
use std::hint::black_box;

fn load(c: &mut Criterion) {
    let seed = include_str!("../examples/seed-policy.json");
    let databricks = include_str!("../examples/databricks-policy.json");
    let big = support::big_policy(1 << 20, 10);
    let regex_heavy = support::big_policy(1 << 20, 1);
    for (name, doc) in [("generated_1mb", &big), ("generated_1mb_regex_every_tool", &regex_heavy)] {
        let tools = Policy::from_json_str(doc).unwrap().document().tools.len();
        eprintln!("{name}: {} bytes, {tools} tools", doc.len());
    }
    let mut g = c.benchmark_group("load");
    g.bench_function("seed", |b| b.iter(|| Policy::from_json_str(black_box(seed)).unwrap()));
    g.bench_function("databricks_example", |b| {
        b.iter(|| Policy::from_json_str(black_box(databricks)).unwrap())
    });
    g.sample_size(20);
    g.bench_function("generated_1mb", |b| {
        b.iter_with_large_drop(|| Policy::from_json_str(black_box(&big)).unwrap())
    });
    g.bench_function("generated_1mb_regex_every_tool", |b| {
        b.iter_with_large_drop(|| Policy::from_json_str(black_box(&regex_heavy)).unwrap())
    });
    // For comparison in the same run (the machine is shared): what compiling those 1,000
    // regexes eagerly costs, as the loader did before they were compiled on first use.
    let patterns: Vec<String> =
        (0..1000).map(|i| format!("(?i)\\b(drop|truncate|t{i})\\b")).collect();
    g.bench_function("regex_crate_compile_1000", |b| {
        b.iter_with_large_drop(|| {
            patterns
                .iter()
                .map(|p| {
                    regex::RegexBuilder::new(p).size_limit(1 << 20).nest_limit(64).build().unwrap()
                })
                .collect::<Vec<_>>()
        })
    });
    g.finish();

    // A regex is compiled at its first use: the first evaluation of a tool with a regex of its
    // own pays for it (each iteration gets a freshly loaded policy, not timed), the next ones
    // do not. The regex is the one every tool of the 1 MB policy above has.
    let one_regex = r#"{"version": "1", "default": "deny", "tools": {"tool_00999": {"deny_if": [
        {"conditions": [{"path": "args.s", "op": "regex", "value": "(?i)\\b(drop|truncate|t999)\\b"}]}]}}}"#;
    let args = json!({"s": "select * from jobs where name = 'nightly'"});
    let mut g = c.benchmark_group("regex_evaluation");
    g.bench_function("first", |b| {
        b.iter_batched(
            || Evaluator::new(Policy::from_json_str(one_regex).unwrap()),
            |evaluator| {
                let call = ToolCall::new("tool_00999").with_arguments(&args);
                assert!(evaluator.evaluate(black_box(&call)).is_allowed());
                evaluator
            },
            BatchSize::PerIteration,
        )
    });
    let evaluator = Evaluator::new(Policy::from_json_str(one_regex).unwrap());
    g.bench_function("later", |b| {
        b.iter(|| {
            let call = ToolCall::new("tool_00999").with_arguments(&args);
            evaluator.evaluate(black_box(&call)).is_allowed()
        })
    });
    g.finish();
}

criterion_group!(benches, load);

/// Instruction counts: with `MCP_POLICY_BENCH_COUNT=CASE:N` the bench loads CASE's policy `N`
/// times and does nothing else, for `valgrind --tool=callgrind` (run it with N and with 0; the
/// difference over N is the cost of one load). CASE is `generated_1mb` (110 regexes) or
/// `regex_every_tool` (1,000 regexes).
fn count(spec: &str) {
    let (case, n) = spec.split_once(':').expect("CASE:N");
    let n: u64 = n.parse().expect("N is a number");
    let doc = match case {
        "generated_1mb" => support::big_policy(1 << 20, 10),
        "regex_every_tool" => support::big_policy(1 << 20, 1),
        other => panic!("unknown case `{other}`"),
    };
    for _ in 0..n {
        drop(black_box(Policy::from_json_str(black_box(&doc)).unwrap()));
    }
}

fn main() {
    if let Ok(spec) = std::env::var("MCP_POLICY_BENCH_COUNT") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
