//! Protocol revision 2026-07-28 over HTTP (no `initialize`, no session): an upstream that is
//! rmcp's own streamable-HTTP server in the test process, recording every call it runs, and a
//! raw client that sends the revision's headers (or omits, repeats or contradicts them).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InputRequests,
    InputRequiredResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::{Gateway, PATIENCE, Raw, messages};

/// The protocol revision these clients speak.
pub const VERSION: &str = "2026-07-28";

/// The `_meta` every request of 2026-07-28 carries: its revision, capabilities and client.
pub fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-2026-http", "version": "1"}
    })
}

/// The client's answer to the upstream's own round (`confirm`).
pub fn sure() -> Value {
    json!({"confirm": {"action": "accept", "content": {"sure": true}}})
}

/// The upstream: rmcp's streamable-HTTP server on `127.0.0.1:0`, listing `tools` and recording
/// every call it runs as `{"tool", "args", "state", "responses"}`. By tool name: `ask` and
/// `guarded` first answer `input_required` with a `requestState` of their own
/// (`NAME-state-N`, N the call's rank) and run when called again with one; `forever` answers
/// `input_required` to every call (a new state each time); `slow` waits for a permit of
/// `gate` (one per call) first; `progress` sends a progress notification with the request's
/// token (recorded as `{"tool": "progress", "token"}`) and runs; `logs` sends a log message
/// (`notifications/message`, data `"working on it"`) on the request's stream and runs; any other
/// tool runs at once
/// (`ran NAME`). A request for `slow` whose connection closes before its answer carried a
/// result is recorded as `{"tool": "slow:closed"}`. With `old_only` it speaks only 2025-06-18
/// (no revision without `initialize`).
pub struct Upstream {
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    pub calls: Arc<Mutex<Vec<Value>>>,
    /// `slow` takes one permit per call (none at first).
    pub gate: Arc<Semaphore>,
    /// How many times it answered `tools/list`.
    pub lists: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub async fn start(tools: &[&'static str], old_only: bool) -> Upstream {
        let handler = Recorder {
            tools: tools.into(),
            old_only,
            calls: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            lists: Arc::default(),
        };
        let (calls, gate, lists) =
            (handler.calls.clone(), handler.gate.clone(), handler.lists.clone());
        let service = StreamableHttpService::new(
            move || Ok(handler.clone()),
            LocalSessionManager::default().into(),
            StreamableHttpServerConfig::default(),
        );
        let app = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn_with_state(calls.clone(), closed_before_answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Upstream { url: format!("http://{addr}/mcp"), calls, gate, lists }
    }

    /// Every call it ran, in order.
    pub fn ran(&self) -> Vec<Value> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls of `tool` it ran, in order.
    pub fn ran_of(&self, tool: &str) -> Vec<Value> {
        self.ran().into_iter().filter(|c| c["tool"] == tool).collect()
    }

    /// Waits until it has run `n` calls of `tool` (fails after `PATIENCE`).
    pub async fn wait_for(&self, tool: &str, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while self.ran_of(tool).len() < n {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the upstream never got the call");
    }
}

/// Records `{"tool": "slow:closed"}` when a request for `slow` (its `Mcp-Name`) ends before its
/// answer carried a result: the gateway closed the connection.
async fn closed_before_answer(
    axum::extract::State(calls): axum::extract::State<Arc<Mutex<Vec<Value>>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures_util::StreamExt;
    struct Watch {
        calls: Arc<Mutex<Vec<Value>>>,
        tool: String,
        answered: bool,
    }
    impl Watch {
        fn answered(&mut self) {
            self.answered = true;
        }
    }
    impl Drop for Watch {
        fn drop(&mut self) {
            if !self.answered {
                let tool = format!("{}:closed", self.tool);
                self.calls.lock().unwrap().push(json!({ "tool": tool }));
            }
        }
    }
    let tool = req.headers().get("mcp-name").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(tool) = tool.filter(|t| t == "slow") else { return next.run(req).await };
    // Made before the answer: the connection may close while rmcp still works on it.
    let mut watch = Watch { calls, tool, answered: false };
    let response = next.run(req).await;
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk
            && bytes.windows(8).any(|w| w == b"\"result\"")
        {
            watch.answered();
        }
        chunk
    });
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(body))
}

