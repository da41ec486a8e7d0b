//! The client speaks MCP streamable HTTP to the gateway (the server side of the MCP
//! specification's transport, revisions 2025-03-26 to 2025-11-25), at `http://ADDR/mcp`.
//!
//! - `POST /mcp` carries JSON-RPC messages (one, or a batch in a session of 2025-03-26: in any
//!   other session a batch is refused whole with -32600 and nothing of it is relayed). Requests
//!   are answered on a server-sent-event stream when the client accepts `text/event-stream`
//!   (the stream also carries what the upstream or the gateway asks the client meanwhile, such
//!   as an approval), otherwise as `application/json`; one request whose response is the first
//!   message for it (within [`JSON_ANSWER_WAIT`]) is answered as `application/json` either way.
//!   Notifications and responses get 202.
//! - `initialize` (without `Mcp-Session-Id`) creates a session, whose id is returned in the
//!   `Mcp-Session-Id` header and required on every later request (400 without, 404 for an
//!   unknown or ended one). Each session has its own [`Relay`] and its own upstream: a child
//!   process per session for a command upstream, an upstream session for a URL.
//! - `GET /mcp` opens the stream of server-initiated messages (one per session; 409 for a
//!   second); messages with no stream to go to wait (at most [`BACKLOG_MAX`]) for one.
//! - `DELETE /mcp` ends the session (and its upstream).
//! - `MCP-Protocol-Version`, when sent after initialization, must be a revision the gateway
//!   speaks (400 otherwise).
//! - Revision 2026-07-28 has no `initialize` and no sessions: a POST without `Mcp-Session-Id`
//!   whose `MCP-Protocol-Version` is `2026-07-28` carries one request, whose `_meta` names the
//!   same revision and whose `Mcp-Method` / `Mcp-Name` headers say what its body says (400
//!   otherwise). It is decided with the identity of that request, in no session, through the
//!   relay of that identity (one per principal and call context, with its own upstream; the
//!   identity's approval rounds outlive it); its answer is JSON. GET and DELETE are 405 for it.
//! - Every request is checked against the [`OriginRule`] (403) and authenticated (401 with
//!   `WWW-Authenticate: Bearer`); a session is bound to the identity that created it, and a
//!   request of another identity gets 404 for it.
//! - `GET /healthz` answers `ok`; `GET /metrics` the Prometheus text; `GET /approvals` and
//!   `POST /approvals/{id}` the admin API when enabled.

// Handlers answer refusals with a ready `Response` as their error.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use mcp_policy::{AsyncCounterStore, Evaluator};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::admin::AdminApi;
use crate::auth::{AuthError, Authenticator, Identity};
use crate::decision_log::DecisionLog;
use crate::guard::{Guard, Mode};
use crate::jsonrpc::{self, Kind};
use crate::metrics::Metrics;
use crate::origin::OriginRule;
use crate::relay::{
    INLINE_PROTOCOL_VERSIONS, METHOD_HEADER, NAME_HEADER, PROTOCOL_VERSIONS, ParamSchemas,
    RELATED_REQUEST, Relay, RelayConfig, RelayEnd, decode_header_value, mcp_name,
    meta_protocol_version,
};
use crate::rounds::{ApprovalRounds, MAX_KEPT_ROUNDS, UpstreamRounds};
use crate::transport::{CHANNEL_CAPACITY, ClientTx, Inbound, UPSTREAM_STATUS, UpstreamLink};
use crate::upstream;

/// The session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header.
pub const PROTOCOL_HEADER: &str = "mcp-protocol-version";
/// The largest request body (16 MiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The most server-initiated messages kept for a session with no stream open.
pub const BACKLOG_MAX: usize = 1000;
/// The most server-initiated messages an open stream (GET, or a POST answered as SSE) may have
/// waiting for its client: a stream that falls this far behind (a client that stopped reading
/// while the upstream goes on sending) takes no more; the next go to another stream of the
/// session or wait in its backlog, and the stream ends once the client has read what it holds.
pub const STREAM_BEHIND_MAX: usize = 1000;
/// How many progress notifications (and other notifications the upstream sent for its request)
/// a sessionless POST may have waiting for its client; past this the upstream's next ones are
/// dropped until the client reads (a client that never reads cannot make a flood of progress
/// pile up).
pub const INLINE_PROGRESS_MAX: usize = 256;
/// The one protocol revision with JSON-RPC batches.
pub const BATCH_VERSION: &str = "2025-03-26";
/// How long a command upstream gets to exit by itself when its session ends.
const UPSTREAM_GRACE: Duration = Duration::from_secs(3);

/// Where each session's upstream is.
#[derive(Debug, Clone)]
pub enum UpstreamSpec {
    /// A command speaking MCP on stdio: one child process per session.
    Command(Vec<OsString>),
    /// A streamable-HTTP server: one upstream session per session.
    Url(String),
}

enum UpstreamHandle {
    Child(upstream::stdio::ChildProcess),
    Http(upstream::http::HttpUpstream),
}

impl UpstreamSpec {
    fn connect(&self) -> Result<(UpstreamLink, UpstreamHandle), String> {
        match self {
            UpstreamSpec::Command(cmd) => upstream::stdio::spawn(cmd)
                .map(|(l, c)| (l, UpstreamHandle::Child(c)))
                .map_err(|e| format!("cannot start the upstream: {e}")),
            UpstreamSpec::Url(url) => {
                upstream::http::connect(url).map(|(l, h)| (l, UpstreamHandle::Http(h)))
            }
        }
    }
}

/// The upstream of a relay of clients without a session, and what the listener needs of it to
/// check their `Mcp-Param-*` headers.
struct InlineUpstream {
    link: UpstreamLink,
    handle: UpstreamHandle,
    params: InlineParams,
    /// An HTTP upstream: it marks the notifications it receives for one request, which go to
    /// that request's POST.
    attributed: bool,
}

impl UpstreamSpec {
    /// The upstream of a relay of clients without a session: its tools' `Mcp-Param-*`
    /// declarations are learned (by the HTTP connection, or by the relay from the listings it
    /// relays) into one place the listener checks calls against.
    fn connect_inline(&self) -> Result<InlineUpstream, String> {
        let schemas = Arc::new(ParamSchemas::default());
        match self {
            UpstreamSpec::Command(_) => {
                let (link, handle) = self.connect()?;
                let params = InlineParams { schemas, lister: None };
                Ok(InlineUpstream { link, handle, params, attributed: false })
            }
            UpstreamSpec::Url(url) => {
                let (link, h) = upstream::http::connect_with(url, schemas.clone())?;
                let params = InlineParams { schemas, lister: Some(h.lister()) };
                let handle = UpstreamHandle::Http(h);
                Ok(InlineUpstream { link, handle, params, attributed: true })
            }
        }
    }
}

/// What the relay of clients without a session knows of its tools' `Mcp-Param-*` headers.
struct InlineParams {
    schemas: Arc<ParamSchemas>,
    /// An HTTP upstream lists its tools before a call of one not listed yet.
    lister: Option<upstream::http::ToolLister>,
}

impl UpstreamHandle {
    async fn finish(self, end: RelayEnd) {
        match self {
            UpstreamHandle::Child(mut c) => {
                let grace =
                    if end == RelayEnd::UpstreamClosed { Duration::ZERO } else { UPSTREAM_GRACE };
                c.shutdown(grace).await;
            }
            UpstreamHandle::Http(h) => h.finish(Duration::from_secs(3)).await,
        }
    }
}

