//! What the guard adds to a tool call: a real rmcp client calling a server over the in-memory
//! transport, once unguarded and once guarded (allowed call, one limit).
//!
//! `cargo bench -p mcp-policy-rmcp`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, NumberOrString, ProtocolVersion,
};
use rmcp::service::RequestContext;

const POLICY: &str = r#"{"version": "1", "default": "deny", "tools": {
    "list_clusters": {"limits": [{"counter": "c", "window": "minute", "max": 9007199254740992}]}}}"#;

fn guard(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let unguarded = rt.block_on(support::connect_with(None, None, ProtocolVersion::V_2025_11_25));
    let guarded =
        rt.block_on(support::connect_with(Some(POLICY), None, ProtocolVersion::V_2025_11_25));
    let mut params = CallToolRequestParams::new("list_clusters");
    params.arguments = serde_json::json!({"limit": 3}).as_object().cloned();

    let mut g = c.benchmark_group("rmcp");
    for (name, connected) in [("unguarded_call", &unguarded), ("guarded_call", &guarded)] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let r = connected.client.call_tool(params.clone()).await.unwrap();
                assert_ne!(r.is_error, Some(true));
                black_box(r)
            })
        });
    }

    // The guard alone, without the transport: `PolicyGuard::call_tool` with a dispatch that
    // answers at once, against calling that dispatch directly.
    let dispatch = |request: CallToolRequestParams, _context| async move {
        Ok::<_, mcp_policy_rmcp::DispatchError>(CallToolResult::success(vec![ContentBlock::text(
            request.name.to_string(),
        )]))
    };
    let context =
        || RequestContext::new(NumberOrString::Number(1), guarded.server_peer.clone().unwrap());
    let policy_guard = guarded.server.guard.clone().unwrap();
    g.bench_function("dispatch_alone", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(dispatch(params.clone(), context()).await.unwrap()) })
    });
    g.bench_function("guard_and_dispatch", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(policy_guard.call_tool(params.clone(), context(), dispatch).await.unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, guard);
criterion_main!(benches);