/// The tool `name` as listed: `regional` declares its `region` argument as the header
/// `Mcp-Param-Region` (SEP-2243), which rmcp then requires on every call of it; the others take
/// any object.
fn tool(name: &'static str) -> Tool {
    let schema = if name == "regional" {
        json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}}})
    } else {
        json!({"type": "object"})
    };
    Tool::new(name, "a tool", Arc::new(schema.as_object().cloned().unwrap()))
}

#[derive(Clone)]
struct Recorder {
    tools: Arc<[&'static str]>,
    old_only: bool,
    calls: Arc<Mutex<Vec<Value>>>,
    gate: Arc<Semaphore>,
    lists: Arc<std::sync::atomic::AtomicUsize>,
}

impl ServerHandler for Recorder {
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        if self.old_only {
            Cow::Borrowed(&[ProtocolVersion::V_2025_06_18])
        } else {
            Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
        }
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tools = self.tools.iter().map(|n| tool(n)).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    /// rmcp checks a call's `Mcp-Param-*` headers against the schema this gives.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|n| **n == name).map(|n| tool(n))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        let state = request.request_state.clone();
        let responses = request.input_responses.clone().map(|r| json!(r));
        if name == "progress" {
            // Progress on the request's own stream, with the token the request came with.
            let token = context.meta.get_progress_token();
            self.calls.lock().unwrap().push(json!({"tool": "progress", "token": json!(token)}));
            if let Some(token) = token {
                let note = ProgressNotificationParam::new(token, 0.5).with_message("half way");
                context.peer.notify_progress(note).await.unwrap();
            }
            let done = ContentBlock::text("ran progress".to_owned());
            return Ok(CallToolResult::success(vec![done]).into());
        }
        if name == "logs" {
            // A log on the request's own stream, before the answer.
            self.calls.lock().unwrap().push(json!({"tool": "logs"}));
            log(&context, "working on it").await;
            return Ok(
                CallToolResult::success(vec![ContentBlock::text("ran logs".to_owned())]).into()
            );
        }
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(json!({"tool": name, "args": args, "state": state, "responses": responses}));
            calls.len()
        };
        if name == "slow" {
            self.gate.acquire().await.unwrap().forget();
        }
        let asks = match name.as_str() {
            "ask" | "guarded" => state.is_none(),
            "forever" => true,
            _ => false,
        };
        if asks {
            let requests: InputRequests = serde_json::from_value(json!({"confirm": {
                "method": "elicitation/create",
                "params": {"mode": "form", "message": "sure?", "requestedSchema": {
                    "type": "object", "properties": {"sure": {"type": "boolean"}}}}}}))
            .unwrap();
            return Ok(
                InputRequiredResult::new(Some(requests), Some(format!("{name}-state-{n}"))).into()
            );
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("ran {name}"))]).into())
    }
}

/// Sends the log message `data` (level info) to the client of `context`'s request (logging is
/// deprecated by SEP-2577, not gone: servers still send it).
#[allow(deprecated)]
async fn log(context: &RequestContext<RoleServer>, data: &str) {
    use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
    let log = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(data));
    context.peer.notify_logging_message(log).await.unwrap();
}

/// A raw client of 2026-07-28: every POST carries `MCP-Protocol-Version`, `Mcp-Method` and
/// `Mcp-Name`, and its identity headers (`x-user`, or a bearer token); it can send any body
/// bytes, leave out any of those headers, and append more (a name given twice is sent twice).
/// Its calls carry the `Mcp-Param-*` headers of the schemas it knows (`params`).
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    /// The identity headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// The `x-mcp-header` declarations the client knows, as (tool, top-level argument, header
    /// name): a call of the tool mirrors the argument (a string, number or boolean) in the
    /// header `Mcp-Param-NAME`, Base64 when it is not plain ASCII. At first the recording
    /// upstream's (`regional`'s `region`).
    pub params: Vec<(&'static str, &'static str, &'static str)>,
}

