//! The tool-list lint (`mcp_policy::lint`, what `mcp-policy validate --tools` runs) on a
//! 20,000-rule policy and a matching tool list of 20,000 tools, of which every 100th rule names
//! no tool and every 50th key has a Cyrillic look-alike.
//!
//! `cargo bench --bench lint`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_policy::{Policy, ToolInfo, lint};
use std::hint::black_box;

const RULES: usize = 20_000;

fn policy_and_tools() -> (String, Vec<ToolInfo>) {
    let mut text = String::from(
        "{\"version\": \"1\", \"default\": \"allow\",\n\"hide\": [\"dbfs_*\"],\n\"tools\": {\n",
    );
    let mut tools = Vec::with_capacity(RULES);
    for i in 0..RULES {
        let comma = if i + 1 == RULES { "" } else { "," };
        let key =
            if i % 50 == 25 { format!("d\u{0435}lete_{i:05}") } else { format!("tool_{i:05}") };
        text.push_str(&format!(
            "  \"{key}\": {{\"limits\": [{{\"counter\": \"c{i}\", \"window\": \"minute\", \"max\": 10}}]}}{comma}\n"
        ));
        if i % 100 != 0 {
            let info = ToolInfo::new(format!("tool_{i:05}"));
            tools.push(if i % 7 == 0 {
                info.with_risk("destructive (from its name)")
            } else {
                info
            });
        }
    }
    text.push_str("}}\n");
    (text, tools)
}

fn bench(c: &mut Criterion) {
    let (text, tools) = policy_and_tools();
    let policy = Policy::from_json_str(&text).unwrap();
    eprintln!("{} bytes, {} rules, {} warnings", text.len(), RULES, lint(&policy, &tools).len());
    let mut g = c.benchmark_group("lint");
    g.sample_size(10);
    g.bench_function("lint_20000_rules", |b| {
        b.iter(|| lint(black_box(&policy), black_box(&tools)))
    });
    g.bench_function("load_and_lint_20000_rules", |b| {
        b.iter(|| {
            let policy = Policy::from_json_str(black_box(&text)).unwrap();
            lint(&policy, &tools)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