/// What the listener needs.
pub struct Config<S> {
    /// The evaluator shared by every session (one set of counters).
    pub evaluator: Arc<Evaluator<S>>,
    /// Enforce or monitor.
    pub mode: Mode,
    /// The decision log.
    pub log: Arc<DecisionLog>,
    /// How requests are authenticated.
    pub auth: Authenticator,
    /// The `Host` / `Origin` rule.
    pub origin: OriginRule,
    /// Each session's upstream.
    pub upstream: UpstreamSpec,
    /// The metrics served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The admin API, when enabled: approvals out of band (the evaluator's pending approvals).
    pub admin: Option<AdminApi>,
    /// The most sessions at once.
    pub max_sessions: usize,
    /// How long a request may wait for the upstream's answer (`--upstream-timeout`).
    pub upstream_timeout: Option<Duration>,
    /// A session idle this long is ended.
    pub idle_timeout: Duration,
}

/// The listener's state.
pub struct Server<S> {
    config: Config<S>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// The relays of clients without a session (revisions without `initialize`), one per
    /// identity: by the principal and the call context of the requests they serve.
    inline: Mutex<HashMap<String, Arc<Session>>>,
    /// The approval rounds of clients without a session, each owned by its identity: they
    /// outlive the identity's relay (see [`ApprovalRounds`]).
    rounds: Arc<ApprovalRounds>,
    /// The upstream's own `input_required` rounds that clients without a session went through:
    /// they outlive the identity's relay too (see [`UpstreamRounds`]).
    upstream_rounds: Arc<UpstreamRounds>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct Session {
    id: String,
    principal: String,
    /// The relay of clients without a session: only responses are routed (each to the POST of
    /// its request); nothing else has a stream to go to.
    inline: bool,
    /// The protocol revision negotiated by the session's `initialize`.
    protocol: Arc<std::sync::OnceLock<String>>,
    /// The relay of clients without a session: its tools' `Mcp-Param-*` declarations.
    params: Option<InlineParams>,
    inbound: Mutex<Option<mpsc::Sender<Inbound>>>,
    routes: Mutex<Routes>,
    last_active: Mutex<Instant>,
}

#[derive(Default)]
struct Routes {
    /// The key of a client request's id → the POST stream waiting for its response.
    waiters: HashMap<String, (u64, mpsc::UnboundedSender<Value>)>,
    /// The POST streams open as SSE (they can carry server-initiated messages).
    posts: Vec<Outlet>,
    /// The GET stream.
    standalone: Option<Outlet>,
    /// Relays of clients without a session: the progress token a request travels with → its
    /// POST (stream, sender), the client's own token, and how many of its progress
    /// notifications wait for the client (at most [`INLINE_PROGRESS_MAX`]).
    progress: HashMap<String, (u64, mpsc::UnboundedSender<Value>, Value, Arc<AtomicUsize>)>,
    /// Relays of clients without a session: the key of a request's id → its POST (stream)
    /// and how many notifications wait for its client (as for `progress`); a notification
    /// the upstream sent for the request goes to its POST (the sender of `waiters`).
    related: HashMap<String, (u64, Arc<AtomicUsize>)>,
    backlog: VecDeque<Value>,
    ended: bool,
}

/// A stream that server-initiated messages can be sent on, and how many of them it holds
/// that its client has not read yet.
struct Outlet {
    stream: u64,
    tx: mpsc::UnboundedSender<Value>,
    behind: Arc<AtomicUsize>,
}

impl Outlet {
    /// Sends `msg` on the stream; gives it back when the stream is closed, or holds
    /// [`STREAM_BEHIND_MAX`] messages its client has not read.
    fn offer(&self, msg: Value) -> Result<(), Value> {
        if self.behind.load(Ordering::Relaxed) >= STREAM_BEHIND_MAX {
            return Err(msg);
        }
        self.tx.send(msg).map_err(|e| e.0)?;
        self.behind.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The client has read `msg` from a stream whose server-initiated messages `behind` counts.
fn taken(behind: &AtomicUsize, msg: &Value) {
    if msg.get("method").is_some() {
        let _ = behind.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Session {
    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    fn sender(&self) -> Option<mpsc::Sender<Inbound>> {
        lock(&self.inbound).clone()
    }

    /// Routes a message of the relay to the client.
    fn route(&self, msg: Value) {
        let mut r = lock(&self.routes);
        let is_response = msg.get("method").is_none();
        if is_response {
            let Some(id) = msg.get("id") else { return };
            if let Some((_, tx)) = r.waiters.remove(&jsonrpc::id_key(id)) {
                let _ = tx.send(msg);
            }
            return;
        }
        if self.inline {
            // Several clients share this relay: a message that answers none of their requests
            // is theirs to see only if it says whose it is. A progress notification does (its
            // token is the gateway's own for one request); so does any notification an HTTP
            // upstream sent on the answer stream of one request (the relay says which, in
            // `RELATED_REQUEST`); nothing else does.
            let mut msg = msg;
            let related = msg.as_object_mut().and_then(|m| m.remove(RELATED_REQUEST));
            let token = (msg.get("method").and_then(Value::as_str)
                == Some("notifications/progress"))
            .then(|| msg.pointer("/params/progressToken").map(jsonrpc::id_key))
            .flatten();
            if let Some((_, tx, theirs, waiting)) = token.and_then(|t| r.progress.get(&t)) {
                if waiting.load(Ordering::Relaxed) < INLINE_PROGRESS_MAX
                    && let Some(p) = msg.get_mut("params").and_then(Value::as_object_mut)
                {
                    p.insert("progressToken".into(), theirs.clone());
                    waiting.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(msg);
                }
                return;
            }
            let Some(key) = related.as_ref().map(jsonrpc::id_key) else { return };
            if let (Some((_, waiting)), Some((_, tx))) = (r.related.get(&key), r.waiters.get(&key))
                && waiting.load(Ordering::Relaxed) < INLINE_PROGRESS_MAX
            {
                waiting.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(msg);
            }
            return;
        }
        // To the GET stream, else the latest POST stream; a stream that is closed or too far
        // behind takes no more (see `STREAM_BEHIND_MAX`).
        let mut msg = msg;
        if let Some(outlet) = &r.standalone {
            match outlet.offer(msg) {
                Ok(()) => return,
                Err(m) => {
                    msg = m;
                    r.standalone = None;
                }
            }
        }
        while let Some(outlet) = r.posts.last() {
            match outlet.offer(msg) {
                Ok(()) => return,
                Err(m) => {
                    msg = m;
                    r.posts.pop();
                }
            }
        }
        if r.backlog.len() >= BACKLOG_MAX {
            r.backlog.pop_front();
        }
        r.backlog.push_back(msg);
    }

    /// The relay has ended: every stream closes.
    fn end(&self) {
        let mut r = lock(&self.routes);
        r.ended = true;
        r.waiters.clear();
        r.progress.clear();
        r.related.clear();
        r.posts.clear();
        r.standalone = None;
    }

    fn close(&self) {
        lock(&self.inbound).take();
    }

    fn busy(&self) -> bool {
        let r = lock(&self.routes);
        !r.waiters.is_empty() || r.standalone.as_ref().is_some_and(|o| !o.tx.is_closed())
    }
}

impl Session {
    /// A new session (or relay of clients without a session) for `principal`, and the
    /// receiving end of what it sends to its relay.
    fn start(principal: String, inline: bool) -> (Arc<Session>, mpsc::Receiver<Inbound>) {
        Session::start_with(principal, inline, None)
    }

    /// [`Session::start`], with the `Mcp-Param-*` declarations of a relay of clients without a
    /// session.
    fn start_with(
        principal: String,
        inline: bool,
        params: Option<InlineParams>,
    ) -> (Arc<Session>, mpsc::Receiver<Inbound>) {
        let (in_tx, in_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let session = Arc::new(Session {
            id: uuid::Uuid::new_v4().simple().to_string(),
            principal,
            inline,
            protocol: Arc::new(std::sync::OnceLock::new()),
            params,
            inbound: Mutex::new(Some(in_tx)),
            routes: Mutex::new(Routes::default()),
            last_active: Mutex::new(Instant::now()),
        });
        (session, in_rx)
    }
}

/// What a session's relay runs with.
struct SessionRelay<S: AsyncCounterStore> {
    guard: Guard<S>,
    config: RelayConfig,
    in_rx: mpsc::Receiver<Inbound>,
    link: UpstreamLink,
    handle: UpstreamHandle,
}

/// Deregisters a POST's waiters and stream when its response is dropped.
struct PostGuard {
    session: Arc<Session>,
    stream: u64,
}

impl Drop for PostGuard {
    fn drop(&mut self) {
        let mut r = lock(&self.session.routes);
        let s = self.stream;
        r.waiters.retain(|_, (id, _)| *id != s);
        r.progress.retain(|_, (id, _, _, _)| *id != s);
        r.related.retain(|_, (id, _)| *id != s);
        r.posts.retain(|o| o.stream != s);
        if r.standalone.as_ref().is_some_and(|o| o.stream == s) {
            r.standalone = None;
        }
    }
}

fn error_response(status: StatusCode, code: i64, message: String) -> Response {
    (status, axum::Json(jsonrpc::error(Value::Null, code, message))).into_response()
}

fn unauthorized(e: &AuthError) -> Response {
    let challenge = format!(
        "Bearer realm=\"mcp-policy-gateway\", error=\"invalid_token\", error_description=\"{}\"",
        e.0.replace(['"', '\\'], "'")
    );
    let mut r = error_response(StatusCode::UNAUTHORIZED, -32001, format!("unauthorized: {e}"));
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    } else {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn accepts(headers: &HeaderMap, what: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.split(';').next().unwrap_or("").trim();
            t.eq_ignore_ascii_case(what) || t == "*/*"
        })
}

impl<S: AsyncCounterStore + 'static> Server<S> {
    /// A listener state for `config`.
    pub fn new(config: Config<S>) -> Arc<Self> {
        Arc::new(Server {
            config,
            sessions: Mutex::new(HashMap::new()),
            inline: Mutex::new(HashMap::new()),
            rounds: Arc::new(ApprovalRounds::new(MAX_KEPT_ROUNDS)),
            upstream_rounds: Arc::new(UpstreamRounds::new(MAX_KEPT_ROUNDS)),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/mcp", post(post_mcp::<S>).get(get_mcp::<S>).delete(delete_mcp::<S>))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(metrics::<S>))
            .route("/approvals", get(list_approvals::<S>))
            .route("/approvals/{id}", post(resolve_approval::<S>))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.clone())
    }

    /// How many sessions are open, counting the relays of clients without a session (one per
    /// identity).
    pub fn session_count(&self) -> usize {
        let sessions = lock(&self.sessions).len();
        sessions + lock(&self.inline).len()
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Response> {
        let host = header_str(headers, "host");
        let origin = header_str(headers, "origin");
        self.config.origin.check(host, origin).map_err(|why| {
            error_response(StatusCode::FORBIDDEN, -32000, format!("forbidden: {why}"))
        })
    }

    /// Origin, authentication, and the session named by the request.
    fn session_of(&self, headers: &HeaderMap) -> Result<(Identity, Arc<Session>), Response> {
        self.check_origin(headers)?;
        let identity = self.config.auth.authenticate(headers).map_err(|e| unauthorized(&e))?;
        let Some(id) = header_str(headers, SESSION_HEADER) else {
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                jsonrpc::INVALID_REQUEST,
                "bad request: missing the `Mcp-Session-Id` header (send `initialize` first)".into(),
            ));
        };
        let session = lock(&self.sessions).get(id).cloned();
        match session {
            Some(s) if s.principal == identity.principal => Ok((identity, s)),
            // Another identity's session is answered as an unknown one.
            _ => Err(error_response(
                StatusCode::NOT_FOUND,
                -32001,
                "session not found: it ended, or never existed for this identity; send `initialize` again".into(),
            )),
        }
    }

    fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let removed = lock(&self.sessions).remove(id);
        self.config.metrics.set_sessions(self.session_count());
        removed
    }

    /// Creates a session for `identity`: its upstream, its relay, its router task.
    fn create(self: &Arc<Self>, identity: Identity) -> Result<Arc<Session>, Response> {
        if self.session_count() >= self.config.max_sessions {
            return Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                jsonrpc::INTERNAL_ERROR,
                format!(
                    "too many sessions: the gateway serves at most {} (see --max-sessions)",
                    self.config.max_sessions
                ),
            ));
        }
        let (link, handle) = self.connect_upstream()?;
        let guard = self.guard_for(identity.grant, identity.context);
        let (session, in_rx) = Session::start(identity.principal, false);
        let id = session.id.clone();
        lock(&self.sessions).insert(id.clone(), session.clone());
        self.config.metrics.set_sessions(self.session_count());
        let relay_config = RelayConfig {
            session: Some(id.clone()),
            upstream_timeout: self.config.upstream_timeout,
            negotiated: Some(session.protocol.clone()),
            approval_resolutions: self.config.admin.as_ref().map(|a| a.resolutions().clone()),
            ..RelayConfig::default()
        };
        let relay = SessionRelay { guard, config: relay_config, in_rx, link, handle };
        self.run_relay(&session, relay, move |me| {
            me.remove(&id);
        });
        Ok(session)
    }