/// The `Mcp-Param-*` header value of `value` (SEP-2243): as it is when it is visible ASCII
/// without blanks at its ends, else Base64 between `=?base64?` and `?=`.
pub fn param_value(value: &str) -> String {
    let plain = !value.starts_with([' ', '\t'])
        && !value.ends_with([' ', '\t'])
        && value.chars().all(|c| (' '..='~').contains(&c));
    if plain {
        return value.to_owned();
    }
    use base64::Engine;
    format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value))
}

impl Client {
    /// The user `user` by the trusted header `x-user`.
    pub fn new(url: &str, user: &str) -> Self {
        Client {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            headers: vec![("x-user".into(), user.into())],
            params: vec![("regional", "region", "Region")],
        }
    }

    /// The holder of the bearer token `token` (a JWT).
    pub fn with_token(url: &str, token: &str) -> Self {
        Client {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            params: vec![("regional", "region", "Region")],
        }
    }

    /// A POST of the raw `body`: the headers of 2026-07-28 (`Mcp-Method: method`, `Mcp-Name:
    /// name` if any) and the identity, without those `skip` names, then `extra` (appended).
    pub fn post_raw(
        &self,
        body: String,
        method: &str,
        name: Option<&str>,
        skip: &[&str],
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let mut headers = vec![
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", VERSION),
            ("mcp-method", method),
        ];
        if let Some(n) = name {
            headers.push(("mcp-name", n));
        }
        headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut req = self.http.post(&self.url).body(body);
        for (k, v) in headers {
            if !skip.contains(&k) {
                req = req.header(k, v);
            }
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req
    }

    /// A POST of the raw `body` with all the headers, then `extra`.
    pub fn raw(
        &self,
        body: String,
        method: &str,
        name: Option<&str>,
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        self.post_raw(body, method, name, &[], extra)
    }

    /// A POST of `body` with the headers its own `method` and `params.name` call for (an
    /// empty `Mcp-Method` when it has no method), without the ones `skip` names.
    pub fn post(&self, body: &Value, skip: &[&str]) -> reqwest::RequestBuilder {
        let method = body["method"].as_str().unwrap_or("");
        let name = body["params"]["name"].as_str();
        self.post_raw(body.to_string(), method, name, skip, &[])
    }

    /// A request; its one answer (200, no session made, the client's own id).
    pub async fn request(&self, id: i64, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        answer(self.post(&body, &[]), id, method).await
    }

    /// `tools/call` of `tool` with the arguments `args` (a JSON value, or raw JSON text sent
    /// as it is spelled); with `retry`, a round's `requestState` and `inputResponses`. Its
    /// `result` (200, no session made, one answer with the client's own id).
    pub async fn call(
        &self,
        id: i64,
        tool: &str,
        args: impl std::fmt::Display,
        retry: Option<(&str, Value)>,
    ) -> Value {
        let args = args.to_string();
        let headers = self.param_headers(tool, &args);
        let extra: Vec<(&str, &str)> =
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = call_body(id, tool, &args, retry);
        answer(self.raw(body, "tools/call", Some(tool), &extra), id, "tools/call").await["result"]
            .clone()
    }

    /// The `Mcp-Param-*` headers of a call of `tool` with the raw JSON `args`, by the
    /// declarations the client knows.
    pub fn param_headers(&self, tool: &str, args: &str) -> Vec<(String, String)> {
        let args: Value = serde_json::from_str(args).unwrap_or(Value::Null);
        self.params
            .iter()
            .filter(|(t, _, _)| *t == tool)
            .filter_map(|(_, arg, header)| {
                let text = match &args[*arg] {
                    Value::String(s) => s.clone(),
                    v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                    _ => return None,
                };
                Some((format!("mcp-param-{}", header.to_ascii_lowercase()), param_value(&text)))
            })
            .collect()
    }
}

/// Sends `req`; its one answer, checked: 200, no `Mcp-Session-Id`, one message, id `id`.
async fn answer(req: reqwest::RequestBuilder, id: i64, method: &str) -> Value {
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{method}");
    assert!(resp.headers().get("mcp-session-id").is_none(), "no session is made");
    let messages = messages(resp).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = messages.into_iter().next().unwrap();
    assert_eq!(m["id"], id, "the answer carries the client's own id: {m}");
    m
}

/// The raw text of a `tools/call` of `tool` with the raw JSON `args`, spelled as given; with
/// `retry`, a round's `requestState` and `inputResponses`.
pub fn call_body(id: i64, tool: &str, args: &str, retry: Option<(&str, Value)>) -> String {
    let retry = retry.map_or(String::new(), |(s, responses)| {
        format!(r#", "requestState": {}, "inputResponses": {responses}"#, json!(s))
    });
    format!(
        r#"{{"jsonrpc": "2.0", "id": {id}, "method": "tools/call", "params": {{"name": {},
            "arguments": {args}, "_meta": {}{retry}}}}}"#,
        json!(tool),
        meta()
    )
}

