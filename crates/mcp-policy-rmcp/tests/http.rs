//! Streamable HTTP with bearer tokens: an axum layer verifies the token and puts a typed
//! identity into the request's extensions, the guard reads it from there (no header a client
//! could forge), and one guard shared by the session factory counts across sessions. A real
//! rmcp client over a loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mcp_policy::{Evaluator, Policy};
use mcp_policy_rmcp::{Identity, PolicyGuard, http_extension, http_header};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleClient, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use tokio_util::sync::CancellationToken;

const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "export": {
      "deny_if": [{ "conditions": [{ "path": "grant", "op": "eq", "value": "" }],
                    "on_deny": "anonymous callers may not export" }],
      "limits": [{ "counter": "exports", "window": "hour", "max": 2, "scope": "grant" }]
    }
  }
}"#;

/// The identity the authentication layer verified.
#[derive(Clone)]
struct Caller {
    subject: String,
}

#[derive(Clone)]
struct Server {
    guard: PolicyGuard,
    tool_router: ToolRouter<Self>,
    ran: Arc<AtomicUsize>,
}

#[tool_router]
impl Server {
    #[tool(description = "Export a table")]
    async fn export(&self) -> String {
        self.ran.fetch_add(1, Ordering::SeqCst);
        "exported".to_owned()
    }
}

#[tool_handler(router = self.guard.router(&self.tool_router))]
impl ServerHandler for Server {}

/// Accepts `Authorization: Bearer TOKEN` for known tokens, puts the `Caller` into the request's
/// extensions, and refuses everything else with 401.
async fn authenticate(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let tokens = HashMap::from([("tok-alice", "alice"), ("tok-bob", "bob")]);
    let subject = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| tokens.get(t));
    match subject {
        Some(subject) => {
            request.extensions_mut().insert(Caller { subject: (*subject).to_owned() });
            next.run(request).await
        }
        None => {
            let mut response = axum::response::Response::new(axum::body::Body::empty());
            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
            response
        }
    }
}

struct Running {
    url: String,
    ran: Arc<AtomicUsize>,
    stop: CancellationToken,
}

async fn start() -> Running {
    // The guard is built once, outside the session factory, and cloned into every session.
    let evaluator = Evaluator::new(Policy::from_json_str(POLICY).unwrap());
    let guard = PolicyGuard::new(Arc::new(evaluator)).with_identity(|context| Identity {
        grant: http_extension::<Caller>(context).map(|c| c.subject).unwrap_or_default(),
        session: http_header(context, "mcp-session-id"),
        context: None,
    });
    let ran = Arc::new(AtomicUsize::new(0));
    let server = Server { guard, tool_router: Server::tool_router(), ran: ran.clone() };
    let stop = CancellationToken::new();
    let service: StreamableHttpService<Server, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(server.clone()),
        Default::default(),
        StreamableHttpServerConfig::default()
            .with_sse_keep_alive(None)
            .with_cancellation_token(stop.child_token()),
    );
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(authenticate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
            .await;
    });
    Running { url: format!("http://{addr}/mcp"), ran, stop }
}

async fn client(
    url: &str,
    token: Option<&str>,
    forged_headers: &[(&'static str, &'static str)],
) -> Result<RunningService<RoleClient, ClientConfig>, rmcp::service::ClientInitializeError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(t) = token {
        config = config.auth_header(t.to_owned());
    }
    let headers = forged_headers
        .iter()
        .map(|(k, v)| (http::HeaderName::from_static(k), http::HeaderValue::from_static(v)))
        .collect();
    config = config.custom_headers(headers);
    ClientConfig::default().serve(StreamableHttpClientTransport::from_config(config)).await
}

async fn export(c: &RunningService<RoleClient, ClientConfig>) -> CallToolResult {
    c.call_tool(CallToolRequestParams::new("export")).await.unwrap()
}

#[tokio::test]
async fn the_grant_comes_from_the_verified_token_and_counts_across_sessions() {
    let s = start().await;
    // Two sessions of alice share her quota (one guard for all sessions): 2 exports in all.
    let a1 = client(&s.url, Some("tok-alice"), &[]).await.unwrap();
    let a2 = client(&s.url, Some("tok-alice"), &[]).await.unwrap();
    assert_ne!(export(&a1).await.is_error, Some(true));
    assert_ne!(export(&a2).await.is_error, Some(true));
    for c in [&a1, &a2] {
        let r = export(c).await;
        assert_eq!(r.structured_content.unwrap()["decision"], "limit");
    }
    // Alice cannot take bob's quota with a header of her choosing: the grant is the verified
    // token's subject, a typed extension no header can set.
    let forged = client(
        &s.url,
        Some("tok-alice"),
        &[("x-authenticated-subject", "bob"), ("x-api-key-id", "bob")],
    )
    .await
    .unwrap();
    let r = export(&forged).await;
    assert_eq!(r.structured_content.unwrap()["decision"], "limit");
    // Bob has his own quota.
    let b = client(&s.url, Some("tok-bob"), &[]).await.unwrap();
    assert_ne!(export(&b).await.is_error, Some(true));
    assert_eq!(s.ran.load(Ordering::SeqCst), 3);
    // No token, or an unknown one: the layer refuses before MCP starts.
    assert!(client(&s.url, None, &[]).await.is_err());
    assert!(client(&s.url, Some("tok-mallory"), &[]).await.is_err());
    assert_eq!(s.ran.load(Ordering::SeqCst), 3);
    for c in [a1, a2, forged, b] {
        let _ = c.cancel().await;
    }
    s.stop.cancel();
}