    /// The upstream of a new session (a child process, or a connection to the upstream URL).
    fn connect_upstream(&self) -> Result<(UpstreamLink, UpstreamHandle), Response> {
        self.config.upstream.connect().map_err(|why| {
            eprintln!("mcp-policy-gateway: {why}");
            error_response(StatusCode::BAD_GATEWAY, jsonrpc::INTERNAL_ERROR, why)
        })
    }

    /// The guard of a new session: the identity's grant and call context.
    fn guard_for(&self, grant: String, context: Option<Value>) -> Guard<S> {
        let mut guard = Guard::new(self.config.evaluator.clone(), grant, self.config.mode);
        if let Some(context) = context {
            guard = guard.with_context(context);
        }
        if self.config.admin.is_some() {
            guard = guard.with_out_of_band_approvals();
        }
        guard
    }

    /// Runs `relay` for `session` until it ends. The relay routes each message for the client
    /// itself, to the request waiting for it (no task in between); when it ends, every stream
    /// of the session closes, `forget` takes the session out of the server's maps, and the
    /// upstream is stopped.
    fn run_relay(
        self: &Arc<Self>,
        session: &Arc<Session>,
        relay: SessionRelay<S>,
        forget: impl FnOnce(&Self) + Send + 'static,
    ) {
        let SessionRelay { guard, config, in_rx, link, handle } = relay;
        let weak = Arc::downgrade(session);
        let to_client = ClientTx::Direct(Arc::new(move |msg| {
            if let Some(s) = weak.upgrade() {
                s.route(msg);
            }
        }));
        let ended = session.clone();
        let me = self.clone();
        let log = self.config.log.clone();
        let task = tokio::spawn(async move {
            let end =
                Relay::run_to(Arc::new(guard), log, config, to_client, in_rx.into(), link).await;
            ended.end();
            forget(&me);
            handle.finish(end).await;
        });
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Ends every session and waits (at most `timeout`) for their upstreams to stop.
    pub async fn shutdown(&self, timeout: Duration) {
        let mut sessions: Vec<Arc<Session>> =
            lock(&self.sessions).drain().map(|(_, s)| s).collect();
        sessions.extend(lock(&self.inline).drain().map(|(_, s)| s));
        for s in sessions {
            s.close();
        }
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        let _ = tokio::time::timeout(timeout, futures_util::future::join_all(tasks)).await;
    }

    /// Ends the sessions idle for longer than the idle timeout; runs until the runtime stops.
    pub async fn reap_idle(self: Arc<Self>) {
        let idle = self.config.idle_timeout;
        let mut tick = tokio::time::interval(
            (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30)),
        );
        loop {
            tick.tick().await;
            let stale: Vec<Arc<Session>> = lock(&self.sessions)
                .values()
                .filter(|s| lock(&s.last_active).elapsed() > idle && !s.busy())
                .cloned()
                .collect();
            for s in stale {
                self.remove(&s.id);
                s.close();
            }
            let stale: Vec<(String, Arc<Session>)> = lock(&self.inline)
                .iter()
                .filter(|(_, s)| lock(&s.last_active).elapsed() > idle && !s.busy())
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect();
            for (key, s) in stale {
                self.remove_inline(&key, &s.id);
                s.close();
            }
        }
    }
}

fn validate_protocol(headers: &HeaderMap) -> Result<(), Response> {
    match header_str(headers, PROTOCOL_HEADER) {
        Some(v) if !PROTOCOL_VERSIONS.contains(&v) => Err(error_response(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_REQUEST,
            format!(
                "bad request: unsupported `MCP-Protocol-Version` `{v}`; supported: {}",
                PROTOCOL_VERSIONS.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

async fn post_mcp<S: AsyncCounterStore + 'static>(
    State(server): State<Arc<Server<S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = server.check_origin(&headers) {
        return r;
    }
    let sse = accepts(&headers, "text/event-stream");
    if !sse && !accepts(&headers, "application/json") {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            jsonrpc::INVALID_REQUEST,
            "not acceptable: the client must accept `application/json` and `text/event-stream`"
                .into(),
        );
    }
    let content_type = header_str(&headers, "content-type").unwrap_or("");
    if !content_type.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            jsonrpc::INVALID_REQUEST,
            "unsupported media type: send `Content-Type: application/json`".into(),
        );
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                jsonrpc::PARSE_ERROR,
                format!("parse error: {e}"),
            );
        }
    };
    let batch = parsed.is_array();
    let messages = match parsed {
        Value::Array(a) if a.is_empty() => {
            return error_response(
                StatusCode::BAD_REQUEST,
                jsonrpc::INVALID_REQUEST,
                "an empty batch".into(),
            );
        }
        Value::Array(a) => a,
        v => vec![v],
    };
    let initialize =
        messages.iter().any(|m| m.get("method").and_then(Value::as_str) == Some("initialize"));
    if !initialize && header_str(&headers, SESSION_HEADER).is_none() {
        if let Some(version) = inline_version(&headers) {
            return post_inline(&server, &headers, batch, messages, version).await;
        }
        if let Some(r) = inline_without_header(&messages) {
            return r;
        }
    }
    let (session, created) = if initialize {
        if messages.len() != 1 || header_str(&headers, SESSION_HEADER).is_some() {
            return error_response(
                StatusCode::BAD_REQUEST,
                jsonrpc::INVALID_REQUEST,
                "bad request: `initialize` must be sent alone and without `Mcp-Session-Id`".into(),
            );
        }
        let identity = match server.config.auth.authenticate(&headers) {
            Ok(i) => i,
            Err(e) => return unauthorized(&e),
        };
        match server.create(identity) {
            Ok(s) => (s, true),
            Err(r) => return r,
        }
    } else {
        if let Err(r) = validate_protocol(&headers) {
            return r;
        }
        match server.session_of(&headers) {
            Ok((_, s)) => (s, false),
            Err(r) => return r,
        }
    };
    session.touch();
    if batch && session.protocol.get().map(String::as_str) != Some(BATCH_VERSION) {
        // Batches exist in 2025-03-26 only: for any other revision (or before one is
        // negotiated) the whole batch is refused and none of its messages is relayed.
        let version = session.protocol.get().map_or("none yet", String::as_str);
        return error_response(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_REQUEST,
            format!(
                "invalid request: JSON-RPC batches are not part of protocol revision `{version}` \
                 (only of {BATCH_VERSION}): send one message per request"
            ),
        );
    }

