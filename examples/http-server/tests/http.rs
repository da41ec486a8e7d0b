//! The example's server on a free loopback port, driven by rmcp's streamable-HTTP client with
//! `Authorization: Bearer` tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_server::{Claims, Invocations, Running, TableServer, guard, mcp_service, sign, start};
use mcp_policy::{Evaluator, Policy};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, StreamableHttpClientTransportConfig,
};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

const SECRET: &[u8] = b"a test secret of at least 32 bytes, never used elsewhere";
const LOOPBACK: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

type Client = RunningService<RoleClient, ClientConfig>;

fn policy() -> Policy {
    Policy::from_json_str(include_str!("../policy.json")).unwrap()
}

async fn start_server() -> Running {
    start(policy(), SECRET, SocketAddr::from(LOOPBACK)).await.unwrap()
}

fn token(subject: &str, scopes: &[&str]) -> String {
    sign(SECRET, &Claims::new(subject, scopes, Duration::from_secs(600))).unwrap()
}

async fn connect(
    url: &str,
    token: Option<&str>,
    headers: &[(&'static str, &'static str)],
) -> Result<Client, ClientInitializeError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(t) = token {
        config = config.auth_header(t.to_owned());
    }
    config = config.custom_headers(
        headers
            .iter()
            .map(|(k, v)| {
                (axum::http::HeaderName::from_static(k), axum::http::HeaderValue::from_static(v))
            })
            .collect(),
    );
    ClientConfig::default().serve(StreamableHttpClientTransport::from_config(config)).await
}

/// The `WWW-Authenticate` challenge of the 401 the client met, found in its error's chain.
fn challenge(error: &ClientInitializeError) -> String {
    let ClientInitializeError::TransportError { error: transport, .. } = error else {
        panic!("expected a transport error, got {error:?}");
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*transport.error);
    while let Some(e) = source {
        if let Some(auth) = e.downcast_ref::<AuthRequiredError>() {
            return auth.www_authenticate_header.clone();
        }
        source = e.source();
    }
    panic!("expected a 401 with a WWW-Authenticate challenge, got {error:?}");
}

async fn call(client: &Client, tool: &'static str, args: Value) -> CallToolResult {
    let mut params = CallToolRequestParams::new(tool);
    params.arguments = args.as_object().cloned();
    client.call_tool(params).await.unwrap()
}

async fn export(client: &Client) -> CallToolResult {
    call(client, "export_table", json!({ "table": "orders" })).await
}

fn decision(r: &CallToolResult) -> String {
    if r.is_error != Some(true) {
        return "allow".to_owned();
    }
    let content = r.structured_content.as_ref().expect("a refusal carries the decision JSON");
    content["decision"].as_str().unwrap().to_owned()
}

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect()
}

async fn close(clients: Vec<Client>) {
    for c in clients {
        let _ = c.cancel().await;
    }
}

