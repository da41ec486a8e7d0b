//! What reading the two messages of an allowed call costs the relay over stdio: a `tools/call`
//! and its answer read from their lines (`raw::tool_call`, `raw::answer`, the path the relay
//! takes for them) next to the same lines parsed as JSON values (the path it takes for
//! everything else), and the call written on again.
//!
//! `cargo bench -p mcp-policy-gateway --bench raw`

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":12345,"method":"tools/call","params":{"name":"echo","arguments":{"run_id":42}}}"#;
const ANSWER: &[u8] =
    br#"{"jsonrpc":"2.0","id":17,"result":{"content":[{"type":"text","text":"ran"}]}}"#;

fn raw(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw");
    g.bench_function("call_read_from_its_line", |b| {
        b.iter(|| black_box(mcp_policy_gateway::raw::tool_call(black_box(CALL)).unwrap()));
    });
    g.bench_function("call_parsed_as_a_json_value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(CALL)).unwrap()));
    });
    let call = mcp_policy_gateway::raw::tool_call(CALL).unwrap();
    let id = json!(17);
    g.bench_function("call_written_on", |b| b.iter(|| black_box(call.with_id(black_box(&id)))));
    g.bench_function("answer_read_from_its_line", |b| {
        b.iter(|| black_box(mcp_policy_gateway::raw::answer(black_box(ANSWER)).unwrap()));
    });
    g.bench_function("answer_parsed_as_a_json_value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(ANSWER)).unwrap()));
    });
    g.finish();
}

criterion_group!(benches, raw);
criterion_main!(benches);
