//! HTTP throughput: calls per second, and p50/p99 per call, at 1, 16 and 64 concurrent MCP
//! sessions, each calling a trivial `echo` tool in a loop:
//!
//! - `direct`: rmcp's own streamable-HTTP server (in this process), no gateway: the reference;
//! - the `mcp-policy-gateway` binary (`--listen`), the policy allowing `echo` with a limit high
//!   enough never to refuse, in front of a trivial upstream (tests/trivial: it answers at once,
//!   so that what is measured is the gateway):
//!   - `gateway, stdio upstream`: the trivial server as a child process (this executable
//!     started with `trivial-upstream`), one per session as the gateway runs it;
//!   - `gateway, HTTP upstream`: the trivial server over streamable HTTP (plain JSON answers,
//!     in this process);
//!   - `gateway, HTTP upstream, --threads 2`: the same with two worker threads (the default
//!     is half the cores: one on a 2-core machine);
//! - `gateway in front of rmcp`: the gateway in front of the `direct` server itself (`--upstream
//!   URL`): every call is two of rmcp's HTTP exchanges in a row, so this row cannot reach the
//!   `direct` row's throughput with one session; it shows what the gateway adds to rmcp.
//!
//! Both are driven by the same raw HTTP client (reqwest; it accepts JSON and SSE answers: rmcp
//! answers on SSE streams, the gateway as JSON when it can), for a fixed time per
//! configuration (1 s of warm-up, then `MCP_POLICY_BENCH_SECS`, default 5 s), so that the whole
//! run takes about a minute:
//!
//! `cargo bench -p mcp-policy-gateway --bench http`
//!
//! Memory per idle session: `cargo bench -p mcp-policy-gateway --bench http -- memory [N]` opens
//! N (default 1000) initialized sessions against the gateway (upstream: the same rmcp server)
//! and reads the gateway's `VmRSS` from `/proc/PID/status` before and after.
//!
//! `MCP_POLICY_BENCH_ROWS=TEXT` keeps only the rows whose name contains `TEXT` (and `direct`).
//!
//! `MCP_POLICY_BENCH_BASELINE_BIN=PATH` adds a `baseline` row: another build of the gateway
//! binary, measured in the same run (before/after a change on a busy machine).
//!
//! Figures in docs/performance.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "../tests/http_support/mod.rs"]
mod http_support;
#[path = "../tests/trivial/mod.rs"]
mod trivial;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_support::{Raw, gateway, proc_cpu_time, write};
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
    serve_loopback(axum::Router::new().nest_service("/mcp", service)).await
}

/// Serves `app` on a free loopback port, in this process; its `/mcp` URL.
async fn serve_loopback(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // As the gateway does: without it every answer waits ~40 ms for a delayed ACK, and the
    // baseline would measure that rather than the server.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/mcp")
}

/// The trivial server (tests/trivial) over streamable HTTP: every answer plain JSON, a session
/// id given on `initialize` and never checked, no GET stream.
async fn trivial_http_server() -> String {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    async fn post(body: axum::body::Bytes) -> axum::response::Response {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let Some(reply) = trivial::answer(&msg) else {
            return StatusCode::ACCEPTED.into_response();
        };
        let mut response = axum::Json(reply).into_response();
        if msg["method"] == "initialize" {
            response.headers_mut().insert("mcp-session-id", "trivial".parse().unwrap());
        }
        response
    }
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(post)
            .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
            .delete(|| async { StatusCode::OK }),
    );
    serve_loopback(app).await
}

async fn sessions(url: &str, n: usize) -> Vec<Arc<Raw>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut c = Raw {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            token: None,
            session: None,
            version: "2025-06-18".to_owned(),
        };
        c.initialize().await.unwrap();
        out.push(Arc::new(c));
    }
    out
}

/// Each session calls `echo` in a loop until `until`; every call's latency.
async fn run(clients: &[Arc<Raw>], until: Instant) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for c in clients {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut id = 0i64;
            while Instant::now() < until {
                id += 1;
                let t = Instant::now();
                let r = c.call(id, "echo", json!({"message": "hi"})).await;
                assert_ne!(r["isError"], true);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn pct(lat: &[Duration], q: f64) -> Duration {
    lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)]
}

fn policy(dir: &std::path::Path) -> std::path::PathBuf {
    write(
        dir,
        "policy.json",
        r#"{"version": "1", "default": "deny", "tools": {"echo": {
            "limits": [{"counter": "echo", "window": "second", "max": 1000000000}]}}}"#,
    )
}