    // The requests of this POST, whose responses it waits for.
    let stream = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let behind = Arc::new(AtomicUsize::new(0));
    let mut keys = HashSet::new();
    let mut immediate = Vec::new();
    let mut forward = Vec::new();
    {
        let mut r = lock(&session.routes);
        for m in messages {
            if let Kind::Request { id, .. } = jsonrpc::classify(&m) {
                let key = jsonrpc::id_key(id);
                if r.waiters.contains_key(&key) || keys.contains(&key) {
                    immediate.push(jsonrpc::error(
                        id.clone(),
                        jsonrpc::INVALID_REQUEST,
                        "a request with this id is already in progress",
                    ));
                    continue;
                }
                r.waiters.insert(key.clone(), (stream, tx.clone()));
                keys.insert(key);
            }
            forward.push(m);
        }
        if sse && !keys.is_empty() {
            r.posts.push(Outlet { stream, tx: tx.clone(), behind: behind.clone() });
        }
    }
    let guard = PostGuard { session: session.clone(), stream };
    let Some(inbound) = session.sender() else {
        return error_response(
            StatusCode::NOT_FOUND,
            -32001,
            "session not found: it has ended".into(),
        );
    };
    for m in forward {
        if inbound.send(Inbound::Message(m)).await.is_err() {
            break;
        }
    }
    drop(inbound);
    for e in immediate {
        let _ = tx.send(e);
    }
    drop(tx);

    let mut response = if keys.is_empty() {
        StatusCode::ACCEPTED.into_response()
    } else if sse {
        // The answer alone as JSON only for a client that accepts it.
        let batch = batch || !accepts(&headers, "application/json");
        sse_answer(rx, behind, keys, batch, guard).await
    } else {
        json_answer(rx, keys, batch, guard).await
    };
    if created && let Ok(v) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
    response
}

