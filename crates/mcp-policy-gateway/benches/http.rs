//! HTTP throughput: calls per second, and p50/p99 per call, at 1, 16 and 64 concurrent MCP
//! sessions, each calling a trivial `echo` tool in a loop:
//!
//! - `direct`: rmcp's own streamable-HTTP server (in this process), no gateway;
//! - `gateway`: the `mcp-policy-gateway` binary (`--listen`) in front of that same server
//!   (`--upstream URL`), the policy allowing `echo` with a limit high enough never to refuse.
//!
//! Both are driven by the same raw HTTP client (reqwest, SSE answers). Run with
//! `cargo bench -p mcp-policy-gateway --bench http`; the percentiles are printed after each
//! group. Figures in docs/performance.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "../tests/http_support/mod.rs"]
mod http_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_support::{Raw, gateway, write};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;

#[derive(Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object", "properties": {"message": {"type": "string"}}});
        let tool = Tool::new("echo", "Echo", Arc::new(schema.as_object().cloned().unwrap()));
        Ok(ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let msg = request.arguments.and_then(|a| a.get("message").cloned()).unwrap_or_default();
        Ok(CallToolResult::success(vec![ContentBlock::text(msg.to_string())]).into())
    }
}

async fn rmcp_server() -> String {
    let service = StreamableHttpService::new(
        || Ok(Echo),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/mcp")
}

async fn sessions(url: &str, n: usize) -> Vec<Arc<Raw>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut c =
            Raw { http: reqwest::Client::new(), url: url.to_owned(), token: None, session: None };
        c.initialize().await.unwrap();
        out.push(Arc::new(c));
    }
    out
}

/// `iters` calls spread over the sessions, concurrently; the elapsed time, and each call's
/// latency appended to `latencies`.
async fn run(clients: &[Arc<Raw>], iters: u64, latencies: &mut Vec<Duration>) -> Duration {
    let per = iters.div_ceil(clients.len() as u64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per as usize);
            for i in 0..per {
                let t = Instant::now();
                let r = c.call(i as i64 + 1, "echo", json!({"message": "hi"})).await;
                assert_ne!(r["isError"], true);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    start.elapsed()
}

fn percentiles(name: &str, lat: &mut [Duration]) {
    if lat.is_empty() {
        return;
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    eprintln!("{name}: p50 {:?} p99 {:?} over {} calls", p(0.50), p(0.99), lat.len());
}

fn bench(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let direct_url = rt.block_on(rmcp_server());
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.json",
        r#"{"version": "1", "default": "deny", "tools": {"echo": {
            "limits": [{"counter": "echo", "window": "second", "max": 1000000000}]}}}"#,
    );
    let gw =
        rt.block_on(gateway(&policy, &["--upstream", &direct_url, "--max-sessions", "128"], &[]));
    let gw_url = gw.mcp();
    for n in [1usize, 16, 64] {
        let mut group = c.benchmark_group(format!("http_{n}_sessions"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(5));
        for (name, url) in [("direct", &direct_url), ("gateway", &gw_url)] {
            let clients = rt.block_on(sessions(url, n));
            let mut lat = Vec::new();
            group.bench_function(name, |b| {
                b.iter_custom(|iters| rt.block_on(run(&clients, iters.max(n as u64), &mut lat)));
            });
            percentiles(&format!("http_{n}_sessions/{name}"), &mut lat);
        }
        group.finish();
    }
    drop(gw);
}

criterion_group!(benches, bench);
criterion_main!(benches);
