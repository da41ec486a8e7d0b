//! Loading policies: parse, validate and compile.
//!
//! `cargo bench --bench load`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_policy::Policy;
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
    g.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