/// The answer to a POST of one request from a client that accepts both `application/json` and
/// `text/event-stream`: when the first message for it, within [`JSON_ANSWER_WAIT`], is its
/// response, that response alone as `application/json` (no event framing, no stream to keep
/// alive); otherwise (a server-initiated message came first, such as an approval asked through
/// the client, or the answer takes longer) an SSE stream that starts with that message. A
/// batch, and any request of a client that does not accept `application/json`, is always
/// answered on a stream (`batch` is true for both).
async fn sse_answer(
    mut rx: mpsc::UnboundedReceiver<Value>,
    behind: Arc<AtomicUsize>,
    mut keys: HashSet<String>,
    batch: bool,
    guard: PostGuard,
) -> Response {
    let stream = |first: Option<Value>, rx, keys, guard| {
        Sse::new(post_stream(first, rx, behind, keys, guard))
            .keep_alive(KeepAlive::default())
            .into_response()
    };
    if batch || keys.len() != 1 {
        return stream(None, rx, keys, guard);
    }
    let first = match tokio::time::timeout(JSON_ANSWER_WAIT, rx.recv()).await {
        Err(_) => return stream(None, rx, keys, guard),
        Ok(None) => {
            drop(guard);
            return error_response(
                StatusCode::NOT_FOUND,
                -32001,
                "session ended before answering (the upstream has gone)".into(),
            );
        }
        Ok(Some(msg)) => msg,
    };
    if first.get("method").is_none()
        && let Some(id) = first.get("id")
        && keys.remove(&jsonrpc::id_key(id))
    {
        drop(guard);
        return json_body(&first);
    }
    stream(Some(first), rx, keys, guard)
}

/// How long the answer to a POST may take and still be sent as `application/json` to a client
/// that also accepts SSE; past this the answer is a stream, whose keep-alive comments keep
/// clients with a read timeout (the Python SDK's is 30 s) waiting.
pub const JSON_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// One JSON-RPC message as an `application/json` response.
fn json_body(msg: &Value) -> Response {
    match serde_json::to_vec(msg) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            jsonrpc::INTERNAL_ERROR,
            format!("cannot serialize the answer: {e}"),
        ),
    }
}

/// The SSE stream of a POST: `first` (when given), then every message routed to it, until each
/// of its requests has its response.
fn post_stream(
    first: Option<Value>,
    rx: mpsc::UnboundedReceiver<Value>,
    behind: Arc<AtomicUsize>,
    keys: HashSet<String>,
    guard: PostGuard,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    futures_util::stream::unfold(
        (first, rx, keys, guard),
        move |(first, mut rx, mut keys, guard)| {
            let behind = behind.clone();
            async move {
                let msg = match first {
                    Some(m) => m,
                    None => {
                        if keys.is_empty() {
                            return None;
                        }
                        rx.recv().await?
                    }
                };
                taken(&behind, &msg);
                if msg.get("method").is_none()
                    && let Some(id) = msg.get("id")
                {
                    keys.remove(&jsonrpc::id_key(id));
                }
                let event = Event::default().event("message").data(msg.to_string());
                Some((Ok(event), (None, rx, keys, guard)))
            }
        },
    )
}

async fn json_answer(
    mut rx: mpsc::UnboundedReceiver<Value>,
    mut keys: HashSet<String>,
    batch: bool,
    guard: PostGuard,
) -> Response {
    let mut answers = Vec::new();
    while !keys.is_empty() {
        let Some(msg) = rx.recv().await else { break };
        if msg.get("method").is_none()
            && let Some(id) = msg.get("id")
            && keys.remove(&jsonrpc::id_key(id))
        {
            answers.push(msg);
        }
    }
    drop(guard);
    if !keys.is_empty() {
        return error_response(
            StatusCode::NOT_FOUND,
            -32001,
            "session ended before answering (the upstream has gone)".into(),
        );
    }
    let body = if batch || answers.len() != 1 {
        Value::Array(answers)
    } else {
        answers.pop().unwrap_or(Value::Null)
    };
    axum::Json(body).into_response()
}

async fn get_mcp<S: AsyncCounterStore + 'static>(
    State(server): State<Arc<Server<S>>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = server.check_origin(&headers) {
        return r;
    }
    if !accepts(&headers, "text/event-stream") {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            jsonrpc::INVALID_REQUEST,
            "GET opens the server's event stream: accept `text/event-stream`".into(),
        );
    }
    if let Some(r) = no_inline_stream(&headers, "GET") {
        return r;
    }
    if let Err(r) = validate_protocol(&headers) {
        return r;
    }
    let session = match server.session_of(&headers) {
        Ok((_, s)) => s,
        Err(r) => return r,
    };
    session.touch();
    let stream = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let behind = Arc::new(AtomicUsize::new(0));
    {
        let mut r = lock(&session.routes);
        if r.ended {
            return error_response(
                StatusCode::NOT_FOUND,
                -32001,
                "session not found: it has ended".into(),
            );
        }
        if r.standalone.as_ref().is_some_and(|o| !o.tx.is_closed()) {
            return error_response(
                StatusCode::CONFLICT,
                jsonrpc::INVALID_REQUEST,
                "conflict: this session already has its event stream open".into(),
            );
        }
        behind.store(r.backlog.len(), Ordering::Relaxed);
        for m in r.backlog.drain(..) {
            let _ = tx.send(m);
        }
        r.standalone = Some(Outlet { stream, tx, behind: behind.clone() });
    }
    let guard = PostGuard { session, stream };
    let events = futures_util::stream::unfold((rx, guard), move |(mut rx, guard)| {
        let behind = behind.clone();
        async move {
            let msg = rx.recv().await?;
            taken(&behind, &msg);
            let event = Event::default().event("message").data(msg.to_string());
            Some((Ok::<_, std::convert::Infallible>(event), (rx, guard)))
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

async fn delete_mcp<S: AsyncCounterStore + 'static>(
    State(server): State<Arc<Server<S>>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = no_inline_stream(&headers, "DELETE") {
        return r;
    }
    let session = match server.session_of(&headers) {
        Ok((_, s)) => s,
        Err(r) => return r,
    };
    server.remove(&session.id);
    session.close();
    StatusCode::NO_CONTENT.into_response()
}

async fn metrics<S: AsyncCounterStore + 'static>(
    State(server): State<Arc<Server<S>>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = server.check_origin(&headers) {
        return r;
    }
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        server.config.metrics.render(),
    )
        .into_response()
}

fn no_admin() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({ "error": "the approvals admin API is not enabled (see --admin-token-file)" }),
        ),
    )
        .into_response()
}

async fn list_approvals<S: AsyncCounterStore + 'static>(
    State(server): State<Arc<Server<S>>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = server.check_origin(&headers) {
        return r;
    }
    match &server.config.admin {
        Some(admin) => admin.list(&headers),
        None => no_admin(),
    }
}

async fn resolve_approval<S: AsyncCounterStore + 'static>(
    State(server): State<Arc<Server<S>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = server.check_origin(&headers) {
        return r;
    }
    match &server.config.admin {
        Some(admin) => admin.resolve(&headers, &id, &body),
        None => no_admin(),
    }
}

// ---- clients without a session (revisions without `initialize`) ----

/// The JSON-RPC code of a header that contradicts the body (SEP-2243).
pub const HEADER_MISMATCH: i64 = -32020;

/// The revision without `initialize` that a request's `MCP-Protocol-Version` names, if it
/// names one the gateway speaks.
fn inline_version(headers: &HeaderMap) -> Option<&'static str> {
    let v = header_str(headers, PROTOCOL_HEADER)?;
    INLINE_PROTOCOL_VERSIONS.iter().copied().find(|known| *known == v)
}

/// A request without a session whose `_meta` names a revision without `initialize` but that
/// lacks the `MCP-Protocol-Version` header: 400, saying so.
fn inline_without_header(messages: &[Value]) -> Option<Response> {
    let [msg] = messages else { return None };
    let version = meta_protocol_version(msg)?;
    INLINE_PROTOCOL_VERSIONS.contains(&version).then(|| {
        error_response(
            StatusCode::BAD_REQUEST,
            HEADER_MISMATCH,
            format!(
                "bad request: a request of protocol revision `{version}` needs the \
                 `MCP-Protocol-Version: {version}` header"
            ),
        )
    })
}