fn throughput(rt: &tokio::runtime::Runtime) {
    let secs: f64 =
        std::env::var("MCP_POLICY_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let direct_url = rt.block_on(rmcp_server());
    let trivial_url = rt.block_on(trivial_http_server());
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let sessions_max = ["--max-sessions", "256"];
    let this = std::env::current_exe().unwrap();
    let this_str = this.to_str().unwrap().to_owned();
    let stdio_upstream = [this.into_os_string(), "trivial-upstream".into()];
    let gw_stdio = rt.block_on(gateway(&policy, &sessions_max, &stdio_upstream));
    let gw_http =
        rt.block_on(gateway(&policy, &["--upstream", &trivial_url, "--max-sessions", "256"], &[]));
    // The same with two worker threads (the default on this project's 2-core VM is one).
    let gw_http2 = rt.block_on(gateway(
        &policy,
        &["--upstream", &trivial_url, "--max-sessions", "256", "--threads", "2"],
        &[],
    ));
    // Without the spin before the thread sleeps (the default is `--spin 200`).
    let gw_http_nospin = rt.block_on(gateway(
        &policy,
        &["--upstream", &trivial_url, "--max-sessions", "256", "--spin", "0"],
        &[],
    ));
    let gw_rmcp =
        rt.block_on(gateway(&policy, &["--upstream", &direct_url, "--max-sessions", "256"], &[]));
    // Another build of the gateway (`MCP_POLICY_BENCH_BASELINE_BIN`), measured in the same run
    // in front of both trivial upstreams: the before/after ratio of a change on a machine too
    // busy for figures taken apart.
    let baseline = std::env::var_os("MCP_POLICY_BENCH_BASELINE_BIN").map(|bin| {
        let http = ["--upstream", &trivial_url, "--max-sessions", "256"];
        let stdio = ["--max-sessions", "256", "--", &this_str, "trivial-upstream"];
        (
            rt.block_on(gateway_bin(&bin, &policy, &http)),
            rt.block_on(gateway_bin(&bin, &policy, &stdio)),
        )
    });
    let mut servers = vec![
        ("direct (rmcp's server)", direct_url.clone(), None),
        ("gateway, stdio upstream", gw_stdio.mcp(), gw_stdio.child.id()),
        ("gateway, HTTP upstream", gw_http.mcp(), gw_http.child.id()),
        ("gateway, HTTP upstream, `--threads 2`", gw_http2.mcp(), gw_http2.child.id()),
        ("gateway, HTTP upstream, `--spin 0`", gw_http_nospin.mcp(), gw_http_nospin.child.id()),
        ("gateway in front of rmcp", gw_rmcp.mcp(), gw_rmcp.child.id()),
    ];
    if let Some((http, stdio)) = &baseline {
        servers.push(("baseline build, HTTP upstream", http.mcp(), http.child.id()));
        servers.push(("baseline build, stdio upstream", stdio.mcp(), stdio.child.id()));
    }
    // `MCP_POLICY_BENCH_ROWS=TEXT`: only the rows whose name contains TEXT (and `direct`).
    if let Ok(only) = std::env::var("MCP_POLICY_BENCH_ROWS") {
        servers.retain(|(name, _, _)| name.starts_with("direct") || name.contains(only.as_str()));
    }
    println!(
        "| sessions | server | calls/s | p50 | p99 | / direct | CPU/call: gateway | bench (client + rmcp) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in [1usize, 16, 64] {
        let mut direct_rate = 0.0;
        for (name, url, pid) in &servers {
            let name = *name;
            let clients = rt.block_on(sessions(url, n));
            rt.block_on(run(&clients, Instant::now() + Duration::from_secs(1)));
            let cpu_gw = pid.map(proc_cpu_time);
            let cpu_self = proc_cpu_time(std::process::id());
            let start = Instant::now();
            let mut lat = rt.block_on(run(&clients, start + Duration::from_secs_f64(secs)));
            let elapsed = start.elapsed().as_secs_f64();
            let calls = u32::try_from(lat.len().max(1)).unwrap();
            let cpu_self = (proc_cpu_time(std::process::id()) - cpu_self) / calls;
            let cpu_gw = pid.zip(cpu_gw).map(|(p, c)| (proc_cpu_time(p) - c) / calls);
            lat.sort();
            let rate = lat.len() as f64 / elapsed;
            let ratio = if name.starts_with("direct") {
                direct_rate = rate;
                String::new()
            } else {
                format!("{:.2}x", rate / direct_rate)
            };
            println!(
                "| {n} | {name} | {rate:.0} | {:.0} µs | {:.0} µs | {ratio} | {} | {:.0} µs |",
                pct(&lat, 0.50).as_secs_f64() * 1e6,
                pct(&lat, 0.99).as_secs_f64() * 1e6,
                cpu_gw.map_or(String::new(), |c| format!("{:.0} µs", c.as_secs_f64() * 1e6)),
                cpu_self.as_secs_f64() * 1e6,
            );
        }
    }
    drop((gw_stdio, gw_http, gw_http2, gw_http_nospin, gw_rmcp, baseline));
}

/// Starts the gateway binary `bin` (see `gateway`).
async fn gateway_bin(
    bin: &std::ffi::OsStr,
    policy: &std::path::Path,
    extra: &[&str],
) -> http_support::Gateway {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--policy").arg(policy).args(["--listen", "127.0.0.1:0"]).args(extra);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next_line().await.unwrap().expect("the baseline gateway exited");
        if let Some(rest) = line.split("serving MCP at ").nth(1) {
            break rest.trim_end_matches("/mcp").to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    http_support::Gateway { child, base, stderr: Default::default() }
}

fn rss_kib(pid: u32) -> u64 {
    http_support::proc_status_kib(pid, "VmRSS")
}

fn memory(rt: &tokio::runtime::Runtime, n: usize) {
    let direct_url = rt.block_on(rmcp_server());
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let max = (n + 16).to_string();
    let gw =
        rt.block_on(gateway(&policy, &["--upstream", &direct_url, "--max-sessions", &max], &[]));
    let pid = gw.child.id().unwrap();
    // One session first, so that what every session shares (pools, the tool view) is counted
    // in the baseline.
    let first = rt.block_on(sessions(&gw.mcp(), 1));
    rt.block_on(first[0].call(1, "echo", json!({"message": "hi"})));
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(pid);
    let many = rt.block_on(sessions(&gw.mcp(), n));
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before) as f64 * 1024.0) / n as f64;
    println!("| idle sessions | gateway VmRSS before | after | per session |");
    println!("|---|---|---|---|");
    println!(
        "| {n} | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per / 1024.0
    );
    drop(many);
    drop(first);
    drop(gw);
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("trivial-upstream") {
        trivial::stdio_upstream();
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    match args.first().map(String::as_str) {
        Some("memory") => {
            let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
            memory(&rt, n);
        }
        _ => throughput(&rt),
    }
}