/// Sends `req` and reads its status and its first message (JSON or SSE; `null` if none).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    let msg = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap())
        .or_else(|| serde_json::from_str(&body).ok())
        .unwrap_or(Value::Null);
    (status, msg)
}

/// A client of an older revision (with `initialize` and a session) for the user `user` by
/// the trusted header `x-user`.
pub fn session_client(gw: &Gateway, user: &str) -> Raw {
    let mut old = gw.client();
    old.http = reqwest::Client::builder()
        .default_headers(
            [(reqwest::header::HeaderName::from_static("x-user"), user.parse().unwrap())]
                .into_iter()
                .collect(),
        )
        .build()
        .unwrap();
    old
}

/// A hostile upstream of 2026-07-28 (a bare HTTP server): it answers `tools/call` at once
/// (`ran NAME`, JSON), and `tools/list` with an event stream that never ends and never answers
/// (a comment every 50 ms). `listings_closed` counts the listing streams whose connection the
/// gateway closed.
pub struct EndlessLister {
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    pub listings_closed: Arc<std::sync::atomic::AtomicUsize>,
    pub calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl EndlessLister {
    pub async fn start() -> EndlessLister {
        use std::sync::atomic::{AtomicUsize, Ordering};
        /// Counts the stream as closed when the server drops it (its connection closed).
        struct Closed(Arc<AtomicUsize>);
        impl Drop for Closed {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let closed: Arc<AtomicUsize> = Arc::default();
        let calls: Arc<AtomicUsize> = Arc::default();
        let (c, n) = (closed.clone(), calls.clone());
        let app = axum::Router::new().route(
            "/mcp",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (closed, calls) = (c.clone(), n.clone());
                async move {
                    use axum::response::IntoResponse;
                    let msg: Value = serde_json::from_slice(&body).unwrap_or_default();
                    if msg["method"] == "tools/list" {
                        let guard = Closed(closed);
                        let events = futures_util::stream::unfold(guard, |guard| async move {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            Some((
                                Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(
                                    b": still listing\n\n",
                                )),
                                guard,
                            ))
                        });
                        return (
                            [("content-type", "text/event-stream")],
                            axum::body::Body::from_stream(events),
                        )
                            .into_response();
                    }
                    calls.fetch_add(1, Ordering::SeqCst);
                    let name = msg["params"]["name"].as_str().unwrap_or("").to_owned();
                    axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": {
                        "content": [{"type": "text", "text": format!("ran {name}")}]}}))
                    .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        EndlessLister { url: format!("http://{addr}/mcp"), listings_closed: closed, calls }
    }
}

/// A hostile upstream of 2026-07-28 (a bare HTTP server) that floods progress: it lists no tools,
/// and answers any `tools/call` with an event stream of `count` progress notifications of 10 kB
/// each (with the request's own token), then the answer (`ran NAME`). `done` is set once the
/// answer was handed to its connection.
pub struct ProgressFlood {
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    pub done: Arc<std::sync::atomic::AtomicBool>,
}