/// GET and DELETE without a session in a revision without `initialize`: there is no session
/// to end and no stream of the server's own messages (405).
fn no_inline_stream(headers: &HeaderMap, what: &str) -> Option<Response> {
    if header_str(headers, SESSION_HEADER).is_some() {
        return None;
    }
    let version = inline_version(headers)?;
    let mut r = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        jsonrpc::INVALID_REQUEST,
        format!(
            "method not allowed: protocol revision `{version}` has no sessions and no event \
             stream of the server's own; {what} is not part of it (send each request as a POST)"
        ),
    );
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    Some(r)
}

/// The SEP-2243 checks of a request without a session: its `_meta` names the revision of its
/// `MCP-Protocol-Version` header, and `Mcp-Method` (and `Mcp-Name` where the method names a
/// tool, prompt or resource) say what the body says. A proxy in front of the gateway may route
/// or filter on those headers: a request whose headers say another thing than its body is
/// refused (400) rather than decided on the body alone.
fn check_inline_request(
    headers: &HeaderMap,
    msg: &Value,
    method: &str,
    version: &str,
) -> Result<(), Response> {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let refuse = |code: i64, message: String| {
        Err((StatusCode::BAD_REQUEST, axum::Json(jsonrpc::error(id.clone(), code, message)))
            .into_response())
    };
    match meta_protocol_version(msg) {
        None => {
            return refuse(
                jsonrpc::INVALID_PARAMS,
                format!(
                    "invalid params: a request of protocol revision `{version}` names its \
                     revision in `params._meta[\"{}\"]`",
                    crate::relay::META_PROTOCOL_VERSION
                ),
            );
        }
        Some(v) if v != version => {
            return refuse(
                HEADER_MISMATCH,
                format!(
                    "header mismatch: `MCP-Protocol-Version` is `{version}` but the request's \
                     `_meta` names `{v}`"
                ),
            );
        }
        Some(_) => {}
    }
    for name in [PROTOCOL_HEADER, METHOD_HEADER, NAME_HEADER] {
        if headers.get_all(name).iter().nth(1).is_some() {
            // A proxy may read either value: which one the gateway read would be a guess.
            return refuse(
                HEADER_MISMATCH,
                format!("header mismatch: the request has more than one `{name}` header"),
            );
        }
    }
    match header_str(headers, METHOD_HEADER) {
        Some(m) if m == method => {}
        Some(m) => {
            return refuse(
                HEADER_MISMATCH,
                format!("header mismatch: `Mcp-Method` is `{m}` but the request is `{method}`"),
            );
        }
        None => {
            return refuse(
                HEADER_MISMATCH,
                format!(
                    "header mismatch: a request of protocol revision `{version}` needs the \
                     `Mcp-Method: {method}` header"
                ),
            );
        }
    }
    if let Some(expected) = mcp_name(method, jsonrpc::params(msg)) {
        let given = headers.get(NAME_HEADER).map(|v| v.to_str().ok().and_then(decode_header_value));
        match given {
            Some(Some(n)) if n == expected => {}
            Some(_) => {
                return refuse(
                    HEADER_MISMATCH,
                    format!(
                        "header mismatch: `Mcp-Name` does not name what the `{method}` request \
                         names"
                    ),
                );
            }
            None => {
                return refuse(
                    HEADER_MISMATCH,
                    format!("header mismatch: a `{method}` request needs the `Mcp-Name` header"),
                );
            }
        }
    }
    Ok(())
}

/// The `Mcp-Param-*` headers of a client's `tools/call` (SEP-2243) against its arguments, for
/// the tool's declarations as the relay knows them: an HTTP upstream's tools are listed first
/// when the tool was never listed. A tool whose declarations stay unknown (a command upstream
/// that has not listed it; a name the upstream does not list) is not checked, as rmcp's server
/// does not check a tool it does not know. A mismatch: 400, -32020.
async fn check_param_headers(
    params: &InlineParams,
    headers: &HeaderMap,
    msg: &Value,
) -> Result<(), Response> {
    let Some(tool) = jsonrpc::params(msg).and_then(|p| p.get("name")).and_then(Value::as_str)
    else {
        return Ok(());
    };
    let mut declared = params.schemas.get(tool);
    if declared.is_none()
        && let Some(lister) = &params.lister
    {
        lister.learn_tool(msg).await;
        declared = params.schemas.get(tool);
    }
    let Some(declared) = declared else { return Ok(()) };
    let arguments = jsonrpc::params(msg).and_then(|p| p.get("arguments"));
    let values =
        |name: &str| headers.get_all(name).iter().map(|v| v.to_str().ok()).collect::<Vec<_>>();
    crate::relay::check_param_headers(&declared, arguments, values).map_err(|why| {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let body = jsonrpc::error(id, HEADER_MISMATCH, format!("header mismatch: {why}"));
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    })
}

