//! The upstream MCP server at a streamable-HTTP URL (the client side of the MCP specification's
//! streamable HTTP transport, revisions 2025-03-26 to 2025-11-25).
//!
//! Every message the relay sends is POSTed to the URL with `Accept: application/json,
//! text/event-stream`; the answer is read as JSON or as a server-sent-event stream, whichever
//! the server chose. The `Mcp-Session-Id` the server gives on `initialize` is sent on every later
//! request, with `MCP-Protocol-Version` once negotiated. After `notifications/initialized`, a GET
//! stream is opened for the server's own requests and notifications (a server that answers 405
//! has none). When the relay ends, the session is closed with DELETE. A request of a revision
//! without `initialize` (2026-07-28: its `_meta` names it) is sent without a session, with
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`; a `notifications/cancelled` for such a
//! request, which the server could not attribute, aborts it instead (its connection is closed).
//! The notifications the server sends on such a request's answer stream concern that request:
//! they reach the relay marked with its id ([`RELATED_REQUEST`](crate::relay::RELATED_REQUEST)).
//!
//! Requests are POSTed concurrently (a long tool call does not hold up the others);
//! notifications and responses are POSTed in order, each after the previous one was accepted, so
//! that `notifications/initialized` reaches the server before the requests that follow it. A
//! request the server cannot be reached for, or answers with an HTTP error, gets a JSON-RPC error
//! at once. When the server forgets the session (404), the upstream is gone: the relay answers
//! what is pending with errors and the session ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::{HashMap, VecDeque};

use axum::http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use futures_util::StreamExt;
use futures_util::future::AbortHandle;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::jsonrpc::{self, Kind};
use crate::lines::MAX_MESSAGE_BYTES;
use crate::relay::ParamSchemas;
use crate::transport::{CHANNEL_CAPACITY, UPSTREAM_STATUS, UpstreamLink};
use crate::upstream::client::{Client, RequestBuilder, Response};

/// The session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header.
pub const PROTOCOL_HEADER: &str = "mcp-protocol-version";

/// How long the rest of an answered request's event stream is read for (see `read_body`).
const DRAIN_WAIT: Duration = Duration::from_millis(100);
/// How many times in a row the GET stream is reopened after it failed.
const GET_RETRIES: u32 = 5;
/// The most requests of one upstream session (or of one identity's relay of clients without a
/// session) posted to the upstream at once, each holding a connection; the rest wait their turn
/// (one client's batch of thousands would otherwise hold thousands of descriptors).
pub const MAX_IN_FLIGHT: usize = 64;
/// How long a notification or a response waits to be accepted (202) by the upstream before
/// what follows it is sent anyway (an upstream that never accepts one would hold up the
/// session's every later message).
const ORDERED_WAIT: Duration = Duration::from_secs(5);
/// How long what a client sends after `initialize` (without waiting for its answer, as a
/// script writing its requests at once does) waits for that answer, which brings the
/// `Mcp-Session-Id` everything after must carry; past this it is sent without.
const INITIALIZE_WAIT: Duration = Duration::from_secs(10);

/// The connection to an HTTP upstream; the task ends (and the session is deleted) when the
/// relay drops its side of the link.
#[derive(Debug)]
pub struct HttpUpstream {
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

/// Lists an HTTP upstream's tools for the listener of clients without a session, so that it
/// knows the `Mcp-Param-*` headers a call of a tool must carry before it checks them.
#[derive(Debug, Clone)]
pub struct ToolLister(Arc<Shared>);

impl ToolLister {
    /// Before a sessionless `tools/call` of a tool not listed yet: lists the upstream's tools
    /// (without a session, with the call's `_meta`), as the connection does before sending
    /// such a call, and at most as often (once per 10 s, 20 pages, 10 s in all).
    pub async fn learn_tool(&self, call: &Value) {
        if self.0.sessionless(call) {
            self.0.learn_tool(call).await;
        }
    }
}

impl HttpUpstream {
    /// What lists this upstream's tools for the listener (see [`ToolLister`]).
    pub fn lister(&self) -> ToolLister {
        ToolLister(self.shared.clone())
    }

    /// Waits for the session to be closed (DELETE sent), at most `timeout`.
    pub async fn finish(self, timeout: Duration) {
        let abort = self.task.abort_handle();
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            abort.abort();
        }
    }
}

#[derive(Debug)]
struct Shared {
    client: Client,
    /// The upstream's URL, without the credentials it was given with (it is shown in errors).
    url: Uri,
    /// `Authorization: Basic` from the credentials the URL was given with, sent on every request.
    authorization: Option<HeaderValue>,
    /// The upstream's `Mcp-Session-Id` and the negotiated revision, as the header values sent
    /// on every request.
    session: Mutex<Option<HeaderValue>>,
    protocol: Mutex<Option<HeaderValue>>,
    /// Messages for the relay; taken out when the upstream is gone, so that the relay sees it.
    down: Mutex<Option<mpsc::Sender<Value>>>,
    gone: watch::Sender<bool>,
    /// Each listed tool's `Mcp-Param-*` declarations (SEP-2243), from the `tools/list`
    /// answers that passed through; sent with a call of the tool without a session.
    params: Arc<ParamSchemas>,
    /// When the gateway last listed the tools itself (at most once per [`RELIST_AFTER`]).
    listed: Mutex<Option<std::time::Instant>>,
    /// Held while the gateway lists the tools itself: the calls that need the listing wait for
    /// it rather than go without the headers it teaches.
    listing: tokio::sync::Mutex<()>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Checks `url` and takes the HTTP client; nothing is sent until the relay sends.
pub fn connect(url: &str) -> Result<(UpstreamLink, HttpUpstream), String> {
    connect_with(url, Arc::default())
}

/// [`connect`], recording the `Mcp-Param-*` declarations of the tools the upstream lists in
/// `params` (which the listener of clients without a session checks their headers against).
pub fn connect_with(
    url: &str,
    params: Arc<ParamSchemas>,
) -> Result<(UpstreamLink, HttpUpstream), String> {
    let parsed: Uri =
        url.parse().map_err(|e| format!("invalid upstream URL `{}`: {e}", redacted(url)))?;
    let url = &redacted(url);
    let (parsed, authorization) = split_credentials(parsed)?;
    if parsed.host().is_none_or(str::is_empty) {
        return Err(format!("invalid upstream URL `{url}`: it names no host"));
    }
    match parsed.scheme_str().unwrap_or("") {
        "http" => {}
        "https" => {
            return Err(format!(
                "the upstream URL `{url}` uses https, which this build does not speak: put the \
                 gateway next to the server and use http on a private address"
            ));
        }
        other => return Err(format!("the upstream URL `{url}` must be http, not `{other}`")),
    }
    let client = Client::shared();
    let (up_tx, up_rx) = mpsc::channel::<Value>(CHANNEL_CAPACITY);
    let (down_tx, down_rx) = mpsc::channel::<Value>(CHANNEL_CAPACITY);
    let (gone, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        client,
        url: parsed,
        authorization,
        session: Mutex::new(None),
        protocol: Mutex::new(None),
        down: Mutex::new(Some(down_tx)),
        gone,
        params,
        listed: Mutex::new(None),
        listing: tokio::sync::Mutex::new(()),
    });
    let task = tokio::spawn(run(shared.clone(), up_rx));
    Ok((UpstreamLink { tx: up_tx.into(), rx: down_rx.into() }, HttpUpstream { task, shared }))
}

/// `url` with the password of its credentials (`user:password@`), if any, replaced by `***`:
/// what errors show of it.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Decodes the `%XX` escapes of a URL's user name or password.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(decoded) if b == b'%' => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `parsed` without the credentials it may carry (`user:password@`), and those credentials as
/// an `Authorization: Basic` value (HTTP's own client sends them in no other way: they would
/// be dropped without a word, and the upstream refuse every request).
fn split_credentials(parsed: Uri) -> Result<(Uri, Option<HeaderValue>), String> {
    use base64::Engine;
    let Some((userinfo, host)) = parsed.authority().and_then(|a| a.as_str().rsplit_once('@'))
    else {
        return Ok((parsed, None));
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let pair = format!("{}:{}", percent_decoded(user), percent_decoded(password));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|e| format!("invalid credentials in the upstream URL: {e}"))?;
    value.set_sensitive(true);
    let authority =
        host.parse().map_err(|e| format!("invalid upstream URL: host `{host}`: {e}"))?;
    let mut parts = parsed.into_parts();
    parts.authority = Some(authority);
    let uri = Uri::from_parts(parts).map_err(|e| format!("invalid upstream URL: {e}"))?;
    Ok((uri, Some(value)))
}

/// A request being posted: its id once it is done.
type Posting = Pin<Box<dyn Future<Output = String> + Send>>;

/// Posts the request `msg`, abortable until it is answered; the requests in flight, by id: how
/// to abort each, and whether it has no session.
fn launch(
    shared: &Arc<Shared>,
    msg: Value,
    requests: &mut FuturesUnordered<Posting>,
    in_flight: &mut HashMap<String, (AbortHandle, bool)>,
) {
    let id = match jsonrpc::classify(&msg) {
        Kind::Request { id, .. } => jsonrpc::id_key(id),
        _ => String::new(),
    };
    let sh = shared.clone();
    let alone = sh.sessionless(&msg);
    let (post, handle) = futures_util::future::abortable(async move { sh.post(msg).await });
    in_flight.insert(id.clone(), (handle, alone));
    requests.push(Box::pin(async move {
        let _ = post.await;
        id
    }));
}

async fn run(shared: Arc<Shared>, mut up_rx: mpsc::Receiver<Value>) {
    let mut gone = shared.gone.subscribe();
    let mut get_task: Option<JoinHandle<()>> = None;
    // Requests in flight, polled by this task (no task spawned per request). A notification or
    // a response is posted before anything that follows it is read (`ordered`), while the
    // requests in flight go on.
    let mut requests: FuturesUnordered<Posting> = FuturesUnordered::new();
    let mut ordered: Option<Pin<Box<dyn Future<Output = bool> + Send>>> = None;
    // The requests in flight, by id: how to abort each, and whether it has no session.
    let mut in_flight: HashMap<String, (AbortHandle, bool)> = HashMap::new();
    // Requests waiting for one in flight to end (past `MAX_IN_FLIGHT`), oldest first.
    let mut waiting: VecDeque<Value> = VecDeque::new();
    // An `initialize` in flight (its id key), and until when what follows waits for its answer.
    let mut initializing: Option<(String, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            m = up_rx.recv(), if ordered.is_none() && initializing.is_none() => {
                let Some(msg) = m else { break };
                let (is_request, initialized) = match jsonrpc::classify(&msg) {
                    Kind::Request { method, id } => {
                        if method == "initialize" && requests.len() < MAX_IN_FLIGHT {
                            let until = tokio::time::Instant::now() + INITIALIZE_WAIT;
                            initializing = Some((jsonrpc::id_key(id), until));
                        }
                        (true, false)
                    }
                    Kind::Notification { method } => (false, method == "notifications/initialized"),
                    _ => (false, false),
                };
                let cancelled_key = cancelled_request(&msg);
                let cancelled = cancelled_key.as_ref().and_then(|k| in_flight.remove(k));
                if is_request {
                    // Each request in flight holds a connection: a client's batch of thousands
                    // waits its turn rather than opening thousands of them.
                    if requests.len() >= MAX_IN_FLIGHT {
                        waiting.push_back(msg);
                    } else {
                        launch(&shared, msg, &mut requests, &mut in_flight);
                    }
                    continue;
                }
                if cancelled.is_none()
                    && let Some(key) = &cancelled_key
                    && let Some(at) = waiting.iter().position(|m| request_key(m).as_ref() == Some(key))
                {
                    // Not sent yet: nothing to tell the upstream.
                    waiting.remove(at);
                    continue;
                }
                let sh = shared.clone();
                if let Some((handle, true)) = cancelled {
                    // The upstream cannot tell whose request a notification without a session
                    // concerns: the request's connection is closed instead. A request without
                    // a session (its revision has none) can be aborted until it is answered.
                    handle.abort();
                } else {
                    // A request of the session that was given up on (the relay's upstream
                    // timeout, its client's cancellation) holds its connection no longer (an
                    // upstream that never answers would keep one per request); the upstream is
                    // told, in order.
                    if let Some((handle, _)) = cancelled {
                        handle.abort();
                    }
                    // The upstream accepts a notification or a response at once (202); one that
                    // does not within `ORDERED_WAIT` holds up what follows no longer.
                    ordered = Some(Box::pin(async move {
                        if tokio::time::timeout(ORDERED_WAIT, sh.post(msg)).await.is_err() {
                            eprintln!(
                                "mcp-policy-gateway: the upstream did not accept a notification or \
                                 a response within {} s; going on without its answer",
                                ORDERED_WAIT.as_secs()
                            );
                        }
                        initialized
                    }));
                }
            }
            Some(done) = requests.next(), if !requests.is_empty() => {
                if initializing.as_ref().is_some_and(|(key, _)| *key == done) {
                    initializing = None;
                }
                in_flight.remove(&done);
                if let Some(next) = waiting.pop_front() {
                    launch(&shared, next, &mut requests, &mut in_flight);
                }
            }
            initialized = async { ordered.as_mut()?.await.then_some(()) }, if ordered.is_some() => {
                ordered = None;
                if initialized.is_some() && get_task.is_none() {
                    let sh = shared.clone();
                    get_task = Some(tokio::spawn(async move { sh.get_stream().await }));
                }
            }
            _ = async {
                match &initializing {
                    Some((_, until)) => tokio::time::sleep_until(*until).await,
                    None => std::future::pending().await,
                }
            }, if initializing.is_some() => initializing = None,
            _ = gone.wait_for(|g| *g) => break,
        }
    }
    if let Some(t) = get_task {
        t.abort();
    }
    shared.close_down();
    if locked(&shared.session).is_some() {
        // The server may not allow clients to end sessions (405): nothing to do then. Like
        // every request after `initialize`, it carries `MCP-Protocol-Version` too.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            shared.headers(shared.request(Method::DELETE)).send(),
        )
        .await;
    }
}

/// How many pages of `tools/list` the gateway reads to learn a tool's `Mcp-Param-*` headers.
const LIST_PAGES_MAX: usize = 20;
/// How long after listing the tools itself the gateway lists them again for an unseen tool.
const RELIST_AFTER: Duration = Duration::from_secs(10);

/// How long the gateway spends listing the tools itself before a call (every page together):
/// past this the call goes on without what the listing would have taught.
const LIST_WAIT: Duration = Duration::from_secs(10);

/// The response to `id` in an answer (JSON or SSE) to a request of the gateway's own: read as it
/// comes, up to [`MAX_MESSAGE_BYTES`] in all (an answer that never ends, or ends only after
/// more, is given up on and its connection closed); an event stream is read until the event
/// that answers.
async fn read_answer(resp: Response, id: &Value) -> Option<Value> {
    let is_answer = |m: &Value| m.get("id") == Some(id) && m.get("method").is_none();
    let sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut bytes: Vec<u8> = Vec::new();
    // Where the next event of a stream starts in `bytes`.
    let mut start = 0;
    // How far a blank line was looked for.
    let mut scanned = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.ok()?;
        if bytes.len() + chunk.len() > MAX_MESSAGE_BYTES {
            return None;
        }
        bytes.extend_from_slice(&chunk);
        if !sse {
            continue;
        }
        // The events complete so far; the search for a blank line resumes where the last one
        // stopped (a long event arriving in many pieces is not searched again each time).
        while let Some(end) = next_event_end(&bytes, start, &mut scanned) {
            let event = String::from_utf8_lossy(bytes.get(start..end.0).unwrap_or_default());
            start = end.1;
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if let Ok(m) = serde_json::from_str::<Value>(&data.join("\n"))
                && is_answer(&m)
            {
                return Some(m);
            }
        }
    }
    if sse {
        return None;
    }
    serde_json::from_slice::<Value>(&bytes).ok().filter(is_answer)
}

/// The end of the event that starts at `from` in `bytes` (a blank line ends it): where its text
/// ends and where the next event starts. The search starts at `scanned` (if past `from`), and
/// leaves it where the next search can start.
fn next_event_end(bytes: &[u8], from: usize, scanned: &mut usize) -> Option<(usize, usize)> {
    let at = (*scanned).max(from);
    let rest = bytes.get(at..)?;
    let found = rest.windows(2).enumerate().find_map(|(i, w)| match w {
        [b'\n', b'\n'] => Some((i, i + 2)),
        [b'\n', b'\r'] if rest.get(i + 2) == Some(&b'\n') => Some((i, i + 3)),
        _ => None,
    });
    match found {
        Some((end, next)) => {
            *scanned = at + next;
            Some((at + end, at + next))
        }
        None => {
            // A blank line may begin in the last two bytes: look at them again.
            *scanned = bytes.len().saturating_sub(2).max(from);
            None
        }
    }
}

/// Takes [`UPSTREAM_STATUS`] out of the data of an error the upstream sent itself (only the
/// gateway's HTTP upstream puts it there, in an error of its own).
pub fn strip_upstream_status(msg: &mut Value) {
    if let Some(data) = msg.pointer_mut("/error/data").and_then(Value::as_object_mut) {
        data.remove(UPSTREAM_STATUS);
    }
}

/// The key of the id of the request `msg`.
fn request_key(msg: &Value) -> Option<String> {
    match jsonrpc::classify(msg) {
        Kind::Request { id, .. } => Some(jsonrpc::id_key(id)),
        _ => None,
    }
}

/// The key of the request a `notifications/cancelled` names.
fn cancelled_request(msg: &Value) -> Option<String> {
    match jsonrpc::classify(msg) {
        Kind::Notification { method: "notifications/cancelled" } => {
            jsonrpc::params(msg).and_then(|p| p.get("requestId")).map(jsonrpc::id_key)
        }
        _ => None,
    }
}

impl Shared {
    async fn deliver(&self, msg: Value) {
        let down = locked(&self.down).clone();
        if let Some(down) = down {
            let _ = down.send(msg).await;
        }
    }

    fn close_down(&self) {
        locked(&self.down).take();
        let _ = self.gone.send(true);
    }

    /// A request of `method` to the upstream, with its credentials if its URL had any.
    fn request(&self, method: Method) -> RequestBuilder {
        let req = self.client.request(method, &self.url);
        match &self.authorization {
            Some(auth) => req.header(axum::http::header::AUTHORIZATION, auth.clone()),
            None => req,
        }
    }

    fn headers(&self, req: RequestBuilder) -> RequestBuilder {
        let mut req = req;
        if let Some(v) = locked(&self.session).clone() {
            req = req.header(SESSION_HEADER, v);
        }
        if let Some(v) = locked(&self.protocol).clone() {
            req = req.header(PROTOCOL_HEADER, v);
        }
        req
    }

    /// The headers of a request of a revision without `initialize` (it names its revision in
    /// its `_meta`, and no revision was negotiated): `MCP-Protocol-Version` (that revision),
    /// `Mcp-Method` and `Mcp-Name` (SEP-2243).
    fn inline_headers(&self, req: RequestBuilder, msg: &Value) -> RequestBuilder {
        use crate::relay::{INLINE_PROTOCOL_VERSIONS, encode_header_value, mcp_name};
        let Kind::Request { method, .. } = jsonrpc::classify(msg) else { return req };
        let Some(version) = crate::relay::meta_protocol_version(msg)
            .filter(|v| INLINE_PROTOCOL_VERSIONS.contains(v))
        else {
            return req;
        };
        if locked(&self.protocol).is_some() {
            return req;
        }
        let mut req = req.header(PROTOCOL_HEADER, version);
        if let Ok(v) = HeaderValue::from_str(method) {
            req = req.header(crate::relay::METHOD_HEADER, v);
        }
        if let Some(name) = mcp_name(method, jsonrpc::params(msg))
            && let Ok(v) = HeaderValue::from_str(&encode_header_value(name))
        {
            req = req.header(crate::relay::NAME_HEADER, v);
            if method == "tools/call" {
                let declared = self.params.get(name);
                let arguments = jsonrpc::params(msg).and_then(|p| p.get("arguments"));
                let declared = declared.as_deref().map_or(&[][..], Vec::as_slice);
                for (header, value) in crate::relay::param_header_values(declared, arguments) {
                    // A name the upstream's schema made up that is no header name (a space, a
                    // line break) would fail the whole request: it is left out instead.
                    if let Ok(name) = HeaderName::from_bytes(header.as_bytes())
                        && let Ok(v) = HeaderValue::from_str(&value)
                    {
                        req = req.header(name, v);
                    }
                }
            }
        }
        req
    }

    /// Records the `Mcp-Param-*` declarations of the tools a `tools/list` answer lists.
    fn learn_params(&self, msg: &Value) {
        self.params.learn_answer(msg);
    }

    /// Before a sessionless call of a tool whose schema has not been seen: lists the upstream's
    /// tools (without a session, with the call's `_meta`), so that the call carries the
    /// `Mcp-Param-*` headers its schema declares. At most once per [`RELIST_AFTER`]: calls of
    /// names the upstream does not list (a policy may allow a pattern) cost no listing each,
    /// and are not remembered (nothing grows with them).
    async fn learn_tool(&self, msg: &Value) {
        let Some(params) = jsonrpc::params(msg) else { return };
        let Some(tool) = params.get("name").and_then(Value::as_str) else { return };
        if self.params.get(tool).is_some() {
            return;
        }
        // A listing under way may teach this tool: wait for it, then look again.
        let _listing = self.listing.lock().await;
        if self.params.get(tool).is_some() {
            return;
        }
        {
            let mut listed = locked(&self.listed);
            if listed.is_some_and(|t| t.elapsed() < RELIST_AFTER) {
                return;
            }
            *listed = Some(std::time::Instant::now());
        }
        let meta = params.get("_meta").cloned().unwrap_or_else(|| serde_json::json!({}));
        // An upstream that never answers (or answers forever) holds up the call no longer
        // than this.
        let _ = tokio::time::timeout(LIST_WAIT, self.list_tools(meta)).await;
    }

    /// Lists the upstream's tools without a session (with `meta`), learning their
    /// `Mcp-Param-*` declarations, at most [`LIST_PAGES_MAX`] pages.
    async fn list_tools(&self, meta: Value) {
        let mut cursor: Option<Value> = None;
        for page in 0..LIST_PAGES_MAX {
            let mut list_params = serde_json::Map::new();
            list_params.insert("_meta".into(), meta.clone());
            if let Some(c) = cursor.take() {
                list_params.insert("cursor".into(), c);
            }
            let id = Value::String(format!("mcp-policy-gateway-tools-{page}"));
            let list = jsonrpc::request(id.clone(), "tools/list", Value::Object(list_params));
            let Ok(resp) = self.inline_headers(self.post_of(&list), &list).send().await else {
                break;
            };
            if !resp.status().is_success() {
                break;
            }
            let Some(answer) = read_answer(resp, &id).await else { break };
            self.learn_params(&answer);
            match answer.pointer("/result/nextCursor") {
                Some(c @ Value::String(_)) => cursor = Some(c.clone()),
                _ => break,
            }
        }
    }

    /// Whether `msg` is sent without a session: a request of a revision without `initialize`
    /// (its `_meta` names it), no revision having been negotiated.
    fn sessionless(&self, msg: &Value) -> bool {
        crate::relay::meta_protocol_version(msg)
            .is_some_and(|v| crate::relay::INLINE_PROTOCOL_VERSIONS.contains(&v))
            && locked(&self.protocol).is_none()
    }

    /// A POST of `msg` to the upstream, accepting JSON and event streams.
    fn post_of(&self, msg: &Value) -> RequestBuilder {
        self.request(Method::POST)
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(msg).unwrap_or_default())
    }

    /// Tells the relay that a request failed (nothing for a notification or a response).
    async fn fail(&self, id: Option<&Value>, why: String) {
        match id {
            Some(id) => {
                self.deliver(jsonrpc::error(id.clone(), jsonrpc::INTERNAL_ERROR, why)).await;
            }
            None => eprintln!("mcp-policy-gateway: {why}"),
        }
    }

    /// Receives a message from the upstream: records the negotiated version from the
    /// `initialize` result, and passes it on.
    async fn receive(&self, mut msg: Value, init_id: Option<&Value>) {
        // Only the gateway says which HTTP status refused a request.
        strip_upstream_status(&mut msg);
        self.learn_params(&msg);
        if let Some(init_id) = init_id
            && msg.get("id") == Some(init_id)
            && let Some(v) = msg.pointer("/result/protocolVersion").and_then(Value::as_str)
        {
            *locked(&self.protocol) = HeaderValue::from_str(v).ok();
        }
        self.deliver(msg).await;
    }

    async fn post(&self, msg: Value) {
        let (id, is_init) = match jsonrpc::classify(&msg) {
            Kind::Request { id, method } => (Some(id.clone()), method == "initialize"),
            _ => (None, false),
        };
        let call = matches!(jsonrpc::classify(&msg), Kind::Request { method: "tools/call", .. });
        let sessionless = self.sessionless(&msg);
        if call && sessionless {
            self.learn_tool(&msg).await;
        }
        let req = self.inline_headers(self.headers(self.post_of(&msg)), &msg);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let why = format!("cannot reach the upstream `{}`: {e}", self.url);
                self.fail(id.as_ref(), why).await;
                return;
            }
        };
        let status = resp.status();
        if is_init
            && status.is_success()
            && let Some(s) = resp.headers().get(SESSION_HEADER)
        {
            *locked(&self.session) = Some(s.clone());
        }
        if status == StatusCode::NOT_FOUND && locked(&self.session).is_some() {
            self.fail(id.as_ref(), "the upstream ended the MCP session (HTTP 404)".into()).await;
            self.close_down();
            return;
        }
        if !status.is_success() {
            let text = resp.text(2000).await;
            let shown: String = text.chars().take(500).collect();
            let why = format!("the upstream answered HTTP {status}: {shown}");
            match id.as_ref() {
                // A request without a session that the upstream refuses (a server of an older
                // revision answers 400: it does not know `2026-07-28`): the status goes back to
                // the client, whose fallback to `initialize` depends on it.
                // Not an authentication challenge (401, 403, 407): it concerns the gateway's
                // credentials toward the upstream, and a client that authenticated to the
                // gateway would take it for its own.
                Some(id)
                    if sessionless
                        && status.is_client_error()
                        && !matches!(status.as_u16(), 401 | 403 | 407) =>
                {
                    let mut error = jsonrpc::error(id.clone(), jsonrpc::INTERNAL_ERROR, why);
                    if let Some(e) = error.get_mut("error").and_then(Value::as_object_mut) {
                        e.insert("data".into(), json!({UPSTREAM_STATUS: status.as_u16()}));
                    }
                    self.deliver(error).await;
                }
                _ => self.fail(id.as_ref(), why).await,
            }
            return;
        }
        if id.is_none() {
            return;
        }
        let init_id = if is_init { id.as_ref() } else { None };
        // Without a session, what the upstream sends on this request's stream concerns this
        // request alone: it is marked as such for the relay (several clients share it).
        let related = if self.sessionless(&msg) { id.as_ref() } else { None };
        let answered = self.read_body(resp, id.as_ref(), init_id, related).await;
        if !answered {
            self.fail(
                id.as_ref(),
                "the upstream closed its answer stream before answering this request".into(),
            )
            .await;
        }
    }

    /// Reads a response body (JSON or SSE) and passes its messages on; whether the response to
    /// `id` was among them. With `related`, each notification in it is marked as concerning
    /// that request ([`RELATED_REQUEST`](crate::relay::RELATED_REQUEST)).
    async fn read_body(
        &self,
        resp: Response,
        id: Option<&Value>,
        init_id: Option<&Value>,
        related: Option<&Value>,
    ) -> bool {
        let mark = |m: &mut Value| {
            if let Some(obj) = m.as_object_mut() {
                // Only the gateway says which request a message concerns.
                obj.remove(crate::relay::RELATED_REQUEST);
                if let Some(related) = related
                    && obj.contains_key("method")
                    && !obj.contains_key("id")
                {
                    obj.insert(crate::relay::RELATED_REQUEST.into(), related.clone());
                }
            }
        };
        let sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let is_answer =
            |m: &Value| id.is_some_and(|id| m.get("id") == Some(id) && m.get("method").is_none());
        if !sse {
            // Read as it comes, given up past the bound (not read whole, then measured).
            let mut body = resp.bytes_stream();
            let mut bytes: Vec<u8> = Vec::new();
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { return false };
                if bytes.len() + chunk.len() > MAX_MESSAGE_BYTES {
                    eprintln!(
                        "mcp-policy-gateway: the upstream's answer is longer than \
                         {MAX_MESSAGE_BYTES} bytes; dropped"
                    );
                    return false;
                }
                bytes.extend_from_slice(&chunk);
            }
            let messages = match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Array(a)) => a,
                Ok(v) => vec![v],
                Err(e) => {
                    eprintln!("mcp-policy-gateway: the upstream answered with invalid JSON: {e}");
                    return false;
                }
            };
            let mut answered = false;
            for mut m in messages {
                answered |= is_answer(&m);
                mark(&mut m);
                self.receive(m, init_id).await;
            }
            return answered;
        }
        // The bytes read since the last event: an event that never ends (a data line without
        // end) ends the stream past the bound, rather than growing the parser's buffer.
        let since_event = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = since_event.clone();
        let body = resp.bytes_stream().take_while(move |chunk| {
            let len = chunk.as_ref().map_or(0, bytes::Bytes::len);
            let read = counted.fetch_add(len, std::sync::atomic::Ordering::Relaxed) + len;
            if read > MAX_MESSAGE_BYTES {
                eprintln!(
                    "mcp-policy-gateway: an event from the upstream is longer than \
                     {MAX_MESSAGE_BYTES} bytes; its stream is closed"
                );
            }
            std::future::ready(read <= MAX_MESSAGE_BYTES)
        });
        let mut events = sse_stream::SseStream::from_bytes_stream(body);
        let mut answered = false;
        let mut drain_until = None;
        loop {
            let event = if let Some(until) = drain_until {
                // The request is answered; the server ends the stream now (the specification
                // says it should). Read it to its end, briefly, so that the connection goes back
                // to the pool rather than being closed with the rest unread; a stream left open
                // is dropped.
                tokio::time::timeout_at(until, events.next()).await.unwrap_or_default()
            } else {
                events.next().await
            };
            let Some(Ok(event)) = event else { break };
            since_event.store(0, std::sync::atomic::Ordering::Relaxed);
            let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else { continue };
            match serde_json::from_str::<Value>(&data) {
                Ok(mut m) => {
                    if is_answer(&m) && !answered {
                        answered = true;
                        drain_until = Some(tokio::time::Instant::now() + DRAIN_WAIT);
                    }
                    mark(&mut m);
                    self.receive(m, init_id).await;
                }
                Err(e) => eprintln!(
                    "mcp-policy-gateway: the upstream sent an event that is not JSON ({e}); dropped"
                ),
            }
        }
        answered
    }

    /// The GET stream of server-initiated messages, reopened when it ends.
    async fn get_stream(&self) {
        let mut failures = 0;
        while failures < GET_RETRIES && !*self.gone.borrow() {
            let req = self.request(Method::GET).header(ACCEPT, "text/event-stream");
            let resp = match self.headers(req).send().await {
                Ok(r) => r,
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
                return; // The server has no such stream.
            }
            if !resp.status().is_success() {
                failures += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            failures = 0;
            self.read_body(resp, None, None, None).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// An upstream listing ever new tools cannot grow what the gateway remembers of them.
    #[test]
    fn learned_tools_are_bounded() {
        use crate::relay::LEARNED_TOOLS_MAX;
        let params = ParamSchemas::default();
        let schema = serde_json::json!({"properties": {"r": {"x-mcp-header": "R"}}});
        for round in 0..3 {
            let tools: Vec<Value> = (0..LEARNED_TOOLS_MAX / 2 + 7)
                .map(
                    |i| serde_json::json!({"name": format!("t{round}-{i}"), "inputSchema": schema}),
                )
                .collect();
            params.learn_answer(&serde_json::json!({"result": {"tools": tools}}));
            assert!(params.len() <= LEARNED_TOOLS_MAX, "{}", params.len());
        }
        // The latest listing is known.
        assert_eq!(params.get(&format!("t2-{}", LEARNED_TOOLS_MAX / 2)).unwrap().len(), 1);
    }

    /// An upstream on a raw socket: the bytes of the first request it gets (head and body),
    /// answered with a JSON-RPC result for id 1.
    async fn capture_one(listener: tokio::net::TcpListener) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\"id\":1") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(body.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Credentials in the upstream URL (`http://user:password@host/`) are sent as HTTP Basic
    /// authentication (as the gateway's earlier client did), and appear in no error a client
    /// can see.
    #[tokio::test]
    async fn credentials_in_the_url_are_sent_and_never_shown() {
        use base64::Engine;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(capture_one(listener));
        let url = format!("http://us%65r:s3cr%40t@127.0.0.1:{port}/mcp?tenant=a");
        let (mut link, _up) = connect(&url).unwrap();
        let ping = jsonrpc::request(json!(1), "ping", json!({}));
        link.tx.send(ping).await.unwrap();
        let answer = link.rx.recv().await.unwrap();
        assert_eq!(answer["result"], json!({}), "{answer}");
        let request = server.await.unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode("user:s3cr@t");
        let lower = request.to_lowercase();
        assert!(
            lower.contains(&format!("authorization: basic {}", expected.to_lowercase())),
            "{request}"
        );
        // The query string is kept; the credentials are not in the request line or Host.
        assert!(request.starts_with("POST /mcp?tenant=a HTTP/1.1\r\n"), "{request}");
        assert!(!lower.contains("s3cr"), "{request}");

        // An upstream that cannot be reached: the error the client gets names the URL without
        // its password.
        let closed =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (mut link, _up) =
            connect(&format!("http://user:s3cr%40t@127.0.0.1:{closed}/mcp")).unwrap();
        link.tx.send(jsonrpc::request(json!(2), "ping", json!({}))).await.unwrap();
        let error = link.rx.recv().await.unwrap().to_string();
        assert!(error.contains("cannot reach the upstream"), "{error}");
        assert!(!error.contains("s3cr"), "{error}");
    }

    /// An upstream URL the gateway refuses at start is shown without its password.
    #[test]
    fn a_refused_url_is_shown_without_its_password() {
        for url in ["http://u:s3cret@[::1/mcp", "https://u:s3cret@host/mcp", "ftp://u:s3cret@h/"] {
            let Err(e) = connect(url) else { panic!("`{url}` accepted") };
            assert!(!e.contains("s3cret") && e.contains("u:***@"), "{e}");
        }
        assert_eq!(redacted("http://h:1/a@b"), "http://h:1/a@b");
    }

    /// An upstream that accepts notifications (202) but never answers a request; counts the
    /// connections that carried a request and that the gateway closed.
    async fn never_answers(
        listener: tokio::net::TcpListener,
        holding: Arc<std::sync::atomic::AtomicUsize>,
        closed: Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (holding, closed) = (holding.clone(), closed.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 4096];
                let mut held = false;
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() < end + 4 + len {
                        continue;
                    }
                    if text.contains("\"method\":\"ping\"") {
                        // Never answered; read on to see the connection closed.
                        held = true;
                        holding.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    } else {
                        socket
                            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .unwrap();
                    }
                    got.drain(..end + 4 + len);
                }
                if held {
                    closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    }

    /// A connection to an upstream that never answers ([`never_answers`]): the link, its
    /// handle, and how many requests it holds and how many of their connections closed.
    async fn never_answering() -> (UpstreamLink, HttpUpstream, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let holding = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        tokio::spawn(never_answers(listener, holding.clone(), closed.clone()));
        let (link, up) = connect(&format!("http://127.0.0.1:{port}/mcp")).unwrap();
        (link, up, holding, closed)
    }

    /// A request of a session that the relay gave up on (its upstream timeout, its client's
    /// cancellation) holds no connection to the upstream: an upstream that never answers
    /// cannot make the gateway keep one descriptor per request until the session ends.
    #[tokio::test]
    async fn a_cancelled_request_holds_no_connection() {
        let (link, _up, holding, closed) = never_answering().await;
        for i in 0..5 {
            link.tx.send(jsonrpc::request(json!(i), "ping", json!({}))).await.unwrap();
            // Cancelled once the upstream holds it (a request not sent yet holds nothing).
            while holding.load(std::sync::atomic::Ordering::SeqCst) <= i {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let cancel = jsonrpc::notification("notifications/cancelled", json!({"requestId": i}));
            link.tx.send(cancel).await.unwrap();
        }
        // Each held request's connection is closed (the upstream sees its end); without that,
        // they stay open until the session ends.
        for _ in 0..3000 {
            if closed.load(std::sync::atomic::Ordering::SeqCst) == 5 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{} of 5 cancelled requests' connections closed",
            closed.load(std::sync::atomic::Ordering::SeqCst)
        );
    }

    /// Past [`MAX_IN_FLIGHT`] requests of one session in flight, the next wait their turn: a
    /// client's batch of thousands toward an upstream that holds them cannot make the gateway
    /// open thousands of connections (descriptors).
    #[tokio::test]
    async fn requests_in_flight_are_bounded() {
        use std::sync::atomic::Ordering::SeqCst;
        let (link, _up, holding, closed) = never_answering().await;
        let total = MAX_IN_FLIGHT + 50;
        for i in 0..total {
            link.tx.send(jsonrpc::request(json!(i), "ping", json!({}))).await.unwrap();
        }
        // A request that waits its turn and is cancelled is never sent.
        let last = json!({"requestId": total - 1});
        link.tx.send(jsonrpc::notification("notifications/cancelled", last)).await.unwrap();
        let wait = |counter: Arc<std::sync::atomic::AtomicUsize>, want: usize| async move {
            for _ in 0..3000 {
                if counter.load(SeqCst) >= want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("{} of {want}", counter.load(SeqCst));
        };
        wait(holding.clone(), MAX_IN_FLIGHT).await;
        // One ends (cancelled): the next takes its place, and no more.
        let first = json!({"requestId": 0});
        link.tx.send(jsonrpc::notification("notifications/cancelled", first)).await.unwrap();
        wait(closed.clone(), 1).await;
        wait(holding.clone(), MAX_IN_FLIGHT + 1).await;
        assert_eq!(holding.load(SeqCst), MAX_IN_FLIGHT + 1);
        // The rest go as the ones before them end; the cancelled one never does.
        for i in 1..total - 1 {
            let cancel = jsonrpc::notification("notifications/cancelled", json!({"requestId": i}));
            link.tx.send(cancel).await.unwrap();
            wait(closed.clone(), i + 1).await;
        }
        assert_eq!(holding.load(SeqCst), total - 1);
    }

    /// A sessionless request refused by the upstream with an HTTP client error carries that
    /// status for the listener, except an authentication challenge (401, 403, 407): those speak
    /// of the gateway's credentials toward the upstream, and the client, which authenticated to
    /// the gateway, would take them for its own (and start over its sign-in).
    #[tokio::test]
    async fn an_upstream_auth_challenge_is_not_the_clients() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for (status, passed) in [(400, true), (404, true), (401, false), (403, false), (407, false)]
        {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await.unwrap();
                let head = format!("HTTP/1.1 {status} No\r\ncontent-length: 2\r\n\r\nno");
                socket.write_all(head.as_bytes()).await.unwrap();
            });
            let (mut link, _up) = connect(&format!("http://127.0.0.1:{port}/mcp")).unwrap();
            let meta = json!({crate::relay::META_PROTOCOL_VERSION: "2026-07-28"});
            link.tx.send(jsonrpc::request(json!(1), "ping", json!({"_meta": meta}))).await.unwrap();
            let error = link.rx.recv().await.unwrap();
            let said =
                error.pointer(&format!("/error/data/{}", UPSTREAM_STATUS.replace('/', "~1")));
            assert_eq!(said.is_some(), passed, "{status}: {error}");
        }
    }

    /// What the scripted upstream of [`a_session_is_kept_sent_and_deleted_and_a_404_ends_it`]
    /// saw: each request's method, `Mcp-Session-Id`, `MCP-Protocol-Version` and JSON-RPC method.
    type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>, Option<String>)>>>;

    /// A streamable-HTTP upstream: `initialize` gives the session `s-1`; a notification is
    /// 202; `tools/call` of `slow` never answers, of `forget` is 404 (the server forgot the
    /// session); anything else `{}`; GET is 405 (no stream of its own); DELETE 200.
    async fn scripted(seen: Seen) -> String {
        use axum::http::{HeaderMap, Method, StatusCode};
        use axum::response::IntoResponse;
        async fn handle(
            axum::extract::State(seen): axum::extract::State<Seen>,
            method: Method,
            headers: HeaderMap,
            body: String,
        ) -> axum::response::Response {
            let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
            let msg: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let rpc = msg["method"].as_str().map(str::to_owned);
            locked(&seen).push((
                method.to_string(),
                header("mcp-session-id"),
                header("mcp-protocol-version"),
                rpc.clone(),
            ));
            if method == Method::GET {
                return StatusCode::METHOD_NOT_ALLOWED.into_response();
            }
            if method == Method::DELETE {
                return StatusCode::OK.into_response();
            }
            if msg.get("id").is_none() {
                return StatusCode::ACCEPTED.into_response();
            }
            let result = match (rpc.as_deref(), msg["params"]["name"].as_str()) {
                (Some("initialize"), _) => {
                    let r = json!({"jsonrpc": "2.0", "id": msg["id"], "result": {
                        "protocolVersion": "2025-06-18", "capabilities": {},
                        "serverInfo": {"name": "scripted", "version": "1"}}});
                    return ([("mcp-session-id", "s-1")], axum::Json(r)).into_response();
                }
                (Some("tools/call"), Some("slow")) => {
                    std::future::pending::<()>().await;
                    json!({})
                }
                (Some("tools/call"), Some("forget")) => {
                    return StatusCode::NOT_FOUND.into_response();
                }
                _ => json!({}),
            };
            axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": result})).into_response()
        }
        let app = axum::Router::new().route("/mcp", axum::routing::any(handle)).with_state(seen);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    /// docs/gateway-http.md, "An HTTP upstream": the `Mcp-Session-Id` given on `initialize` is
    /// sent on every later request with `MCP-Protocol-Version`; the GET stream is asked for
    /// after `notifications/initialized` (405: the server has none); the session is DELETEd
    /// at the end; a 404 for the session ends the link (and so the relay).
    #[tokio::test]
    async fn a_session_is_kept_sent_and_deleted_and_a_404_ends_it() {
        let seen = Seen::default();
        let url = scripted(seen.clone()).await;
        let (mut link, up) = connect(&url).unwrap();
        let initialize = || {
            jsonrpc::request(
                json!(1),
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}),
            )
        };
        link.tx.send(initialize()).await.unwrap();
        assert_eq!(link.rx.recv().await.unwrap()["id"], 1);
        link.tx
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .unwrap();
        link.tx.send(jsonrpc::request(json!(2), "ping", json!({}))).await.unwrap();
        assert_eq!(link.rx.recv().await.unwrap()["id"], 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !locked(&seen).iter().any(|s| s.0 == "GET") {
            assert!(std::time::Instant::now() < deadline, "no GET stream was asked for");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(link);
        up.finish(Duration::from_secs(30)).await;
        let seen_now = locked(&seen).clone();
        let s1 = (Some("s-1".to_owned()), Some("2025-06-18".to_owned()));
        for (method, session, version, rpc) in &seen_now {
            match rpc.as_deref() {
                Some("initialize") => assert_eq!(session, &None, "{seen_now:?}"),
                _ => assert_eq!((session, version), (&s1.0, &s1.1), "{method} {rpc:?}"),
            }
        }
        let methods: Vec<&str> = seen_now.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(methods.iter().filter(|m| **m == "DELETE").count(), 1, "{seen_now:?}");
        assert_eq!(methods.last(), Some(&"DELETE"), "{seen_now:?}");
        let initialized = seen_now
            .iter()
            .position(|s| s.3.as_deref() == Some("notifications/initialized"))
            .unwrap();
        let get = methods.iter().position(|m| *m == "GET").unwrap();
        assert!(initialized < get, "the GET stream after `initialized`: {seen_now:?}");

        // A 404 for the session: the upstream has gone.
        let seen = Seen::default();
        let url = scripted(seen.clone()).await;
        let (mut link, _up) = connect(&url).unwrap();
        link.tx.send(initialize()).await.unwrap();
        assert_eq!(link.rx.recv().await.unwrap()["id"], 1);
        let call = |id: i64, name: &str| {
            jsonrpc::request(json!(id), "tools/call", json!({"name": name, "arguments": {}}))
        };
        link.tx.send(call(2, "slow")).await.unwrap();
        while !locked(&seen).iter().any(|s| s.3.as_deref() == Some("tools/call")) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        link.tx.send(call(3, "forget")).await.unwrap();
        let mut errors = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(m) = link.rx.recv().await {
                assert!(m["error"].is_object(), "{m}");
                errors.push(m["id"].clone());
            }
        })
        .await;
        // The link ends: the relay then answers what still waits (`slow`) with errors
        // (`relay.rs`: `the_upstream_going_answers_every_waiting_request`).
        assert!(ended.is_ok(), "the link did not end after the 404: {errors:?}");
        assert!(errors.contains(&json!(3)), "{errors:?}");
    }

    /// An upstream that never accepts a notification holds up what follows it for a while, not
    /// for ever: the session's next request is still sent and answered.
    #[tokio::test]
    async fn a_notification_never_accepted_holds_up_nothing_for_ever() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                        // Requests are answered; a notification never is.
                        if String::from_utf8_lossy(&got).contains("\"method\":\"ping\"") {
                            let body = r#"{"jsonrpc":"2.0","id":2,"result":{}}"#;
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            socket.write_all(head.as_bytes()).await.unwrap();
                            got.clear();
                        }
                    }
                });
            }
        });
        let (mut link, _up) = connect(&format!("http://127.0.0.1:{port}/mcp")).unwrap();
        let note = jsonrpc::notification("notifications/roots/list_changed", json!({}));
        link.tx.send(note).await.unwrap();
        link.tx.send(jsonrpc::request(json!(2), "ping", json!({}))).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(120), link.rx.recv()).await;
        let answer = answer.expect("the request after the notification was never sent").unwrap();
        assert_eq!(answer["result"], json!({}), "{answer}");
    }

    /// An event-stream answer is read up to the event that answers, whatever its line ends.
    #[test]
    fn event_ends_are_found_once() {
        let bytes = b"data: 1\r\n\r\ndata: 2\n\ndata: 3";
        let mut scanned = 0;
        let first = next_event_end(bytes, 0, &mut scanned).unwrap();
        assert_eq!(&bytes[..first.0], b"data: 1\r");
        let second = next_event_end(bytes, first.1, &mut scanned).unwrap();
        assert_eq!(&bytes[first.1..second.0], b"data: 2");
        assert!(next_event_end(bytes, second.1, &mut scanned).is_none());
        assert_eq!(scanned, bytes.len() - 2);
    }
}