impl ProgressFlood {
    pub async fn start(count: usize) -> ProgressFlood {
        use std::sync::atomic::{AtomicBool, Ordering};
        let done: Arc<AtomicBool> = Arc::default();
        let d = done.clone();
        let app = axum::Router::new().route(
            "/mcp",
            axum::routing::post(move |body: axum::body::Bytes| {
                let done = d.clone();
                async move {
                    use axum::response::IntoResponse;
                    let msg: Value = serde_json::from_slice(&body).unwrap_or_default();
                    if msg["method"] != "tools/call" {
                        return axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"],
                            "result": {"tools": []}}))
                        .into_response();
                    }
                    let token = msg["params"]["_meta"]["progressToken"].clone();
                    let filler = "x".repeat(10_000);
                    let event = |m: Value| bytes::Bytes::from(format!("data: {m}\n\n"));
                    let answer = event(json!({"jsonrpc": "2.0", "id": msg["id"], "result": {
                        "content": [{"type": "text", "text": "ran flood"}]}}));
                    let events = futures_util::stream::unfold(0, move |i| {
                        let (token, filler, answer, done) =
                            (token.clone(), filler.clone(), answer.clone(), done.clone());
                        async move {
                            let chunk = match i {
                                i if i < count => event(json!({"jsonrpc": "2.0",
                                    "method": "notifications/progress", "params": {
                                    "progressToken": token, "progress": i,
                                    "message": filler}})),
                                i if i == count => answer,
                                _ => {
                                    done.store(true, Ordering::SeqCst);
                                    return None;
                                }
                            };
                            Some((Ok::<_, std::convert::Infallible>(chunk), i + 1))
                        }
                    });
                    ([("content-type", "text/event-stream")], axum::body::Body::from_stream(events))
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ProgressFlood { url: format!("http://{addr}/mcp"), done }
    }
}

/// The `mcp-param-*` headers of each call, in order: (name, value).
pub type SeenParams = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A bare upstream of 2026-07-28 (a plain HTTP server): it answers `tools/list` with `tools`
/// (one page), and any `tools/call` at once (`ran NAME`, JSON), recording the `mcp-param-*`
/// headers of each call (name, value) in `params`.
pub struct Bare {
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    pub params: SeenParams,
}

impl Bare {
    pub async fn start(tools: Value) -> Bare {
        let params: SeenParams = Arc::default();
        let p = params.clone();
        let app = axum::Router::new().route(
            "/mcp",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (params, tools) = (p.clone(), tools.clone());
                async move {
                    let msg: Value = serde_json::from_slice(&body).unwrap_or_default();
                    if msg["method"] == "tools/list" {
                        return axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"],
                            "result": {"tools": tools}}));
                    }
                    let seen = headers
                        .iter()
                        .filter(|(k, _)| k.as_str().starts_with("mcp-param-"))
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
                        .collect();
                    params.lock().unwrap().push(seen);
                    let name = msg["params"]["name"].as_str().unwrap_or("").to_owned();
                    axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": {
                        "content": [{"type": "text", "text": format!("ran {name}")}]}}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Bare { url: format!("http://{addr}/mcp"), params }
    }
}

/// A hostile upstream of 2026-07-28 (a bare HTTP server) whose every answer is a JSON body of
/// `mb` MB (whitespace, then the answer), or with `sse` an event stream whose one event has a
/// data line of `mb` MB (whitespace, no line end), then the answer as an event.
pub struct HugeAnswer {
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
}

impl HugeAnswer {
    pub async fn start(mb: usize, sse: bool) -> HugeAnswer {
        let app = axum::Router::new().route(
            "/mcp",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                let msg: Value = serde_json::from_slice(&body).unwrap_or_default();
                let answer = json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"tools": []}});
                let answer = bytes::Bytes::from(match sse {
                    true => format!("\n\ndata: {answer}\n\n"),
                    false => answer.to_string(),
                });
                let (first, kind) = match sse {
                    true => (bytes::Bytes::from_static(b"data: "), "text/event-stream"),
                    false => (bytes::Bytes::new(), "application/json"),
                };
                let blank = bytes::Bytes::from(vec![b' '; 1 << 20]);
                let chunks = futures_util::stream::unfold(0, move |i| {
                    let (first, blank, answer) = (first.clone(), blank.clone(), answer.clone());
                    async move {
                        let chunk = match i {
                            0 => first,
                            i if i <= mb => blank,
                            i if i == mb + 1 => answer,
                            _ => return None,
                        };
                        Some((Ok::<_, std::convert::Infallible>(chunk), i + 1))
                    }
                });
                ([("content-type", kind)], axum::body::Body::from_stream(chunks))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HugeAnswer { url: format!("http://{addr}/mcp") }
    }
}