/// A POST without a session, of a revision without `initialize`: one message, decided with the
/// identity of the request (its JWT, trusted header or `--grant`), in no session, relayed
/// through the relay of that identity.
async fn post_inline<S: AsyncCounterStore + 'static>(
    server: &Arc<Server<S>>,
    headers: &HeaderMap,
    batch: bool,
    mut messages: Vec<Value>,
    version: &'static str,
) -> Response {
    let identity = match server.config.auth.authenticate(headers) {
        Ok(i) => i,
        Err(e) => return unauthorized(&e),
    };
    let msg = match messages.pop() {
        Some(m) if !batch && messages.is_empty() => m,
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                jsonrpc::INVALID_REQUEST,
                format!(
                    "invalid request: JSON-RPC batches are not part of protocol revision \
                     `{version}`: send one message per request"
                ),
            );
        }
    };
    let (client_id, method) = match jsonrpc::classify(&msg) {
        Kind::Request { id, method } => (id.clone(), method.to_owned()),
        // Nothing to relay: without a session, a notification concerns no request the
        // gateway could attribute to this client (several clients share the identity's relay).
        Kind::Notification { .. } => return StatusCode::ACCEPTED.into_response(),
        Kind::Response { .. } => {
            return error_response(
                StatusCode::BAD_REQUEST,
                jsonrpc::INVALID_REQUEST,
                format!(
                    "invalid request: in protocol revision `{version}` servers send no requests, \
                     so there is nothing to answer"
                ),
            );
        }
        Kind::Invalid { id, reason } => {
            let body = jsonrpc::error(id, jsonrpc::INVALID_REQUEST, reason);
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    if let Err(r) = check_inline_request(headers, &msg, &method, version) {
        return r;
    }
    let session = match server.inline_relay(identity) {
        Ok(s) => s,
        Err(r) => return r,
    };
    session.touch();
    if method == "tools/call"
        && let Some(params) = &session.params
        && let Err(r) = check_param_headers(params, headers, &msg).await
    {
        return r;
    }
    // The relay serves every client of this identity: the request travels under an id of the
    // gateway's own, and its answer goes back with the client's.
    let stream = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
    let relay_id = relay_id_of(stream);
    let key = jsonrpc::id_key(&relay_id);
    let mut msg = msg;
    jsonrpc::set_id(&mut msg, relay_id);
    // A progress token is the client's own choice, and the relay is shared: the request
    // travels with one of the gateway's, and its progress comes back with the client's.
    let theirs = msg
        .get_mut("params")
        .and_then(|p| p.get_mut("_meta"))
        .and_then(Value::as_object_mut)
        .and_then(|m| {
            let theirs = m.remove("progressToken")?;
            m.insert("progressToken".into(), Value::String(format!("inline-progress-{stream}")));
            Some(theirs)
        });
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let waiting = Arc::new(AtomicUsize::new(0));
    {
        let mut r = lock(&session.routes);
        if r.ended {
            return inline_gone();
        }
        if let Some(theirs) = theirs {
            let ours = jsonrpc::id_key(&Value::String(format!("inline-progress-{stream}")));
            r.progress.insert(ours, (stream, tx.clone(), theirs, waiting.clone()));
        }
        r.related.insert(key.clone(), (stream, waiting.clone()));
        r.waiters.insert(key, (stream, tx));
    }
    let guard = PostGuard { session: session.clone(), stream };
    let Some(inbound) = session.sender() else { return inline_gone() };
    if inbound.send(Inbound::Message(msg)).await.is_err() {
        return inline_gone();
    }
    // In a revision without sessions a client cancels a request by closing its connection:
    // if this future is dropped before the answer came, the relay is told to cancel the
    // request (the upstream is told, the decision log says `cancelled`).
    let cancel = CancelOnDrop { inbound: Some(inbound), request: relay_id_of(stream) };
    let sse = accepts(headers, "text/event-stream");
    let json = accepts(headers, "application/json");
    loop {
        let Some(mut msg) = rx.recv().await else {
            cancel.disarm();
            return inline_gone();
        };
        if msg.get("method").is_none() {
            // The answer, first: one JSON body (or one event for a client of streams only).
            cancel.disarm();
            drop(guard);
            if let Some(status) = upstream_refusal(&mut msg) {
                // The upstream refused the request over HTTP: the client gets that status (a
                // client of both eras falls back to `initialize` on a 400 from a server that
                // does not speak its revision).
                jsonrpc::set_id(&mut msg, client_id);
                return (status, axum::Json(msg)).into_response();
            }
            if json {
                jsonrpc::set_id(&mut msg, client_id);
                return axum::Json(msg).into_response();
            }
            return inline_stream(Some(msg), rx, client_id, None);
        }
        waiting.fetch_sub(1, Ordering::Relaxed);
        if sse {
            // Progress before the answer: the answer becomes a stream of events, progress
            // first; the request stays cancellable while the stream is open.
            let pending = Some((guard, cancel, waiting));
            return inline_stream(Some(msg), rx, client_id, pending);
        }
        // A client that takes only JSON gets the answer alone.
    }
}

/// The HTTP status an HTTP upstream refused a request without a session with (4xx), taken out
/// of the error's data (see [`crate::transport::UPSTREAM_STATUS`]).
fn upstream_refusal(msg: &mut Value) -> Option<StatusCode> {
    let error = msg.get_mut("error")?.as_object_mut()?;
    let data = error.get_mut("data")?.as_object_mut()?;
    let status = data.remove(UPSTREAM_STATUS)?;
    if data.is_empty() {
        error.remove("data");
    }
    let status = StatusCode::from_u16(u16::try_from(status.as_u64()?).ok()?).ok()?;
    status.is_client_error().then_some(status)
}

/// The SSE answer of a sessionless POST: `first`, then what the relay routes to it (progress)
/// until its response (the only message without a method), which gets the client's id back;
/// `pending` (the POST's guard, its cancellation, and the count of its progress waiting, taken
/// down as each is read) is held until then.
fn inline_stream(
    first: Option<Value>,
    rx: mpsc::UnboundedReceiver<Value>,
    client_id: Value,
    pending: Option<(PostGuard, CancelOnDrop, Arc<AtomicUsize>)>,
) -> Response {
    let events = futures_util::stream::unfold(
        (first, rx, client_id, pending, false),
        |(first, mut rx, client_id, pending, done)| async move {
            if done {
                return None;
            }
            let from_relay = first.is_none();
            let mut msg = match first {
                Some(m) => m,
                None => rx.recv().await?,
            };
            let answer = msg.get("method").is_none();
            let pending = if answer {
                jsonrpc::set_id(&mut msg, client_id.clone());
                if let Some((guard, cancel, _)) = pending {
                    cancel.disarm();
                    drop(guard);
                }
                None
            } else {
                if from_relay && let Some((_, _, waiting)) = &pending {
                    waiting.fetch_sub(1, Ordering::Relaxed);
                }
                pending
            };
            let event = Event::default().event("message").data(msg.to_string());
            Some((Ok::<_, std::convert::Infallible>(event), (None, rx, client_id, pending, answer)))
        },
    );
    Sse::new(events).into_response()
}

/// The id under which the request of the sessionless POST `stream` travels through its relay.
fn relay_id_of(stream: u64) -> Value {
    Value::String(format!("inline-{stream}"))
}

/// Sends `notifications/cancelled` for `request` to the relay when dropped armed: the client
/// of a sessionless request closed its connection before the answer.
struct CancelOnDrop {
    inbound: Option<mpsc::Sender<Inbound>>,
    request: Value,
}

impl CancelOnDrop {
    /// The answer came: nothing to cancel.
    fn disarm(mut self) {
        self.inbound = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(inbound) = self.inbound.take() else { return };
        let cancel = jsonrpc::notification(
            "notifications/cancelled",
            json!({"requestId": self.request, "reason": "the client closed its connection"}),
        );
        // Dropping cannot wait: when the relay's queue is full, a task sends it.
        if let Err(mpsc::error::TrySendError::Full(m)) = inbound.try_send(Inbound::Message(cancel))
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = inbound.send(m).await;
            });
        }
    }
}

fn inline_gone() -> Response {
    error_response(
        StatusCode::BAD_GATEWAY,
        jsonrpc::INTERNAL_ERROR,
        "the upstream MCP server has gone before answering; send the request again".into(),
    )
}

/// How many relays of clients without a session one principal (a JWT's subject, a trusted
/// header's value) holds at once: one per distinct set of claims, so a client that mints a token
/// per request churns its own relays (the least recently used one makes way) instead of filling
/// `--max-sessions` for everyone.
pub const MAX_RELAYS_PER_PRINCIPAL: usize = 4;

/// The key of an identity's relay: its principal and its call context (so that a request is
/// decided with the claims of its own token, never another's).
fn inline_key(identity: &Identity) -> String {
    let context = identity.context.as_ref().map(Value::to_string).unwrap_or_default();
    format!("{}\u{0}{context}", identity.principal)
}