#[tokio::test]
async fn without_a_valid_token_the_answer_is_401_before_mcp_starts() {
    let s = start_server().await;
    let url = s.url();

    let Err(none) = connect(&url, None, &[]).await else { panic!("no token was accepted") };
    assert_eq!(challenge(&none), r#"Bearer realm="mcp""#);

    let valid = Claims::new("alice", &["tables:export"], Duration::from_secs(600));
    let wrong_key = sign(b"another secret of at least thirty-two bytes", &valid).unwrap();
    let expired = sign(SECRET, &Claims { exp: valid.exp - 7200, ..valid.clone() }).unwrap();
    let elsewhere = sign(SECRET, &Claims { aud: "another-server".into(), ..valid }).unwrap();
    for bad in [wrong_key.as_str(), &expired, &elsewhere, "not-a-jwt"] {
        let Err(e) = connect(&url, Some(bad), &[]).await else { panic!("`{bad}` was accepted") };
        assert_eq!(challenge(&e), r#"Bearer realm="mcp", error="invalid_token""#);
    }
    assert_eq!(s.invocations.get(), 0);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn two_tokens_are_two_grants_and_a_grant_counts_across_its_sessions() {
    let s = start_server().await;
    let url = s.url();
    let alice = token("alice", &["tables:read", "tables:export"]);
    let a1 = connect(&url, Some(&alice), &[]).await.unwrap();
    let a2 = connect(&url, Some(&alice), &[]).await.unwrap();
    let b = connect(&url, Some(&token("bob", &["tables:export"])), &[]).await.unwrap();

    // Alice's two sessions share her quota of 2 exports an hour: one guard for every session.
    assert_eq!(decision(&export(&a1).await), "allow");
    assert_eq!(decision(&export(&a2).await), "allow");
    assert_eq!(s.invocations.get(), 2);
    for c in [&a1, &a2] {
        let r = export(c).await;
        assert_eq!(decision(&r), "limit", "{}", text(&r));
    }
    // The refused calls never reached the tool.
    assert_eq!(s.invocations.get(), 2);

    // Bob is another grant: his quota is untouched.
    assert_eq!(decision(&export(&b).await), "allow");
    assert_eq!(decision(&export(&b).await), "allow");
    assert_eq!(decision(&export(&b).await), "limit");
    assert_eq!(s.invocations.get(), 4);

    // Alice may still list: another counter.
    let r = call(&a1, "list_tables", json!({})).await;
    assert_eq!(decision(&r), "allow");
    assert!(text(&r).contains("orders"));
    assert_eq!(s.invocations.get(), 5);

    close(vec![a1, a2, b]).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_tokens_scopes_are_the_policys_context() {
    let s = start_server().await;
    let carol = connect(&s.url(), Some(&token("carol", &["tables:read"])), &[]).await.unwrap();
    let r = export(&carol).await;
    assert_eq!(decision(&r), "deny");
    assert!(
        text(&r).contains("the token does not carry the scope `tables:export`"),
        "{}",
        text(&r)
    );
    assert_eq!(s.invocations.get(), 0);
    close(vec![carol]).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_forged_identity_header_does_not_change_the_grant() {
    let s = start_server().await;
    let url = s.url();
    let alice = token("alice", &["tables:export"]);
    let a = connect(&url, Some(&alice), &[]).await.unwrap();
    assert_eq!(decision(&export(&a).await), "allow");
    assert_eq!(decision(&export(&a).await), "allow");
    assert_eq!(decision(&export(&a).await), "limit");

    // Alice's token with headers that name bob, in every spelling a naive server might read.
    let forged = connect(
        &url,
        Some(&alice),
        &[
            ("x-authenticated-subject", "bob"),
            ("x-authenticated-user", "bob"),
            ("x-forwarded-user", "bob"),
            ("x-grant", "bob"),
            ("x-user", "bob"),
        ],
    )
    .await
    .unwrap();
    let r = export(&forged).await;
    assert_eq!(decision(&r), "limit", "the forged headers gave alice another quota: {}", text(&r));
    assert_eq!(s.invocations.get(), 2);

    // Bob, with his own token, still has his.
    let b = connect(&url, Some(&token("bob", &["tables:export"])), &[]).await.unwrap();
    assert_eq!(decision(&export(&b).await), "allow");
    assert_eq!(s.invocations.get(), 3);

    close(vec![a, forged, b]).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn without_the_authentication_layer_every_call_is_refused() {
    // The MCP service mounted without `authenticate`: no `Caller` in the request, grant `""`,
    // which the policy refuses (fail closed, not "anonymous may do anything").
    let invocations = Invocations::default();
    let server = TableServer::new(guard(Arc::new(Evaluator::new(policy()))), invocations.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let app = axum::Router::new().nest_service("/mcp", mcp_service(server, stop.child_token()));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(LOOPBACK)).await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let shutdown = stop.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
    });

    let c = connect(&url, None, &[("x-authenticated-subject", "alice")]).await.unwrap();
    let r = call(&c, "list_tables", json!({})).await;
    assert_eq!(decision(&r), "deny");
    assert!(text(&r).contains("no verified caller"), "{}", text(&r));
    // The tool's own `require` (the scope) comes before `all_tools`': refused either way.
    assert_eq!(decision(&export(&c).await), "deny");
    assert_eq!(invocations.get(), 0);

    close(vec![c]).await;
    stop.cancel();
    task.await.unwrap().unwrap();
}