impl<S: AsyncCounterStore + 'static> Server<S> {
    /// The relay serving requests without a session for `identity`, started with its own
    /// upstream at the identity's first request. It counts against `--max-sessions`, ends
    /// after the idle timeout like a session. The identity's approval rounds are kept by the
    /// listener (they outlive the relay), owned by the identity (its principal, the claims of
    /// its token and its grant).
    fn inline_relay(self: &Arc<Self>, identity: Identity) -> Result<Arc<Session>, Response> {
        let key = inline_key(&identity);
        let mut inline = lock(&self.inline);
        if let Some(s) = inline.get(&key)
            && !lock(&s.routes).ended
        {
            return Ok(s.clone());
        }
        // One principal minting a token per request must not fill `--max-sessions`: past
        // its quota, its least recently used relay (a token it no longer uses) makes way.
        // An idle relay makes way before one with calls in flight.
        let mine: Vec<(&String, (bool, Instant))> = inline
            .iter()
            .filter(|(_, s)| s.principal == identity.principal)
            .map(|(k, s)| (k, (s.busy(), *lock(&s.last_active))))
            .collect();
        if mine.len() >= MAX_RELAYS_PER_PRINCIPAL {
            let oldest = mine.iter().min_by_key(|(_, t)| *t).map(|(k, _)| (*k).clone());
            if let Some(old) = oldest.and_then(|k| inline.remove(&k)) {
                old.close();
            }
        }
        let count = inline.len() + lock(&self.sessions).len();
        if count >= self.config.max_sessions {
            return Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                jsonrpc::INTERNAL_ERROR,
                format!(
                    "too many sessions: the gateway serves at most {} (see --max-sessions), \
                     counting one per identity of clients without a session",
                    self.config.max_sessions
                ),
            ));
        }
        let InlineUpstream { link, handle, params, attributed } =
            self.config.upstream.connect_inline().map_err(|why| {
                eprintln!("mcp-policy-gateway: {why}");
                error_response(StatusCode::BAD_GATEWAY, jsonrpc::INTERNAL_ERROR, why)
            })?;
        // A command upstream's tools are learned by the relay, from the listings it relays.
        let relay_schemas = (!attributed).then(|| params.schemas.clone());
        // The identity's approval rounds outlive this relay: its next one redeems them.
        let round_owner = format!("{key}\u{0}{}", identity.grant);
        // A principal minting a token per request is one owner per token, but one quota.
        let identity_principal = format!("{}\u{0}{}", identity.principal, identity.grant);
        let guard = self.guard_for(identity.grant, identity.context);
        let (session, in_rx) = Session::start_with(identity.principal, true, Some(params));
        let id = session.id.clone();
        if let Some(old) = inline.insert(key.clone(), session.clone()) {
            old.close();
        }
        drop(inline);
        self.config.metrics.set_sessions(self.session_count());
        // No MCP session: calls are decided with no session (a `session`-scoped limit counts
        // them in the grant's one "no session" bucket).
        let relay_config = RelayConfig {
            session: None,
            upstream_timeout: self.config.upstream_timeout,
            negotiated: None,
            param_schemas: relay_schemas,
            attribute_related: attributed,
            approval_rounds: Some(self.rounds.clone()),
            upstream_rounds: Some(self.upstream_rounds.clone()),
            round_owner,
            round_quota: identity_principal,
            // A command upstream gives no HTTP status: the relay asks it what it offers.
            probe_inline: !attributed,
            // The relay ends with the identity's HTTP requests: nobody reads after that.
            answer_after_client_eof: false,
            // Nothing is asked of its clients in band: an approval is a round.
            approval_resolutions: None,
            // The listener's sessions share the thread: none spins on its own.
            spin: std::time::Duration::ZERO,
        };
        let relay = SessionRelay { guard, config: relay_config, in_rx, link, handle };
        self.run_relay(&session, relay, move |me| me.remove_inline(&key, &id));
        Ok(session)
    }

    /// Forgets the relay `id` of the identity `key` (not a newer one that replaced it).
    fn remove_inline(&self, key: &str, id: &str) {
        {
            let mut inline = lock(&self.inline);
            if inline.get(key).is_some_and(|s| s.id == id) {
                inline.remove(key);
            }
        }
        self.config.metrics.set_sessions(self.session_count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Arc<Session> {
        Arc::new(Session {
            id: "s".into(),
            principal: "p".into(),
            inline: false,
            protocol: Arc::new(std::sync::OnceLock::new()),
            params: None,
            inbound: Mutex::new(None),
            routes: Mutex::new(Routes::default()),
            last_active: Mutex::new(Instant::now()),
        })
    }

    /// Only the 4xx status the gateway's HTTP upstream put in an error is answered with, and
    /// it leaves the body; the error's own data stays.
    #[test]
    fn an_upstream_refusal_is_answered_with_its_status() {
        let key = UPSTREAM_STATUS;
        let mut refused = jsonrpc::error(json!(1), jsonrpc::INTERNAL_ERROR, "no");
        refused["error"]["data"] = json!({key: 400});
        assert_eq!(upstream_refusal(&mut refused), Some(StatusCode::BAD_REQUEST));
        assert!(refused["error"].get("data").is_none(), "{refused}");
        let mut kept = jsonrpc::error(json!(1), jsonrpc::INTERNAL_ERROR, "no");
        kept["error"]["data"] = json!({key: 404, "theirs": 1});
        assert_eq!(upstream_refusal(&mut kept), Some(StatusCode::NOT_FOUND));
        assert_eq!(kept["error"]["data"], json!({"theirs": 1}));
        for status in [json!(500), json!(200), json!("400"), json!(70000)] {
            let mut other = jsonrpc::error(json!(1), jsonrpc::INTERNAL_ERROR, "no");
            other["error"]["data"] = json!({key: status});
            assert_eq!(upstream_refusal(&mut other), None, "{status}");
        }
        let mut plain = jsonrpc::error(json!(1), jsonrpc::INTERNAL_ERROR, "no");
        assert_eq!(upstream_refusal(&mut plain), None);
        // An upstream cannot say it itself.
        let mut theirs = jsonrpc::error(json!(1), jsonrpc::INTERNAL_ERROR, "no");
        theirs["error"]["data"] = json!({key: 401});
        upstream::http::strip_upstream_status(&mut theirs);
        assert_eq!(upstream_refusal(&mut theirs), None);
    }

    async fn answer(first: Vec<Value>, ids: &[i64], batch: bool) -> (String, String) {
        let (tx, rx) = mpsc::unbounded_channel();
        for m in first {
            tx.send(m).unwrap();
        }
        drop(tx);
        let keys = ids.iter().map(|i| jsonrpc::id_key(&json!(i))).collect();
        let guard = PostGuard { session: session(), stream: 1 };
        let resp = sse_answer(rx, Arc::default(), keys, batch, guard).await;
        let ct = resp.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_response_that_comes_first_is_plain_json() {
        let r = json!({"jsonrpc": "2.0", "id": 3, "result": {"ok": true}});
        let (ct, body) = answer(vec![r.clone()], &[3], false).await;
        assert_eq!(ct, "application/json");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), r);
    }

    #[tokio::test]
    async fn anything_first_or_a_batch_is_a_stream_with_every_message() {
        let ask = json!({"jsonrpc": "2.0", "id": 1, "method": "elicitation/create", "params": {}});
        let r = json!({"jsonrpc": "2.0", "id": 3, "result": {}});
        let (ct, body) = answer(vec![ask, r], &[3], false).await;
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        assert!(body.contains("elicitation/create") && body.contains(r#""id":3"#), "{body}");
        assert!(body.find("elicitation").unwrap() < body.find(r#""id":3"#).unwrap());

        let r4 = json!({"jsonrpc": "2.0", "id": 4, "result": {}});
        let (ct, body) = answer(vec![r4.clone()], &[4], true).await;
        assert!(ct.starts_with("text/event-stream"), "a batch: {ct}");
        assert!(body.contains(r#""id":4"#), "{body}");
    }

    #[tokio::test]
    async fn a_session_that_ends_before_answering_is_404() {
        let (ct, body) = answer(vec![], &[5], false).await;
        assert_eq!(ct, "application/json");
        assert!(body.contains("session ended before answering"), "{body}");
    }
}
