//! One client session relayed to one upstream, with `tools/list` and `tools/call` intercepted.
//!
//! Messages are relayed as JSON values: every field the gateway does not interpret passes
//! through unchanged, whatever the protocol revision. Request ids are rewritten in both
//! directions (the gateway numbers what it sends to each end), so that the requests the gateway
//! makes itself (`elicitation/create` to the client, `tools/list` refreshes to the upstream)
//! can never collide with the peers' ids; cancellations are rewritten the same way.
//!
//! Two kinds of `input_required` rounds (revision 2026-07-28) meet here: the gateway's own
//! approval rounds (its `requestState` a token of its own, its `inputRequests` key
//! [`APPROVAL_INPUT`]), and the upstream's, relayed unchanged; the retry of an upstream's round
//! continues the call it belongs to without a new decision (see [`crate::rounds`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_policy::AsyncCounterStore;
use serde_json::{Value, json};

use crate::decision_log::{DecisionLog, Outcome, Record};
use crate::guard::{Guard, ToolCache, Verdict, declined, round_refusal};
use crate::jsonrpc::{self, Kind};
use crate::lines::{Frame, Offered};
use crate::raw::{self, ResultSays};
use crate::rounds::{ApprovalRounds, Chain, MAX_PENDING_ROUNDS, UpstreamRounds};
use crate::transport::{
    ClientLink, ClientRx, ClientTx, Inbound, Received, UPSTREAM_STATUS, UpstreamLink, UpstreamRx,
    UpstreamTx,
};

/// The protocol revisions the gateway speaks (those with an `initialize` handshake).
pub const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The newest revision the gateway speaks: asked of the upstream when the client asks for one
/// the gateway does not speak.
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// The revisions without `initialize` that the gateway speaks: every request carries the
/// protocol version and the client's capabilities in its `_meta`, and a server asks the client
/// for input with an `input_required` result (SEP-2322) instead of a request of its own.
pub const INLINE_PROTOCOL_VERSIONS: &[&str] = &["2026-07-28"];

/// The request `_meta` key of the protocol version (revisions without `initialize`).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The request `_meta` key of the client's capabilities (revisions without `initialize`).
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// The `Mcp-Method` header (SEP-2243): the JSON-RPC method of the request, required on every
/// request of a revision without `initialize` over streamable HTTP.
pub const METHOD_HEADER: &str = "mcp-method";
/// The `Mcp-Name` header (SEP-2243): the tool, prompt or resource a request names.
pub const NAME_HEADER: &str = "mcp-name";

const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// What the `Mcp-Name` header of a request must say (SEP-2243): `params.name` of `tools/call`
/// and `prompts/get`, `params.uri` of the resource methods, `params.taskId` of the task methods;
/// `None` for the other methods.
pub fn mcp_name<'a>(
    method: &str,
    params: Option<&'a serde_json::Map<String, Value>>,
) -> Option<&'a str> {
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    params?.get(key)?.as_str()
}

/// `value` as an HTTP header value (SEP-2243): as it is when it is printable ASCII without
/// leading or trailing blanks, else Base64 between `=?base64?` and `?=`.
pub fn encode_header_value(value: &str) -> String {
    use base64::Engine;
    let needs_base64 = value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || value.chars().any(|c| !(' '..='~').contains(&c))
        || (value.starts_with(BASE64_PREFIX) && value.ends_with(BASE64_SUFFIX));
    if !needs_base64 {
        value.to_owned()
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
        format!("{BASE64_PREFIX}{encoded}{BASE64_SUFFIX}")
    }
}

/// The value an HTTP header of SEP-2243 carries (`None`: a Base64 form that does not decode
/// to UTF-8).
pub fn decode_header_value(raw: &str) -> Option<String> {
    use base64::Engine;
    match raw.strip_prefix(BASE64_PREFIX).and_then(|r| r.strip_suffix(BASE64_SUFFIX)) {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

/// The prefix of the SEP-2243 headers that mirror a `tools/call`'s arguments.
pub const PARAM_HEADER_PREFIX: &str = "mcp-param-";

/// A tool's `Mcp-Param-*` declarations: (path of property names, header name without the
/// prefix), as [`param_header_declarations`] finds them.
pub type ParamDeclarations = Vec<(Vec<String>, String)>;

/// The `Mcp-Param-*` headers a tool's input schema declares (SEP-2243): each property reached
/// from the root through `properties` alone that carries a non-empty string `x-mcp-header`,
/// as (its path of property names, the header's name without the prefix).
pub fn param_header_declarations(input_schema: &Value) -> Vec<(Vec<String>, String)> {
    fn walk(
        properties: Option<&Value>,
        path: &mut Vec<String>,
        out: &mut Vec<(Vec<String>, String)>,
    ) {
        let Some(Value::Object(properties)) = properties else { return };
        for (name, schema) in properties {
            path.push(name.clone());
            if let Some(header) = schema.get("x-mcp-header").and_then(Value::as_str)
                && !header.is_empty()
            {
                out.push((path.clone(), header.to_owned()));
            }
            walk(schema.get("properties"), path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(input_schema.get("properties"), &mut Vec::new(), &mut out);
    out
}

/// The `Mcp-Param-*` headers of a call with `arguments` for `declarations`: (full header name,
/// encoded value) for each declared argument that is a string, a number or a boolean; an absent,
/// null or structured argument has no header.
pub fn param_header_values(
    declarations: &[(Vec<String>, String)],
    arguments: Option<&Value>,
) -> Vec<(String, String)> {
    let Some(arguments) = arguments else { return Vec::new() };
    declarations
        .iter()
        .filter_map(|(path, header)| {
            let value = path.iter().try_fold(arguments, |v, key| v.get(key))?;
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((format!("{PARAM_HEADER_PREFIX}{header}"), encode_header_value(&text)))
        })
        .collect()
}

/// The most tools whose `Mcp-Param-*` declarations one relay (or upstream connection)
/// remembers; past this they are forgotten and learned again (an upstream listing ever new names
/// cannot grow the gateway's memory with them).
pub const LEARNED_TOOLS_MAX: usize = 10_000;

/// Each tool's `Mcp-Param-*` declarations (SEP-2243), learned from the upstream's `tools/list`
/// answers: what a call of the tool must carry in its headers, toward the upstream (the gateway
/// sends them) and from a client without a session (the gateway checks them). Shared by a
/// relay of clients without a session, its HTTP listener and its upstream connection; bounded
/// by [`LEARNED_TOOLS_MAX`].
#[derive(Debug, Default)]
pub struct ParamSchemas {
    tools: std::sync::Mutex<HashMap<String, Arc<ParamDeclarations>>>,
}

impl ParamSchemas {
    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ParamDeclarations>>> {
        self.tools.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the declarations of the tools of one `tools/list` page (the upstream's listing,
    /// before the policy hides any).
    pub fn learn(&self, tools: &[Value]) {
        let mut known = self.locked();
        for tool in tools {
            if let (Some(name), Some(schema)) =
                (tool.get("name").and_then(Value::as_str), tool.get("inputSchema"))
            {
                if known.len() >= LEARNED_TOOLS_MAX && !known.contains_key(name) {
                    known.clear();
                }
                known.insert(name.to_owned(), Arc::new(param_header_declarations(schema)));
            }
        }
    }

    /// Records the declarations of the tools a `tools/list` answer lists (nothing for any
    /// other message).
    pub fn learn_answer(&self, msg: &Value) {
        if let Some(tools) = msg.pointer("/result/tools").and_then(Value::as_array) {
            self.learn(tools);
        }
    }

    /// The declarations of `tool`; `None` when it was never listed.
    pub fn get(&self, tool: &str) -> Option<Arc<ParamDeclarations>> {
        self.locked().get(tool).cloned()
    }

    /// How many tools are known.
    pub fn len(&self) -> usize {
        self.locked().len()
    }

    /// Whether no tool is known.
    pub fn is_empty(&self) -> bool {
        self.locked().is_empty()
    }
}

/// Checks the `Mcp-Param-*` headers of a client's `tools/call` against its `arguments`, for the
/// tool's `declarations` (SEP-2243, as rmcp's server checks them): for each declared argument
/// that is a string, number or boolean, its header must be there once and say the same value
/// (plain, or Base64 between `=?base64?` and `?=`); for an absent or null one, no header.
/// `header` gives every value of a header (by its full lowercase name); a value that is not
/// visible ASCII is `None`. A declared name that is no header name cannot be sent, and is not
/// looked for. The error says which header and why (the caller answers -32020).
pub fn check_param_headers<'h>(
    declarations: &[(Vec<String>, String)],
    arguments: Option<&Value>,
    header: impl Fn(&str) -> Vec<Option<&'h str>>,
) -> Result<(), String> {
    for (path, name) in declarations {
        let full = format!("{PARAM_HEADER_PREFIX}{}", name.to_ascii_lowercase());
        if !valid_header_name(&full) {
            continue;
        }
        let shown = format!("Mcp-Param-{name}");
        let prop = path.join(".");
        let body =
            arguments.and_then(|a| path.iter().try_fold(a, |v, key| v.get(key))).and_then(|v| {
                match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Bool(b) => Some(b.to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            });
        let given = header(&full);
        if given.len() > 1 {
            return Err(format!("the request has more than one `{shown}` header"));
        }
        match (given.into_iter().next(), body) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(format!(
                    "`{shown}` is given but the argument `{prop}` is absent, null or not a \
                     string, number or boolean"
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "a call with the argument `{prop}` needs the `{shown}` header"
                ));
            }
            (Some(raw), Some(expected)) => match raw.and_then(decode_header_value) {
                Some(decoded) if decoded == expected => {}
                Some(_) => {
                    return Err(format!(
                        "`{shown}` does not say the value of the argument `{prop}`"
                    ));
                }
                None => {
                    return Err(format!(
                        "`{shown}` is neither visible ASCII nor valid Base64 of UTF-8"
                    ));
                }
            },
        }
    }
    Ok(())
}

/// Whether `name` is an HTTP header name (RFC 9110 token characters).
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// The revision a request names in its `_meta` (revisions without `initialize`).
pub fn meta_protocol_version(msg: &Value) -> Option<&str> {
    jsonrpc::params(msg)?.get("_meta")?.get(META_PROTOCOL_VERSION)?.as_str()
}

/// The key of the gateway's approval request in `inputRequests` / `inputResponses` (the same
/// as the rmcp guard's).
pub const APPROVAL_INPUT: &str = "mcp-policy/approval";

/// Revisions in which a server may send `elicitation/create` to the client.
const ELICITATION_VERSIONS: &[&str] = &["2025-06-18", "2025-11-25"];

/// The most pages of `tools/list` the gateway reads when it refreshes its own view.
const MAX_REFRESH_PAGES: usize = 100;

/// How long the relay waits for the upstream to take a message before it answers the client
/// that the upstream is not reading its input.
pub const UPSTREAM_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the requests in flight when a client over stdio closes its input may wait for the
/// upstream's answers ([`RelayConfig::answer_after_client_eof`]), without `--upstream-timeout`.
pub const CLIENT_EOF_WAIT: Duration = Duration::from_secs(10);

/// How a session is relayed.
#[derive(Debug, Clone, Default)]
pub struct RelayConfig {
    /// The session every call of this relay is decided in.
    pub session: Option<String>,
    /// How long a request may wait for the upstream's answer; `None`: as long as it takes.
    pub upstream_timeout: Option<Duration>,
    /// Where the relay writes the protocol revision negotiated by `initialize`, for a transport
    /// whose rules depend on it (HTTP batches).
    pub negotiated: Option<Arc<std::sync::OnceLock<String>>>,
    /// Where the relay records the `Mcp-Param-*` declarations of the tools the upstream lists
    /// (a relay of clients without a session, whose listener checks them; an HTTP upstream
    /// connection records them itself).
    pub param_schemas: Option<Arc<ParamSchemas>>,
    /// The relay of clients without a session: a notification the upstream sent for one request
    /// ([`RELATED_REQUEST`]) goes to the client with that request's id in [`RELATED_REQUEST`],
    /// for the listener to route it to that request's POST. Otherwise the field is taken out.
    pub attribute_related: bool,
    /// Where the relay keeps its approval rounds (`None`: a store of its own, its rounds ending
    /// with it), and who it is among their owners (the identity of clients without a session).
    pub approval_rounds: Option<Arc<ApprovalRounds>>,
    /// Where the relay keeps the upstream's own `input_required` rounds (`None`: a store of its
    /// own, its rounds ending with it), owned by `round_owner` too.
    pub upstream_rounds: Option<Arc<UpstreamRounds>>,
    /// See `approval_rounds`.
    pub round_owner: String,
    /// Whose quota of kept rounds ([`MAX_PENDING_ROUNDS`]) this relay's rounds count against:
    /// the principal of clients without a session, whichever token's claims it came with (a
    /// principal minting a token per request is one quota, not one per token); empty: the
    /// owner's own.
    pub round_quota: String,
    /// A relay of clients without a session in front of a command upstream: before relaying
    /// the first request of a revision without `initialize`, the gateway asks the upstream
    /// `server/discover` (unless the client did); when it does not offer that revision, such
    /// requests are refused as an HTTP upstream of an older revision refuses them, with 400
    /// ([`UPSTREAM_STATUS`]), so that the client falls back to `initialize`.
    pub probe_inline: bool,
    /// A client over stdio, which may close its input and still read its output (`printf
    /// REQUESTS | mcp-policy-gateway ...`): when its input ends, the upstream's input is closed
    /// as the client closed the gateway's, and the requests in flight are still answered as the
    /// upstream answers them, for at most [`CLIENT_EOF_WAIT`] (or the upstream timeout), also
    /// when the client does not read; whatever is unanswered then gets an error. The approvals
    /// asked of the client fail at once, and the upstream's requests are no longer put to it.
    /// Otherwise (a session over HTTP, whose client has gone) the relay ends at once.
    pub answer_after_client_eof: bool,
    /// Where the admin API announces the approvals it resolved (over HTTP with
    /// `--admin-token-file`): a call this relay asks its client about is decided as soon as its
    /// entry is resolved out of band, and the client's question withdrawn.
    pub approval_resolutions: Option<crate::approvals::Resolutions>,
    /// A client over stdio in front of a command upstream, the relay alone on its thread: before
    /// it waits for either, it reads their descriptors as data comes for at most this long
    /// (`--spin`; see [`crate::spin::for_lines`]). Zero: it waits at once.
    pub spin: Duration,
}

/// How many calls of one relay may wait for its client's human at once (as many as the core
/// keeps pending for one grant); past this, a call to approve is refused, not asked.
pub const MAX_WAITING_APPROVALS: usize = mcp_policy::MAX_PENDING_PER_GRANT;

/// How many requests wait for the upstream's answer to the gateway's `server/discover` (as many
/// as a session may have in flight); past this, requests are refused (429) until it answers.
const MAX_WAITING_FOR_DISCOVERY: usize = 64;

/// How long requests wait for the upstream's answer to the gateway's `server/discover`; past
/// this they are refused as for an upstream that does not offer their revision (one that
/// ignores methods it does not know never answers). A later answer (an upstream slow to start)
/// is still learned, for the requests that follow.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a command upstream offers of the revisions without `initialize` (see
/// [`RelayConfig::probe_inline`]).
enum InlineOffer {
    /// Not known yet.
    Unknown,
    /// The gateway asked (when); the requests waiting for the answer, in order.
    Asking { since: Instant, waiting: Vec<Value> },
    /// The revisions it offers (none when it answered `server/discover` with an error).
    Known(Vec<String>),
}

/// The field an upstream connection adds to a message it received on the answer stream of
/// one of the gateway's requests (the request's id), and that a relay of clients without a
/// session passes on with the client's id of that request. It never reaches a client: the
/// listener takes it out, and other relays drop it.
pub const RELATED_REQUEST: &str = "mcp-policy-gateway/relatedRequest";

/// Why the relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The client closed its side.
    ClientClosed,
    /// The upstream closed its side (it exited, crashed or closed its output).
    UpstreamClosed,
}

/// A request the gateway sent to the upstream, awaiting its response.
enum UpPending {
    /// Relayed from the client.
    Client { client_id: Value, kind: Relayed, deadline: Option<Instant> },
    /// The gateway's own `tools/list` refresh.
    Refresh { acc: ToolCache, pages: usize },
    /// The gateway's own `server/discover` (see [`RelayConfig::probe_inline`]).
    Discover,
}

enum Relayed {
    Initialize,
    Discover,
    ToolsList,
    /// A call sent to the upstream; its arguments are kept to bind an `input_required` answer
    /// of the upstream (see [`UpstreamRounds`]) to them.
    ToolsCall {
        record: Box<Record>,
        sent: Instant,
        arguments: Value,
        /// The decided call this one continues (itself, when it was decided).
        chain: Chain,
    },
    Other,
}

/// A request the gateway sent to the client, awaiting its response.
enum DownPending {
    /// Relayed from the upstream, whose id it was.
    Upstream { upstream_id: Value },
    /// The gateway's own `elicitation/create`, for the client request with this id key.
    Approval { client_key: String },
}

/// Where a client request went.
enum Target {
    Upstream(String),
    Approval,
}

/// A call waiting for a human.
struct WaitingApproval {
    client_id: Value,
    elicitation_id: Value,
    message: Value,
    tool: String,
    arguments: Value,
    key: String,
    /// The id the admin API lists the entry under (out-of-band approvals only).
    id: Option<String>,
    record: Record,
}

/// The human's answer carried by an `input_required` retry.
enum RoundAnswer {
    /// Accepted with `approve: true`, for the round whose approval key this is.
    Approved(String),
    /// Declined, cancelled, or not an answer the gateway understands; with the id of the
    /// call's pending approval when a human declined it (`decline`, or `accept` without
    /// `approve: true`) and the admin API lists it.
    Declined(Option<String>),
    /// A `requestState` that no pending round of this tool in this session has (forged,
    /// replayed, expired, another session's or another tool's).
    Unknown,
}

/// The relay of one session.
pub struct Relay<S> {
    guard: Arc<Guard<S>>,
    log: Arc<DecisionLog>,
    session: Option<String>,
    upstream_timeout: Option<Duration>,
    negotiated: Option<Arc<std::sync::OnceLock<String>>>,
    param_schemas: Option<Arc<ParamSchemas>>,
    attribute_related: bool,
    to_client: ClientTx,
    to_upstream: UpstreamTx,
    next_up: u64,
    next_down: u64,
    up_pending: HashMap<String, UpPending>,
    down_pending: HashMap<String, DownPending>,
    client_requests: HashMap<String, Target>,
    /// The upstream's request id key → the id the client saw.
    upstream_requests: HashMap<String, Value>,
    approvals: HashMap<String, WaitingApproval>,
    /// The gateway's approval rounds, and who this relay is among their owners.
    rounds: Arc<ApprovalRounds>,
    round_owner: String,
    round_quota: String,
    /// The upstream's own `input_required` rounds (the relay's own, or the listener's).
    continuations: Arc<UpstreamRounds>,
    client_capabilities: Option<Value>,
    upstream_capabilities: Option<Value>,
    protocol: Option<String>,
    tools: ToolCache,
    /// The client sent `notifications/initialized`: the gateway may make its own requests.
    initialized: bool,
    refreshing: bool,
    refresh_again: bool,
    probe_inline: bool,
    answer_after_client_eof: bool,
    inline_offer: InlineOffer,
    spin: Duration,
    /// Requests that waited for the upstream's `server/discover`, to be handled (before the
    /// client's next message) as the upstream can take them.
    replay: VecDeque<Value>,
}

impl<S: AsyncCounterStore> Relay<S> {
    /// Relays between `client` and `upstream` until one of them goes.
    pub async fn run(
        guard: Arc<Guard<S>>,
        log: Arc<DecisionLog>,
        config: RelayConfig,
        client: ClientLink,
        upstream: UpstreamLink,
    ) -> RelayEnd {
        let ClientLink { tx, rx } = client;
        Self::run_to(guard, log, config, tx, rx, upstream).await
    }

    /// [`Relay::run`], with what the client must receive sent to `to_client`.
    pub async fn run_to(
        guard: Arc<Guard<S>>,
        log: Arc<DecisionLog>,
        config: RelayConfig,
        to_client: ClientTx,
        mut from_client: ClientRx,
        upstream: UpstreamLink,
    ) -> RelayEnd {
        let UpstreamLink { tx: to_upstream, rx: mut from_upstream } = upstream;
        let mut resolved = config.approval_resolutions.as_ref().map(|r| r.subscribe());
        let mut relay = Relay {
            guard,
            log,
            session: config.session,
            upstream_timeout: config.upstream_timeout,
            negotiated: config.negotiated,
            param_schemas: config.param_schemas,
            attribute_related: config.attribute_related,
            to_client,
            to_upstream,
            next_up: 0,
            next_down: 0,
            up_pending: HashMap::new(),
            down_pending: HashMap::new(),
            client_requests: HashMap::new(),
            upstream_requests: HashMap::new(),
            approvals: HashMap::new(),
            rounds: config
                .approval_rounds
                .unwrap_or_else(|| Arc::new(ApprovalRounds::new(MAX_PENDING_ROUNDS))),
            round_owner: config.round_owner,
            round_quota: config.round_quota,
            continuations: config
                .upstream_rounds
                .unwrap_or_else(|| Arc::new(UpstreamRounds::new(MAX_PENDING_ROUNDS))),
            client_capabilities: None,
            upstream_capabilities: None,
            protocol: None,
            tools: ToolCache::default(),
            initialized: false,
            refreshing: false,
            refresh_again: false,
            probe_inline: config.probe_inline,
            answer_after_client_eof: config.answer_after_client_eof,
            inline_offer: InlineOffer::Unknown,
            spin: config.spin,
            replay: VecDeque::new(),
        };
        let timed = relay.upstream_timeout.is_some();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Since when the upstream has not taken what it was sent (its input is full).
        let mut full_since: Option<tokio::time::Instant> = None;
        loop {
            // A client that reads nothing more (it closed the gateway's stdout) gets nothing
            // more done for it: its calls would be decided, charged and run for nobody.
            if relay.to_client.is_gone() {
                from_upstream.discard();
                return RelayEnd::ClientClosed;
            }
            // The client's next message is read only when the upstream can take it: meanwhile
            // the relay keeps reading the upstream. Waiting for the upstream to read its input
            // while not reading its output would hold both until `UPSTREAM_SEND_TIMEOUT`, and
            // turn the calls of a client that sends many at once into errors. An upstream that
            // takes nothing for that long while its output is read is not reading its input:
            // the client's messages are read again, and each gets that error.
            let room = relay.to_upstream.has_room();
            if room {
                full_since = None;
            }
            let stalled_at = (!room).then(|| {
                *full_since.get_or_insert_with(tokio::time::Instant::now) + UPSTREAM_SEND_TIMEOUT
            });
            let stalled = stalled_at.is_some_and(|at| at <= tokio::time::Instant::now());
            let read_client = room || stalled;
            if read_client && let Some(msg) = relay.replay.pop_front() {
                relay.on_client(msg).await;
                continue;
            }
            // Reads that return without waiting (a line already buffered, or read by the spin)
            // and writes that do not wait take nothing of the runtime's budget: the relay gives
            // the thread's other tasks (the writers' flushers, signals, reload, timers) their
            // turn as often as the runtime's own reads would have, whether it spins or not.
            tokio::task::consume_budget().await;
            if !relay.spin.is_zero()
                && let Some(upstream) = from_upstream.lines_mut()
            {
                let client = if read_client { from_client.lines_mut() } else { None };
                crate::spin::for_lines(client, upstream, relay.spin);
            }
            tokio::select! {
                _ = tick.tick(), if timed || relay.asking() => relay.expire().await,
                // An administrator answered an approval (with the admin API only). Only while a
                // call waits for its client's human: otherwise the answers are nothing to this
                // relay, and it is not woken for them (each would cost every session's relay a
                // turn). Those it did not take then are taken once a call waits: each is
                // applied as the core says now, so an old one decides nothing anew.
                r = async {
                    match resolved.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                }, if resolved.is_some() && !relay.approvals.is_empty() => match r {
                    Ok(id) => relay.resolved_out_of_band(Some(&id)).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        relay.resolved_out_of_band(None).await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => resolved = None,
                },
                _ = relay.to_upstream.room(), if !read_client => {}
                _ = async {
                    match stalled_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                }, if !read_client => {}
                m = from_client.recv(), if read_client => match m {
                    None => {
                        if relay.answer_after_client_eof {
                            relay.answer_after_client_eof(&mut from_upstream).await;
                        }
                        from_upstream.discard();
                        return RelayEnd::ClientClosed;
                    }
                    Some(Inbound::Malformed(why)) => {
                        relay.client(jsonrpc::error(Value::Null, jsonrpc::PARSE_ERROR,
                            format!("parse error: {why}"))).await;
                    }
                    Some(Inbound::Message(v)) => relay.on_client(v).await,
                    Some(Inbound::Line(line)) => relay.on_client_line(&line).await,
                },
                m = from_upstream.recv_line() => match m {
                    None => {
                        relay.upstream_gone().await;
                        return RelayEnd::UpstreamClosed;
                    }
                    Some(Received::Message(v)) => relay.on_upstream(v).await,
                    Some(Received::Line(line)) => {
                        if !relay.answer_line(&line).await
                            && let Some(v) = from_upstream.parse(&line)
                        {
                            relay.on_upstream(v).await;
                        }
                    }
                },
            }
        }
    }

    /// The client's input has ended ([`RelayConfig::answer_after_client_eof`]): the upstream's
    /// input is closed (it sees the end of its input, as it would with the client in front of
    /// it), and what it sends still goes to the client (but its requests, which the client
    /// cannot answer) until no request waits for it, it closes its output, or the wait is over,
    /// which nothing holds up. Whatever is still unanswered then gets an error; the approvals
    /// asked of the client fail first.
    async fn answer_after_client_eof(&mut self, from_upstream: &mut UpstreamRx) {
        let (closed, _) = tokio::sync::mpsc::channel(1);
        drop(std::mem::replace(&mut self.to_upstream, UpstreamTx::Channel(closed)));
        let wait = self.upstream_timeout.unwrap_or(CLIENT_EOF_WAIT);
        let until = tokio::time::Instant::now() + wait;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let drain = async {
            self.fail_approvals_after_client_eof().await;
            let mut upstream_open = true;
            while upstream_open && self.waits_for_upstream() && !self.to_client.is_gone() {
                tokio::select! {
                    _ = tick.tick(), if self.upstream_timeout.is_some() => self.expire().await,
                    m = from_upstream.recv() => match m {
                        // The client cannot answer a request now: the upstream's (sampling,
                        // elicitation, roots) are not put to it (a human asked what cannot be
                        // answered, a model run for nothing).
                        Some(v) if matches!(jsonrpc::classify(&v), Kind::Request { .. }) => {}
                        Some(v) => self.on_upstream(v).await,
                        None => upstream_open = false,
                    },
                }
            }
            upstream_open
        };
        // The whole wait is bounded, also while a message waits for a client that does not read
        // its output (its pipe and the writer's queue full: an upstream flooding notifications).
        let upstream_open = tokio::time::timeout_at(until, drain).await.unwrap_or(true);
        let error = if upstream_open { after_client_eof_error } else { upstream_gone_error };
        let outcome =
            if upstream_open { Outcome::UpstreamTimeout } else { Outcome::UpstreamClosed };
        let errors = self.fail_waiting(outcome, error);
        // Such a client gets no more than its output takes within `UPSTREAM_SEND_TIMEOUT`.
        let send = async {
            for e in errors {
                self.client(e).await;
            }
        };
        let _ = tokio::time::timeout(UPSTREAM_SEND_TIMEOUT, send).await;
    }

    /// The client's input has ended: the human's answers to the approvals asked of it can no
    /// longer come. Each such call fails as a failed elicitation does (`approval: failed`, not
    /// dispatched), and the client is told that the approval is no longer asked.
    async fn fail_approvals_after_client_eof(&mut self) {
        let waiting: Vec<WaitingApproval> = self.approvals.drain().map(|(_, w)| w).collect();
        let mut messages = Vec::with_capacity(waiting.len() * 2);
        // Every call is logged before anything is sent (which waits for a client that does
        // not read, as long as the wait lasts).
        for mut w in waiting {
            self.client_requests.remove(&jsonrpc::id_key(&w.client_id));
            messages.push(self.give_up_approval(
                &mut w,
                "failed",
                Outcome::NotDispatched,
                "the client closed its input before answering this approval",
            ));
            messages.push(jsonrpc::result(w.client_id, declined(&w.tool, "failed")));
        }
        for m in messages {
            self.client(m).await;
        }
    }

    /// Gives up the approval `w` waits for: the elicitation asked of the client is forgotten and
    /// the call logged with `approval` and `outcome`. Returns the cancellation of that
    /// elicitation for the client, saying `reason`.
    fn give_up_approval(
        &mut self,
        w: &mut WaitingApproval,
        approval: &'static str,
        outcome: Outcome,
        reason: &str,
    ) -> Value {
        self.down_pending.remove(&jsonrpc::id_key(&w.elicitation_id));
        w.record.approval = Some(approval);
        self.log.write(&w.record, outcome, None);
        jsonrpc::notification(
            "notifications/cancelled",
            json!({ "requestId": w.elicitation_id, "reason": reason }),
        )
    }

    /// Whether a client request waits for the upstream's answer.
    fn waits_for_upstream(&self) -> bool {
        self.up_pending.values().any(|p| matches!(p, UpPending::Client { .. }))
    }

    async fn client(&self, msg: Value) {
        // A client that has gone is noticed by the reading side.
        let _ = self.to_client.send(msg).await;
    }

    /// Sends to the upstream; `false` when it has gone or has not taken the message within
    /// [`UPSTREAM_SEND_TIMEOUT`] (it is not reading its input).
    async fn upstream(&self, msg: Value) -> bool {
        self.to_upstream.send_timeout(msg, UPSTREAM_SEND_TIMEOUT).await.is_ok()
    }

    /// [`Relay::upstream`] for a message already written as a line, to the upstream process's
    /// stdin.
    async fn upstream_line(&self, line: Vec<u8>) -> bool {
        let Some(writer) = self.to_upstream.lines() else { return false };
        // Without a timer when the line is taken at once, as it mostly is.
        let line = match writer.try_send_line(line) {
            Offered::Taken => return true,
            Offered::Gone => return false,
            Offered::Full(line) => line,
        };
        matches!(
            tokio::time::timeout(UPSTREAM_SEND_TIMEOUT, writer.send_line(line)).await,
            Ok(Ok(()))
        )
    }

    fn up_id(&mut self) -> Value {
        self.next_up += 1;
        json!(self.next_up)
    }

    fn down_id(&mut self) -> Value {
        self.next_down += 1;
        json!(self.next_down)
    }

    // ---- from the client ----

    async fn on_client(&mut self, msg: Value) {
        let (id, method) = match jsonrpc::classify(&msg) {
            Kind::Invalid { id, reason } => {
                self.client(jsonrpc::error(id, jsonrpc::INVALID_REQUEST, reason)).await;
                return;
            }
            Kind::Response { id } => {
                let id = id.clone();
                self.client_response(id, msg).await;
                return;
            }
            Kind::Notification { method } => {
                let method = method.to_owned();
                self.client_notification(&method, msg).await;
                return;
            }
            Kind::Request { id, method } => (id.clone(), method.to_owned()),
        };
        if self.probe_inline
            && method != "server/discover"
            && let Some(version) = inline_request_version(&msg)
        {
            let version = version.to_owned();
            match &mut self.inline_offer {
                InlineOffer::Known(offered) => {
                    if !offered.contains(&version) {
                        self.client(not_offered(id, &version)).await;
                        return;
                    }
                }
                InlineOffer::Asking { waiting, .. } => {
                    if waiting.len() < MAX_WAITING_FOR_DISCOVERY {
                        waiting.push(msg);
                    } else {
                        let busy = jsonrpc::error_with_data(
                            id,
                            jsonrpc::INTERNAL_ERROR,
                            "too many requests wait for the upstream's `server/discover`: retry",
                            json!({ UPSTREAM_STATUS: 429 }),
                        );
                        self.client(busy).await;
                    }
                    return;
                }
                InlineOffer::Unknown => {
                    // Asked as the client would have: with its request's `_meta` (revision,
                    // capabilities, client).
                    // Not its progress token: that is the request's own (the listener routes
                    // progress on it to the request's POST).
                    let mut meta = jsonrpc::params(&msg).and_then(|p| p.get("_meta")).cloned();
                    if let Some(m) = meta.as_mut().and_then(Value::as_object_mut) {
                        m.remove("progressToken");
                    }
                    let up_id = self.up_id();
                    self.up_pending.insert(jsonrpc::id_key(&up_id), UpPending::Discover);
                    let since = Instant::now();
                    self.inline_offer = InlineOffer::Asking { since, waiting: vec![msg] };
                    let params = json!({ "_meta": meta });
                    let discover = jsonrpc::request(up_id, "server/discover", params);
                    if !self.upstream(discover).await {
                        self.learn_inline_offer(None).await;
                    }
                    return;
                }
            }
        }
        if self.client_requests.contains_key(&jsonrpc::id_key(&id)) {
            self.client(jsonrpc::error(
                id,
                jsonrpc::INVALID_REQUEST,
                "a request with this id is already in progress",
            ))
            .await;
            return;
        }
        match method.as_str() {
            "initialize" => {
                let mut msg = msg;
                self.initialize(&mut msg);
                self.forward(id, Relayed::Initialize, msg).await;
            }
            // Discovery (revisions without `initialize`) goes to the upstream; any error it
            // answers becomes "method not found" (some answer -32602), on which a client falls
            // back to `initialize` (see `upstream_response`).
            "server/discover" => {
                self.forward(id, Relayed::Discover, msg).await;
            }
            "tools/list" => {
                self.forward(id, Relayed::ToolsList, msg).await;
            }
            "tools/call" => self.tools_call(id, msg).await,
            // A tools method the gateway cannot guard (from a future revision) never reaches
            // the upstream.
            m if m.starts_with("tools/") => {
                self.client(jsonrpc::error(
                    id,
                    jsonrpc::METHOD_NOT_FOUND,
                    format!("method `{m}` is not available through the policy gateway"),
                ))
                .await;
            }
            _ => {
                self.forward(id, Relayed::Other, msg).await;
            }
        }
    }

    /// Records what the client declared and asks the upstream for a revision the gateway speaks.
    fn initialize(&mut self, msg: &mut Value) {
        let Some(params) = msg.get_mut("params").and_then(Value::as_object_mut) else {
            return;
        };
        self.client_capabilities = params.get("capabilities").cloned();
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        if !requested.is_some_and(|v| PROTOCOL_VERSIONS.contains(&v)) {
            params.insert("protocolVersion".into(), LATEST_PROTOCOL_VERSION.into());
        }
    }

    /// Sends a client request on to the upstream.
    async fn forward(&mut self, client_id: Value, kind: Relayed, mut msg: Value) -> bool {
        let up_id = self.up_id();
        let up_key = jsonrpc::id_key(&up_id);
        jsonrpc::set_id(&mut msg, up_id);
        let delivered = self.upstream(msg).await;
        self.forwarded(client_id, kind, up_key, delivered).await
    }

    /// Keeps track of a client request sent on to the upstream as `up_key`, or answers the
    /// client when it could not be `delivered`. Returns `delivered`.
    async fn forwarded(
        &mut self,
        client_id: Value,
        kind: Relayed,
        up_key: String,
        delivered: bool,
    ) -> bool {
        if !delivered {
            if let Relayed::ToolsCall { record, .. } = &kind {
                self.log.write(record, Outcome::UpstreamClosed, None);
            }
            self.client(upstream_gone_error(client_id)).await;
            return false;
        }
        self.client_requests.insert(jsonrpc::id_key(&client_id), Target::Upstream(up_key.clone()));
        let deadline = self.upstream_timeout.map(|t| Instant::now() + t);
        self.up_pending.insert(up_key, UpPending::Client { client_id, kind, deadline });
        true
    }

    async fn tools_call(&mut self, id: Value, mut msg: Value) {
        let params = jsonrpc::params(&msg);
        let Some(tool) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            self.client(jsonrpc::error(
                id,
                jsonrpc::INVALID_PARAMS,
                "`tools/call` needs `params.name`, a string",
            ))
            .await;
            return;
        };
        let arguments = match params.and_then(|p| p.get("arguments")) {
            None | Some(Value::Null) => json!({}),
            Some(a @ Value::Object(_)) => a.clone(),
            Some(_) => {
                self.client(jsonrpc::error(
                    id,
                    jsonrpc::INVALID_PARAMS,
                    "`params.arguments` of `tools/call` must be an object",
                ))
                .await;
                return;
            }
        };
        let tool = tool.to_owned();
        let rounds = self.input_rounds(&msg);
        match self.take_round_answer(&mut msg, &tool, rounds) {
            None => {}
            Some(RoundAnswer::Approved(key)) => {
                self.decide_approved(id, msg, &tool, &arguments, &key).await;
                return;
            }
            Some(RoundAnswer::Declined(pending)) => {
                // As a decline through elicitation: the administrator's entry is refused too,
                // unless they answered first: then their answer decides, as for the agent's
                // retry without an answer.
                if let Some(pending) = &pending
                    && let Err(mcp_policy::ResolveApprovalError::AlreadyResolved(_)) =
                        self.guard.evaluator().resolve_approval(pending, false)
                    && let Some(verdict) = self.answered_out_of_band(&tool, &arguments).await
                {
                    self.answer_out_of_band(id, msg, arguments, verdict).await;
                    return;
                }
                let mut record = self.guard.refusal_record(
                    &tool,
                    self.session.as_deref(),
                    "the human declined to approve this call",
                );
                record.approval = Some("declined");
                self.log.write(&record, Outcome::NotDispatched, None);
                self.client(jsonrpc::result(id, declined(&tool, "declined"))).await;
                return;
            }
            Some(RoundAnswer::Unknown) => {
                let message = "the approval answer matches no pending approval of this call";
                let mut record = self.guard.refusal_record(&tool, self.session.as_deref(), message);
                record.approval = Some("failed");
                self.log.write(&record, Outcome::NotDispatched, None);
                self.client(jsonrpc::result(id, round_refusal(message))).await;
                return;
            }
        }
        // The retry of a call the upstream asked input for: it continues that call (unless a
        // policy reloaded since hides the tool, or allows it no longer by name).
        if let Some(state) =
            jsonrpc::params(&msg).and_then(|p| p.get("requestState")).and_then(Value::as_str)
            && (self.guard.mode() == crate::guard::Mode::Monitor
                || self.guard.evaluator().policy().is_visible(&tool))
            && let Some(chain) = self.redeem_continuation(state, &tool, &arguments)
        {
            let record = self.guard.continuation_record(&tool, self.session.as_deref());
            let sent = Instant::now();
            let kind = Relayed::ToolsCall { record: Box::new(record), sent, arguments, chain };
            self.forward(id, kind, msg).await;
            return;
        }
        let verdict =
            self.guard.decide(&tool, &arguments, self.session.as_deref(), None, &self.tools).await;
        self.decided(id, msg, tool, arguments, verdict, rounds).await;
    }

    /// Does what `verdict` says with the `tools/call` `msg` (of `tool` with `arguments`, id
    /// `id`); `rounds` as [`Relay::input_rounds`] says.
    async fn decided(
        &mut self,
        id: Value,
        msg: Value,
        tool: String,
        arguments: Value,
        verdict: Verdict,
        rounds: bool,
    ) {
        match verdict {
            Verdict::Dispatch { receipt, record } => {
                self.dispatch(id, msg, record, receipt, arguments).await;
            }
            Verdict::Refuse { result, record } => {
                self.log.write(&record, Outcome::NotDispatched, None);
                self.client(jsonrpc::result(id, result)).await;
            }
            Verdict::Approve { key, id: pending_id, prompt, refusal, mut record } => {
                if rounds {
                    let token = self.issue_round(key, pending_id, &tool);
                    self.log.write(&record, Outcome::ApprovalRequested, None);
                    let mut requests = serde_json::Map::new();
                    requests.insert(
                        APPROVAL_INPUT.to_owned(),
                        json!({ "method": "elicitation/create",
                                "params": self.elicitation_params(prompt) }),
                    );
                    let result = json!({
                        "resultType": "input_required",
                        "inputRequests": requests,
                        "requestState": token,
                    });
                    self.client(jsonrpc::result(id, result)).await;
                    return;
                }
                if !self.can_elicit() {
                    // Branch `http`: with the admin API the call waits out of band.
                    record.approval =
                        Some(if self.guard.out_of_band() { "pending" } else { "unavailable" });
                    self.log.write(&record, Outcome::NotDispatched, None);
                    self.client(jsonrpc::result(id, refusal)).await;
                    return;
                }
                if self.approvals.len() >= MAX_WAITING_APPROVALS {
                    let message = format!(
                        "{MAX_WAITING_APPROVALS} tool calls of this session already wait for a \
                         human's approval: answer them first"
                    );
                    record.approval = Some("failed");
                    self.log.write(&record, Outcome::NotDispatched, None);
                    self.client(jsonrpc::result(id, round_refusal(&message))).await;
                    return;
                }
                self.log.write(&record, Outcome::ApprovalRequested, None);
                let elicitation_id = self.down_id();
                let request = jsonrpc::request(
                    elicitation_id.clone(),
                    "elicitation/create",
                    self.elicitation_params(prompt),
                );
                let client_key = jsonrpc::id_key(&id);
                self.down_pending.insert(
                    jsonrpc::id_key(&elicitation_id),
                    DownPending::Approval { client_key: client_key.clone() },
                );
                self.client_requests.insert(client_key.clone(), Target::Approval);
                self.approvals.insert(
                    client_key,
                    WaitingApproval {
                        client_id: id,
                        elicitation_id,
                        message: msg,
                        tool,
                        arguments,
                        key,
                        id: pending_id,
                        record,
                    },
                );
                self.client(request).await;
            }
        }
    }

    /// Sends an allowed call to the upstream. When it cannot be sent, the call did not happen:
    /// its units are given back.
    async fn dispatch(
        &mut self,
        id: Value,
        msg: Value,
        record: Record,
        receipt: Option<mcp_policy::ChargeReceipt>,
        arguments: Value,
    ) {
        let sent = Instant::now();
        let chain = Chain { decided: sent, rounds: 0 };
        let kind = Relayed::ToolsCall { record: Box::new(record), sent, arguments, chain };
        if !self.forward(id, kind, msg).await {
            self.give_back(receipt).await;
        }
    }

    /// Gives back the units of a call that could not be sent to the upstream.
    async fn give_back(&self, receipt: Option<mcp_policy::ChargeReceipt>) {
        if let Some(receipt) = receipt
            && let Err(e) = self.guard.evaluator().rollback_receipt_async(receipt).await
        {
            eprintln!(
                "mcp-policy-gateway: could not give back the units of an undelivered call: {e}"
            );
        }
    }

    /// A line the client sent (over stdio): a `tools/call` that needs nothing but the policy's
    /// decision is decided and, when allowed, sent on from its line before anything else is
    /// done for it (see [`crate::raw`]); anything else is parsed and handled as a message.
    async fn on_client_line(&mut self, line: &[u8]) {
        if self.call_line(line).await {
            return;
        }
        match crate::lines::parse(line) {
            Frame::Json(v) => self.on_client(v).await,
            Frame::Malformed(why) => {
                let error = jsonrpc::error(
                    Value::Null,
                    jsonrpc::PARSE_ERROR,
                    format!("parse error: {why}"),
                );
                self.client(error).await;
            }
        }
    }

    /// Handles `line` when it is a `tools/call` with nothing but a name, arguments and `_meta`
    /// (which, once `initialize` has negotiated the session's revision, asks nothing of the
    /// gateway), as [`Relay::tools_call`] would: returns whether it did.
    async fn call_line(&mut self, line: &[u8]) -> bool {
        if self.probe_inline || self.to_upstream.lines().is_none() {
            return false;
        }
        let Some(call) = raw::tool_call(line) else { return false };
        if (call.has_meta() && self.protocol.is_none())
            || self.client_requests.contains_key(&jsonrpc::id_key(&call.id))
        {
            return false;
        }
        // The gateway's id first: a refused call wastes one, which is harmless.
        let up_id = self.up_id();
        let (guard, session) = (&self.guard, self.session.as_deref());
        let evaluated = guard.evaluate(&call.name, &call.arguments, session, None).await;
        if !guard.dispatches(&evaluated, None) {
            let verdict =
                guard.verdict(evaluated, &call.name, &call.arguments, session, None, &self.tools);
            let raw::ToolCall { id, name, arguments, .. } = call;
            // A refusal does not need the message (an approval keeps it, to send it on once
            // approved): it is not parsed again, so a flood of refused calls costs one read each.
            let msg = match &verdict {
                Verdict::Refuse { .. } => Value::Null,
                Verdict::Approve { .. } | Verdict::Dispatch { .. } => {
                    match crate::lines::parse(line) {
                        Frame::Json(msg) => msg,
                        // A line `raw::tool_call` reads is a JSON value: each of its parts is.
                        Frame::Malformed(_) => {
                            let error =
                                jsonrpc::error(Value::Null, jsonrpc::PARSE_ERROR, "parse error");
                            self.client(error).await;
                            return true;
                        }
                    }
                }
            };
            self.decided(id, msg, name.into_owned(), arguments, verdict, false).await;
            return true;
        }
        // Sent first: the bookkeeping waits until the upstream has the call. Unless sending
        // waits (the upstream's input is full): the record then says now which policy decided
        // (one reloaded during the wait did not).
        let sent = Instant::now();
        let line = call.with_id(&up_id);
        let (delivered, (receipt, record)) = if self.to_upstream.has_room() {
            let delivered = self.upstream_line(line).await;
            (delivered, guard.dispatched(evaluated, &call.name, session, None))
        } else {
            let dispatched = guard.dispatched(evaluated, &call.name, session, None);
            (self.upstream_line(line).await, dispatched)
        };
        let chain = Chain { decided: sent, rounds: 0 };
        let raw::ToolCall { id, arguments, .. } = call;
        let kind = Relayed::ToolsCall { record: Box::new(record), sent, arguments, chain };
        if !self.forwarded(id, kind, jsonrpc::id_key(&up_id), delivered).await {
            self.give_back(receipt).await;
        }
        true
    }

    /// Whether the gateway can ask the human through the client: the session's revision has
    /// server-to-client elicitation and the client declared form elicitation.
    fn can_elicit(&self) -> bool {
        let version_ok =
            self.protocol.as_deref().is_some_and(|v| ELICITATION_VERSIONS.contains(&v));
        let form = match self.client_capabilities.as_ref().and_then(|c| c.get("elicitation")) {
            Some(Value::Object(e)) => e.is_empty() || e.contains_key("form"),
            _ => false,
        };
        version_ok && form
    }

    /// Whether this request may be answered with an approval round (`input_required`): the
    /// session negotiated no `initialize` revision, the request's `_meta` names a revision
    /// with input rounds that the gateway speaks, and declares the client's elicitation (form).
    fn input_rounds(&self, msg: &Value) -> bool {
        if self.protocol.is_some() {
            return false;
        }
        let Some(meta) = jsonrpc::params(msg).and_then(|p| p.get("_meta")) else {
            return false;
        };
        let version_ok = meta
            .get(META_PROTOCOL_VERSION)
            .and_then(Value::as_str)
            .is_some_and(|v| INLINE_PROTOCOL_VERSIONS.contains(&v));
        let form = match meta.get(META_CLIENT_CAPABILITIES).and_then(|c| c.get("elicitation")) {
            Some(Value::Object(e)) => e.is_empty() || e.contains_key("form"),
            _ => false,
        };
        version_ok && form
    }

    /// Takes the gateway's approval answer out of a `tools/call` (its entry of
    /// `inputResponses`, and `requestState`, which the gateway's round owns when its input is
    /// answered), so that neither reaches the upstream. The answer counts only when `rounds`
    /// (see [`Relay::input_rounds`]); elsewhere it is dropped and the call decided afresh.
    fn take_round_answer(
        &mut self,
        msg: &mut Value,
        tool: &str,
        rounds: bool,
    ) -> Option<RoundAnswer> {
        let params = msg.get_mut("params").and_then(Value::as_object_mut)?;
        let responses = params.get_mut("inputResponses").and_then(Value::as_object_mut)?;
        let response = responses.remove(APPROVAL_INPUT)?;
        if responses.is_empty() {
            params.remove("inputResponses");
        }
        let token = params.remove("requestState");
        if !rounds {
            return None;
        }
        let Some((key, pending)) =
            token.as_ref().and_then(Value::as_str).and_then(|t| self.redeem_round(t, tool))
        else {
            return Some(RoundAnswer::Unknown);
        };
        let action = response.get("action").and_then(Value::as_str);
        let accepted = action == Some("accept")
            && response.get("content").and_then(|c| c.get("approve")).and_then(Value::as_bool)
                == Some(true);
        let declined = matches!(action, Some("accept" | "decline"));
        Some(match (accepted, declined) {
            (true, _) => RoundAnswer::Approved(key),
            (false, true) => RoundAnswer::Declined(pending),
            (false, false) => RoundAnswer::Declined(None),
        })
    }

    /// A new round for the approval `key` of `tool`: its random token (256 bits).
    fn issue_round(&mut self, key: String, pending: Option<String>, tool: &str) -> String {
        self.rounds.issue(&self.round_owner, &self.round_quota, key, pending, tool)
    }

    /// The approval key of the round `token`, once, if it was issued for `tool` to this relay's
    /// owner (its session, or its identity without a session) and has not expired.
    fn redeem_round(&mut self, token: &str, tool: &str) -> Option<(String, Option<String>)> {
        self.rounds.redeem(&self.round_owner, token, tool)
    }

    /// Remembers that the upstream answered the call of `tool` with `arguments` with an
    /// `input_required` result whose `requestState` is `state`, unless that call has gone
    /// through [`MAX_CONTINUATION_ROUNDS`](crate::rounds::MAX_CONTINUATION_ROUNDS) rounds already or was decided too long ago (its
    /// retry is then decided as a new call).
    fn remember_continuation(&mut self, state: &str, tool: &str, arguments: &Value, chain: Chain) {
        let owner = (self.round_owner.as_str(), self.round_quota.as_str());
        self.continuations.remember(owner, state, tool, arguments, chain);
    }

    /// Whether `state` is the `requestState` of an `input_required` answer the upstream gave
    /// this relay's owner for the call of `tool` with `arguments` (see
    /// [`UpstreamRounds::redeem`]).
    fn redeem_continuation(&mut self, state: &str, tool: &str, arguments: &Value) -> Option<Chain> {
        self.continuations.redeem(&self.round_owner, state, tool, arguments)
    }

    fn elicitation_params(&self, prompt: String) -> Value {
        let mut params = json!({
            "message": prompt,
            "requestedSchema": {
                "type": "object",
                "properties": { "approve": { "type": "boolean", "title": "Approve this call" } },
                "required": ["approve"]
            }
        });
        let form_mode = match self.protocol.as_deref() {
            Some(v) => v == "2025-11-25",
            None => true, // an approval round (revisions without `initialize`)
        };
        if form_mode && let Some(p) = params.as_object_mut() {
            p.insert("mode".into(), "form".into());
        }
        params
    }

    async fn client_notification(&mut self, method: &str, mut msg: Value) {
        match method {
            "notifications/cancelled" => {
                let Some(request_id) = jsonrpc::params(&msg).and_then(|p| p.get("requestId"))
                else {
                    return;
                };
                let key = jsonrpc::id_key(request_id);
                // A request still waiting for the upstream's `server/discover` reached nothing:
                // it is dropped, never decided nor relayed (a sessionless client that closed its
                // connection while it waited).
                if let InlineOffer::Asking { waiting, .. } = &mut self.inline_offer {
                    let before = waiting.len();
                    waiting.retain(|m| m.get("id").map(jsonrpc::id_key).as_ref() != Some(&key));
                    if waiting.len() != before {
                        return;
                    }
                }
                match self.client_requests.remove(&key) {
                    Some(Target::Upstream(up_key)) => {
                        if let Some(UpPending::Client { kind, .. }) =
                            self.up_pending.remove(&up_key)
                            && let Relayed::ToolsCall { record, sent, .. } = kind
                        {
                            let ms = sent.elapsed().as_secs_f64() * 1e3;
                            self.log.write(&record, Outcome::Cancelled, Some(ms));
                        }
                        if let Some(p) = msg.get_mut("params").and_then(Value::as_object_mut)
                            && let Ok(up_id) = serde_json::from_str::<Value>(&up_key)
                        {
                            p.insert("requestId".into(), up_id);
                        }
                        self.upstream(msg).await;
                    }
                    Some(Target::Approval) => {
                        // The wait ends; nothing is dispatched, whatever the human answers.
                        if let Some(mut waiting) = self.approvals.remove(&key) {
                            let cancel = self.give_up_approval(
                                &mut waiting,
                                "cancelled",
                                Outcome::Cancelled,
                                "the tool call waiting for this approval was cancelled",
                            );
                            self.client(cancel).await;
                        }
                    }
                    None => {}
                }
            }
            "notifications/initialized" => {
                self.upstream(msg).await;
                self.initialized = true;
                if self.upstream_capabilities.as_ref().is_some_and(|c| c.get("tools").is_some()) {
                    self.refresh_tools().await;
                }
            }
            _ => {
                self.upstream(msg).await;
            }
        }
    }

    /// The admin API resolved the approval `id` (`None`: some approvals, the relay missed
    /// which). Whichever answer comes first decides: each call this relay asks its client about
    /// under that entry is decided again now, without its approval key, as the agent's retry
    /// would be (the core applies the administrator's answer: an approval passes once, a
    /// refusal refuses once, with `approved_out_of_band` / `refused_out_of_band` in the log).
    /// The client is told it is no longer asked, and its late answer is ignored. A call whose
    /// entry still waits (another identical call took the approval) keeps waiting for the
    /// client, under the entry the core names now.
    async fn resolved_out_of_band(&mut self, id: Option<&str>) {
        let keys: Vec<String> = self
            .approvals
            .iter()
            .filter(|(_, w)| w.id.is_some() && (id.is_none() || w.id.as_deref() == id))
            .map(|(k, _)| k.clone())
            .collect();
        for client_key in keys {
            let Some(w) = self.approvals.get(&client_key) else { continue };
            let verdict = self
                .guard
                .decide(&w.tool, &w.arguments, self.session.as_deref(), None, &self.tools)
                .await;
            if let Verdict::Approve { key, id, record, .. } = verdict {
                if let Some(w) = self.approvals.get_mut(&client_key) {
                    // Under a policy reloaded since the client was asked, its accept approves
                    // nothing (an approval holds for the policy it was asked under: the old key
                    // is kept, and fails), but the administrator's answer to the new entry
                    // still decides the call.
                    if record.policy == w.record.policy {
                        w.key = key;
                    }
                    w.id = id;
                }
                continue;
            }
            let Some(w) = self.approvals.remove(&client_key) else { continue };
            self.client_requests.remove(&client_key);
            self.down_pending.remove(&jsonrpc::id_key(&w.elicitation_id));
            self.client(jsonrpc::notification(
                "notifications/cancelled",
                json!({ "requestId": w.elicitation_id,
                        "reason": "an administrator answered this approval" }),
            ))
            .await;
            self.answer_out_of_band(w.client_id, w.message, w.arguments, verdict).await;
        }
    }

    /// Does what `verdict` says with a call an administrator answered (decided again without
    /// its approval key): dispatches it, or answers the refusal.
    async fn answer_out_of_band(
        &mut self,
        client_id: Value,
        message: Value,
        arguments: Value,
        verdict: Verdict,
    ) {
        match verdict {
            Verdict::Dispatch { receipt, record } => {
                self.dispatch(client_id, message, record, receipt, arguments).await;
            }
            Verdict::Refuse { result, record }
            | Verdict::Approve { refusal: result, record, .. } => {
                self.log.write(&record, Outcome::NotDispatched, None);
                self.client(jsonrpc::result(client_id, result)).await;
            }
        }
    }

    async fn client_response(&mut self, id: Value, mut msg: Value) {
        match self.down_pending.remove(&jsonrpc::id_key(&id)) {
            Some(DownPending::Upstream { upstream_id }) => {
                self.upstream_requests.remove(&jsonrpc::id_key(&upstream_id));
                jsonrpc::set_id(&mut msg, upstream_id);
                self.upstream(msg).await;
            }
            Some(DownPending::Approval { client_key }) => {
                self.approval_answer(&client_key, &msg).await;
            }
            None => {}
        }
    }

    async fn approval_answer(&mut self, client_key: &str, answer: &Value) {
        self.client_requests.remove(client_key);
        let Some(waiting) = self.approvals.remove(client_key) else { return };
        let WaitingApproval { client_id, message, tool, arguments, key, mut record, id, .. } =
            waiting;
        let how = match answer.get("result") {
            Some(r) => match r.get("action").and_then(Value::as_str) {
                Some("accept")
                    if r.get("content").and_then(|c| c.get("approve")).and_then(Value::as_bool)
                        == Some(true) =>
                {
                    None
                }
                Some("accept") | Some("decline") => Some("declined"),
                Some("cancel") => Some("cancelled"),
                _ => Some("failed"),
            },
            None => Some("failed"),
        };
        if let Some(how) = how {
            // A human who declines in band has answered first: the entry the administrator
            // sees is refused too (their later answer is 409, and the agent's next identical
            // call is refused once, as after a refusal out of band), not left for an approval
            // that would let that call run without anyone asking. A cancelled or failed
            // elicitation is nobody's answer: the entry stays for the administrator.
            // Unless the administrator answered first, the relay not having heard it yet (the
            // admin API announces after the core recorded the answer, and the relay reads its
            // client and the announcements in no fixed order): their answer decides, as the
            // agent's retry would be decided.
            // Another call of this client asked about under the same entry (an identical call)
            // keeps it: the entry is refused with the last decline.
            if let Some(pending) = &id {
                let shared = self.approvals.values().any(|w| w.id.as_deref() == Some(pending));
                let answered_first = how != "declined"
                    || shared
                    || matches!(
                        self.guard.evaluator().resolve_approval(pending, false),
                        Err(mcp_policy::ResolveApprovalError::AlreadyResolved(_))
                    );
                if answered_first
                    && let Some(verdict) = self.answered_out_of_band(&tool, &arguments).await
                {
                    self.answer_out_of_band(client_id, message, arguments, verdict).await;
                    return;
                }
            }
            record.approval = Some(how);
            self.log.write(&record, Outcome::NotDispatched, None);
            self.client(jsonrpc::result(client_id, declined(&tool, how))).await;
            return;
        }
        self.decide_approved(client_id, message, &tool, &arguments, &key).await;
    }

    /// The call of `tool` with `arguments` decided again without a key, as the agent's retry
    /// would be: the verdict when an administrator has answered its approval (the core's entry
    /// approved or refused), `None` while the entry still waits.
    async fn answered_out_of_band(&self, tool: &str, arguments: &Value) -> Option<Verdict> {
        let verdict =
            self.guard.decide(tool, arguments, self.session.as_deref(), None, &self.tools).await;
        (!matches!(verdict, Verdict::Approve { .. })).then_some(verdict)
    }

    /// Decides again, with its approval key, a call a human accepted (through elicitation or an
    /// `input_required` round), then dispatches it or answers the refusal (a limit reached
    /// since, a reloaded policy).
    async fn decide_approved(
        &mut self,
        client_id: Value,
        message: Value,
        tool: &str,
        arguments: &Value,
        key: &str,
    ) {
        let verdict = self
            .guard
            .decide(tool, arguments, self.session.as_deref(), Some(key), &self.tools)
            .await;
        match verdict {
            Verdict::Dispatch { receipt, mut record } => {
                record.approval = Some("accepted");
                self.dispatch(client_id, message, record, receipt, arguments.clone()).await;
            }
            Verdict::Refuse { result, mut record }
            | Verdict::Approve { refusal: result, mut record, .. } => {
                // `refused_out_of_band` stays: an administrator refused first.
                record.approval.get_or_insert("accepted");
                self.log.write(&record, Outcome::NotDispatched, None);
                self.client(jsonrpc::result(client_id, result)).await;
            }
        }
    }

    // ---- from the upstream ----

    async fn on_upstream(&mut self, mut msg: Value) {
        // The request a message came for (its upstream id), as the upstream connection saw it;
        // passed on (as the client's id of that request) only to a relay of clients without a
        // session, for its listener.
        let related = msg.as_object_mut().and_then(|m| m.remove(RELATED_REQUEST));
        if self.attribute_related
            && let Some(related) = related
            && msg.get("id").is_none()
            && let Some(UpPending::Client { client_id, .. }) =
                self.up_pending.get(&jsonrpc::id_key(&related))
            && let Some(m) = msg.as_object_mut()
        {
            m.insert(RELATED_REQUEST.into(), client_id.clone());
        }
        match jsonrpc::classify(&msg) {
            Kind::Invalid { reason, .. } => {
                eprintln!(
                    "mcp-policy-gateway: the upstream sent an invalid message ({reason}); dropped"
                );
            }
            Kind::Response { id } => {
                let key = jsonrpc::id_key(id);
                match self.up_pending.remove(&key) {
                    Some(UpPending::Client { client_id, kind, .. }) => {
                        self.client_requests.remove(&jsonrpc::id_key(&client_id));
                        jsonrpc::set_id(&mut msg, client_id);
                        self.upstream_response(kind, msg).await;
                    }
                    Some(UpPending::Discover) => self.learn_inline_offer(Some(&msg)).await,
                    Some(UpPending::Refresh { acc, pages }) => {
                        self.refresh_page(acc, pages, &msg).await;
                    }
                    None => {}
                }
            }
            Kind::Request { id, .. } => {
                let upstream_id = id.clone();
                let down_id = self.down_id();
                self.upstream_requests.insert(jsonrpc::id_key(&upstream_id), down_id.clone());
                self.down_pending
                    .insert(jsonrpc::id_key(&down_id), DownPending::Upstream { upstream_id });
                jsonrpc::set_id(&mut msg, down_id);
                self.client(msg).await;
            }
            Kind::Notification { method } => match method {
                "notifications/cancelled" => {
                    let down = jsonrpc::params(&msg)
                        .and_then(|p| p.get("requestId"))
                        .and_then(|r| self.upstream_requests.remove(&jsonrpc::id_key(r)));
                    if let Some(down_id) = down {
                        self.down_pending.remove(&jsonrpc::id_key(&down_id));
                        if let Some(p) = msg.get_mut("params").and_then(Value::as_object_mut) {
                            p.insert("requestId".into(), down_id);
                        }
                        self.client(msg).await;
                    }
                }
                "notifications/tools/list_changed" => {
                    self.client(msg).await;
                    if self.initialized {
                        self.refresh_tools().await;
                    }
                }
                _ => self.client(msg).await,
            },
        }
    }

    /// A line the upstream sent (over stdio, to a client over stdio): the answer, with a
    /// `result`, to a `tools/call` or to a request the gateway only relays is sent on from its
    /// line before anything else is done for it (see [`crate::raw`]), as
    /// [`Relay::upstream_response`] would. Returns whether it was; anything else is left to the
    /// caller.
    async fn answer_line(&mut self, line: &[u8]) -> bool {
        if self.to_client.lines().is_none() {
            return false;
        }
        let Some(answer) = raw::answer(line) else { return false };
        let (client_id, kind) = match self.up_pending.remove(answer.id_key()) {
            Some(UpPending::Client {
                client_id,
                kind: kind @ (Relayed::ToolsCall { .. } | Relayed::Other),
                ..
            }) => (client_id, kind),
            // The answers the relay reads itself (rarely: `initialize`, `tools/list`, its own
            // requests) take the JSON-value path, their entry left as it was.
            Some(pending) => {
                self.up_pending.insert(answer.id_key().to_owned(), pending);
                return false;
            }
            None => return false,
        };
        let ms = match &kind {
            Relayed::ToolsCall { sent, .. } => Some(sent.elapsed().as_secs_f64() * 1e3),
            _ => None,
        };
        // A client that has gone is noticed by the reading side.
        let line = answer.with_id(&client_id);
        if let Some(writer) = self.to_client.lines()
            && let Offered::Full(line) = writer.try_send_line(line)
        {
            let writer = writer.clone();
            let _ = writer.send_line(line).await;
        }
        self.client_requests.remove(&jsonrpc::id_key(&client_id));
        if let Relayed::ToolsCall { record, arguments, chain, .. } = kind {
            let says = answer.says();
            if let Some(state) = &says.input_required {
                self.remember_continuation(state, &record.tool, &arguments, chain);
            }
            let outcome = if says.is_error { Outcome::ToolError } else { Outcome::Ok };
            self.log.write(&record, outcome, ms);
        }
        true
    }

    async fn upstream_response(&mut self, kind: Relayed, mut msg: Value) {
        match kind {
            Relayed::Initialize => {
                if let Some(result) = msg.get("result") {
                    let version = result.get("protocolVersion").and_then(Value::as_str);
                    match version {
                        Some(v) if PROTOCOL_VERSIONS.contains(&v) => {
                            self.protocol = Some(v.to_owned());
                            if let Some(slot) = &self.negotiated {
                                let _ = slot.set(v.to_owned());
                            }
                            self.upstream_capabilities = result.get("capabilities").cloned();
                        }
                        _ => {
                            let id = msg.get("id").cloned().unwrap_or(Value::Null);
                            let shown = version.unwrap_or("none").to_owned();
                            self.client(jsonrpc::error_with_data(
                                id,
                                jsonrpc::INVALID_PARAMS,
                                format!(
                                    "unsupported protocol version: the upstream answered `{shown}`, \
                                     which the policy gateway does not speak"
                                ),
                                json!({ "supported": PROTOCOL_VERSIONS, "requested": shown }),
                            ))
                            .await;
                            return;
                        }
                    }
                }
                self.client(msg).await;
            }
            Relayed::Discover => {
                if self.probe_inline && matches!(self.inline_offer, InlineOffer::Unknown) {
                    self.inline_offer = InlineOffer::Known(inline_offered(&msg));
                }
                let id = msg.get("id").cloned().unwrap_or(Value::Null);
                // Only the revisions the gateway speaks are offered.
                let offered = msg
                    .get_mut("result")
                    .and_then(|r| r.get_mut("supportedVersions"))
                    .and_then(Value::as_array_mut)
                    .map(|versions| {
                        versions.retain(|v| {
                            v.as_str().is_some_and(|v| {
                                INLINE_PROTOCOL_VERSIONS.contains(&v)
                                    || PROTOCOL_VERSIONS.contains(&v)
                            })
                        });
                        versions.iter().any(|v| {
                            v.as_str().is_some_and(|v| INLINE_PROTOCOL_VERSIONS.contains(&v))
                        })
                    });
                if offered == Some(true) {
                    self.client(msg).await;
                } else {
                    self.client(jsonrpc::error(
                        id,
                        jsonrpc::METHOD_NOT_FOUND,
                        "`server/discover` is not available through the policy gateway for this \
                         upstream (it speaks no revision without `initialize` that the gateway \
                         speaks): use `initialize`",
                    ))
                    .await;
                }
            }
            Relayed::ToolsList => {
                if let Some(tools) = msg
                    .get_mut("result")
                    .and_then(|r| r.get_mut("tools"))
                    .and_then(Value::as_array_mut)
                {
                    self.tools.record(tools);
                    if let Some(schemas) = &self.param_schemas {
                        schemas.learn(tools);
                    }
                    self.guard.filter_tools(tools);
                }
                self.client(msg).await;
            }
            Relayed::ToolsCall { record, sent, arguments, chain } => {
                let ms = sent.elapsed().as_secs_f64() * 1e3;
                let says = msg.get("result").map(ResultSays::of);
                if let Some(state) = says.as_ref().and_then(|s| s.input_required.as_deref()) {
                    self.remember_continuation(state, &record.tool, &arguments, chain);
                }
                let outcome = match says {
                    Some(ResultSays { is_error: true, .. }) => Outcome::ToolError,
                    Some(_) => Outcome::Ok,
                    None => Outcome::Error,
                };
                self.log.write(&record, outcome, Some(ms));
                self.client(msg).await;
            }
            Relayed::Other => self.client(msg).await,
        }
    }

    /// Lists the upstream's tools for the gateway's own view (which tools declare an output
    /// schema), after `initialized` and whenever the upstream says its list changed.
    async fn refresh_tools(&mut self) {
        if self.refreshing {
            self.refresh_again = true;
            return;
        }
        self.refreshing = true;
        self.refresh_request(ToolCache::default(), 0, None).await;
    }

    async fn refresh_request(&mut self, acc: ToolCache, pages: usize, cursor: Option<String>) {
        let id = self.up_id();
        let params = match cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        self.up_pending.insert(jsonrpc::id_key(&id), UpPending::Refresh { acc, pages });
        if !self.upstream(jsonrpc::request(id, "tools/list", params)).await {
            self.refreshing = false;
        }
    }

    async fn refresh_page(&mut self, mut acc: ToolCache, pages: usize, msg: &Value) {
        let Some(result) = msg.get("result") else {
            self.refreshing = false;
            return;
        };
        if let Some(tools) = result.get("tools").and_then(Value::as_array) {
            acc.record(tools);
            if let Some(schemas) = &self.param_schemas {
                schemas.learn(tools);
            }
        }
        let next = result.get("nextCursor").and_then(Value::as_str);
        if let Some(cursor) = next
            && pages + 1 < MAX_REFRESH_PAGES
        {
            let cursor = cursor.to_owned();
            self.refresh_request(acc, pages + 1, Some(cursor)).await;
            return;
        }
        self.tools.replace(acc);
        self.refreshing = false;
        if std::mem::take(&mut self.refresh_again) {
            self.refresh_tools().await;
        }
    }

    /// Requests the upstream has not answered in time get an error, and the upstream a
    /// cancellation.
    async fn expire(&mut self) {
        if let InlineOffer::Asking { since, .. } = &self.inline_offer
            && since.elapsed() >= DISCOVERY_TIMEOUT
        {
            // The question stays open: a late answer is learned for the requests that follow.
            self.learn_inline_offer(None).await;
        }
        let now = Instant::now();
        let expired: Vec<String> = self
            .up_pending
            .iter()
            .filter_map(|(k, p)| match p {
                UpPending::Client { deadline: Some(d), .. } if *d <= now => Some(k.clone()),
                _ => None,
            })
            .collect();
        let secs = self.upstream_timeout.map_or(0.0, |t| t.as_secs_f64());
        for key in expired {
            let Some(UpPending::Client { client_id, kind, .. }) = self.up_pending.remove(&key)
            else {
                continue;
            };
            self.client_requests.remove(&jsonrpc::id_key(&client_id));
            if let Relayed::ToolsCall { record, sent, .. } = &kind {
                let ms = sent.elapsed().as_secs_f64() * 1e3;
                self.log.write(record, Outcome::UpstreamTimeout, Some(ms));
            }
            self.client(jsonrpc::error(
                client_id,
                jsonrpc::INTERNAL_ERROR,
                format!("the upstream MCP server did not answer within {secs} seconds"),
            ))
            .await;
            if let Ok(up_id) = serde_json::from_str::<Value>(&key) {
                self.upstream(jsonrpc::notification(
                    "notifications/cancelled",
                    json!({ "requestId": up_id, "reason": "the gateway's upstream timeout" }),
                ))
                .await;
            }
        }
    }

    /// The upstream has gone: every request still waiting for it gets an error now.
    async fn upstream_gone(&mut self) {
        for e in self.fail_waiting(Outcome::UpstreamClosed, upstream_gone_error) {
            self.client(e).await;
        }
    }

    /// Every request still waiting (for the upstream, or for the client's approval) is given
    /// up: the calls among them are logged with `outcome` (at once, whether or not the client
    /// reads its errors), and the errors for the client are returned, made by `error`.
    fn fail_waiting(&mut self, outcome: Outcome, error: fn(Value) -> Value) -> Vec<Value> {
        let mut errors = Vec::new();
        let pending: Vec<UpPending> = self.up_pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            if let UpPending::Client { client_id, kind, .. } = p {
                if let Relayed::ToolsCall { record, sent, .. } = &kind {
                    let ms = sent.elapsed().as_secs_f64() * 1e3;
                    self.log.write(record, outcome, Some(ms));
                }
                errors.push(error(client_id));
            }
        }
        let waiting: Vec<WaitingApproval> = self.approvals.drain().map(|(_, w)| w).collect();
        for w in waiting {
            self.log.write(&w.record, outcome, None);
            errors.push(error(w.client_id));
        }
        self.client_requests.clear();
        if let InlineOffer::Asking { waiting, .. } =
            std::mem::replace(&mut self.inline_offer, InlineOffer::Unknown)
        {
            self.replay.extend(waiting);
        }
        for msg in std::mem::take(&mut self.replay) {
            let id = msg.get("id").cloned().unwrap_or(Value::Null);
            errors.push(error(id));
        }
        errors
    }

    /// Whether the gateway waits for the upstream's answer to its `server/discover`.
    fn asking(&self) -> bool {
        matches!(self.inline_offer, InlineOffer::Asking { .. })
    }

    /// The upstream's answer to the gateway's `server/discover` (`None`: it could not be
    /// asked, or did not answer within [`DISCOVERY_TIMEOUT`]): the requests that waited for it
    /// go on, or are refused.
    async fn learn_inline_offer(&mut self, answer: Option<&Value>) {
        let offered = answer.map(inline_offered).unwrap_or_default();
        let waiting = match std::mem::replace(&mut self.inline_offer, InlineOffer::Known(offered)) {
            InlineOffer::Asking { waiting, .. } => waiting,
            _ => Vec::new(),
        };
        // Handled by the relay's loop, each when the upstream can take it (the upstream's
        // output is read meanwhile): a thousand at once would fill its input while it waits
        // for its output to be read.
        self.replay.extend(waiting);
    }
}

/// The revision without `initialize` a request names in its `_meta`, if the gateway speaks it.
fn inline_request_version(msg: &Value) -> Option<&str> {
    meta_protocol_version(msg).filter(|v| INLINE_PROTOCOL_VERSIONS.contains(v))
}

/// The revisions without `initialize` (that the gateway speaks) an answer to `server/discover`
/// offers: none for an error. Each once, whatever the upstream repeats (the list is kept for the
/// relay's life and searched for every request).
fn inline_offered(answer: &Value) -> Vec<String> {
    let versions = answer.pointer("/result/supportedVersions").and_then(Value::as_array);
    INLINE_PROTOCOL_VERSIONS
        .iter()
        .filter(|known| versions.into_iter().flatten().any(|v| v.as_str() == Some(**known)))
        .map(|v| (*v).to_owned())
        .collect()
}

/// The refusal of a request of `version` (a revision without `initialize`) that the upstream
/// does not offer: what an HTTP upstream of an older revision answers, 400.
fn not_offered(id: Value, version: &str) -> Value {
    jsonrpc::error_with_data(
        id,
        jsonrpc::INVALID_PARAMS,
        format!(
            "unsupported protocol version: the upstream does not offer `{version}` (it does not \
             list it in `server/discover`): use `initialize`"
        ),
        json!({ "supported": PROTOCOL_VERSIONS, "requested": version, UPSTREAM_STATUS: 400 }),
    )
}

fn upstream_gone_error(id: Value) -> Value {
    jsonrpc::error(
        id,
        jsonrpc::INTERNAL_ERROR,
        "the upstream MCP server has gone (it exited, closed its output or is not reading its \
         input) before answering",
    )
}

/// The error of a request still unanswered when the wait after the client's input ended is over.
fn after_client_eof_error(id: Value) -> Value {
    jsonrpc::error(
        id,
        jsonrpc::INTERNAL_ERROR,
        "the client closed its input, and the upstream MCP server did not answer in time",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Mode;
    use mcp_policy::Evaluator;
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    struct Harness {
        evaluator: Arc<Evaluator>,
        client_in: mpsc::Sender<Inbound>,
        client_out: mpsc::Receiver<Value>,
        upstream_in: mpsc::Receiver<Value>,
        upstream_out: Option<mpsc::Sender<Value>>,
        task: JoinHandle<RelayEnd>,
    }

    fn start(policy: &str) -> Harness {
        start_with(policy, RelayConfig::default())
    }

    fn start_with(policy: &str, config: RelayConfig) -> Harness {
        start_logged(policy, config, Arc::new(DecisionLog::disabled()))
    }

    fn start_logged(policy: &str, config: RelayConfig, log: Arc<DecisionLog>) -> Harness {
        let evaluator = Arc::new(Evaluator::new(policy.parse().unwrap()));
        let guard = Arc::new(Guard::new(evaluator.clone(), "g", Mode::Enforce));
        let (client_in, rx) = mpsc::channel(16);
        let (tx, client_out) = mpsc::channel(16);
        let (up_tx, upstream_in) = mpsc::channel(16);
        let (upstream_out, up_rx) = mpsc::channel(16);
        let task = tokio::spawn(Relay::run(
            guard,
            log,
            config,
            ClientLink { tx: tx.into(), rx: rx.into() },
            UpstreamLink { tx: up_tx.into(), rx: up_rx.into() },
        ));
        Harness {
            evaluator,
            client_in,
            client_out,
            upstream_in,
            upstream_out: Some(upstream_out),
            task,
        }
    }

    impl Harness {
        async fn client_sends(&self, v: Value) {
            self.client_in.send(Inbound::Message(v)).await.unwrap();
        }
        async fn upstream_sends(&self, v: Value) {
            self.upstream_out.as_ref().unwrap().send(v).await.unwrap();
        }
        // (a bound on the wait so that a broken relay fails the test instead of hanging it)
        async fn upstream_gets(&mut self) -> Value {
            tokio::time::timeout(Duration::from_secs(30), self.upstream_in.recv())
                .await
                .expect("nothing reached the upstream")
                .unwrap()
        }
        /// `initialize` (id 1) with the client's and the upstream's `capabilities`, answered.
        async fn initialize(&mut self, client: Value, upstream: Value) {
            self.client_sends(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": client,
                    "clientInfo": {"name": "t", "version": "1"}}}))
                .await;
            let init = self.upstream_gets().await;
            self.upstream_sends(json!({"jsonrpc": "2.0", "id": init["id"], "result": {
                "protocolVersion": "2025-06-18", "capabilities": upstream,
                "serverInfo": {"name": "u", "version": "1"}}}))
                .await;
            assert_eq!(self.client_gets().await["id"], 1);
        }
        async fn client_gets(&mut self) -> Value {
            tokio::time::timeout(Duration::from_secs(30), self.client_out.recv())
                .await
                .expect("nothing reached the client")
                .unwrap()
        }
    }

    const POLICY: &str = r#"{"version": "1", "default": "deny", "hide": ["h_*"], "tools": {"a": {}, "b": {}, "h_x": {}}}"#;

    /// A client's `Mcp-Param-*` headers against a call's arguments, as rmcp's server checks
    /// them: each declared argument that is a string, number or boolean has its header once,
    /// saying its value (plain or Base64); an absent, null or structured one has none.
    #[test]
    fn client_param_headers_must_say_what_the_body_says() {
        let schema = json!({"properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "flag": {"type": "boolean", "x-mcp-header": "Flag"},
            "o": {"properties": {"deep": {"type": "string", "x-mcp-header": "Deep"}}},
            "bad": {"type": "string", "x-mcp-header": "Bad Name"}}});
        let declared = param_header_declarations(&schema);
        let check = |args: Value, given: &[(&str, Option<&'static str>)]| {
            let given: Vec<(String, Option<&'static str>)> =
                given.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            check_param_headers(&declared, Some(&args), |name| {
                given.iter().filter(|(k, _)| k == name).map(|(_, v)| *v).collect()
            })
        };
        let all = json!({"region": "Zürich", "n": 3, "flag": false, "o": {"deep": "d"},
            "bad": "x"});
        let good = [
            ("mcp-param-region", Some("=?base64?WsO8cmljaA==?=")),
            ("mcp-param-n", Some("3")),
            ("mcp-param-flag", Some("false")),
            ("mcp-param-deep", Some("d")),
        ];
        assert_eq!(check(all.clone(), &good), Ok(()));
        // Nothing declared is present: no header.
        assert_eq!(check(json!({"region": null, "o": {}}), &[]), Ok(()));
        // A header for a structured argument, another value, a missing one, one twice, one
        // that is not visible ASCII, Base64 that does not decode.
        type Given = Vec<(&'static str, Option<&'static str>)>;
        let refused: [(Value, Given); 6] = [
            (json!({"region": ["a"]}), vec![("mcp-param-region", Some("a"))]),
            (json!({"n": 3}), vec![("mcp-param-n", Some("3.0"))]),
            (json!({"flag": true}), vec![]),
            (json!({"region": "a"}), vec![("mcp-param-region", Some("a")); 2]),
            (json!({"region": "é"}), vec![("mcp-param-region", None)]),
            (json!({"region": "a"}), vec![("mcp-param-region", Some("=?base64?***?="))]),
        ];
        for (args, given) in refused {
            let why = check(args.clone(), &given).unwrap_err();
            assert!(why.contains("Mcp-Param-"), "{args} {given:?}: {why}");
        }
        // Without arguments, a declared header is unexpected.
        let why = check_param_headers(&declared, None, |n| {
            if n == "mcp-param-n" { vec![Some("1")] } else { vec![] }
        })
        .unwrap_err();
        assert!(why.contains("Mcp-Param-N"), "{why}");
    }

    /// A relay given a place for `Mcp-Param-*` declarations (a command upstream's relay of
    /// clients without a session) learns them from the upstream's listings it relays, hidden
    /// tools included (the client's headers are checked against the upstream's schema).
    #[tokio::test]
    async fn a_relay_learns_the_param_headers_of_the_listings_it_relays() {
        let schemas = Arc::new(ParamSchemas::default());
        let config = RelayConfig { param_schemas: Some(schemas.clone()), ..RelayConfig::default() };
        let mut h = start_with(POLICY, config);
        h.client_sends(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
        let req = h.upstream_gets().await;
        let schema = json!({"properties": {"r": {"type": "string", "x-mcp-header": "R"}}});
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": req["id"], "result": {"tools": [
            {"name": "a", "inputSchema": schema}, {"name": "h_x", "inputSchema": schema},
            {"name": "b", "inputSchema": {}}]}}))
            .await;
        let page = h.client_gets().await;
        assert_eq!(page["result"]["tools"].as_array().unwrap().len(), 2, "{page}");
        let r = vec![(vec!["r".to_owned()], "R".to_owned())];
        assert_eq!(schemas.get("a").as_deref(), Some(&r));
        assert_eq!(schemas.get("h_x").as_deref(), Some(&r));
        assert_eq!(schemas.get("b").as_deref(), Some(&vec![]));
        assert!(schemas.get("zzz").is_none());
    }

    /// The mark an upstream connection puts on a notification it received for one request
    /// reaches the client, as that request's client id, only through a relay of clients
    /// without a session, and only for a request it is relaying; otherwise it is taken out.
    #[tokio::test]
    async fn a_notification_for_one_request_says_so_only_to_a_relay_that_asks() {
        for attribute_related in [true, false] {
            let config = RelayConfig { attribute_related, ..RelayConfig::default() };
            let mut h = start_with(POLICY, config);
            h.client_sends(json!({"jsonrpc": "2.0", "id": "mine", "method": "tools/call",
                "params": {"name": "a", "arguments": {}}}))
                .await;
            let req = h.upstream_gets().await;
            let log = |related: Value| {
                json!({"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "info", "data": "x"}, RELATED_REQUEST: related})
            };
            h.upstream_sends(log(req["id"].clone())).await;
            let seen = h.client_gets().await;
            if attribute_related {
                assert_eq!(seen[RELATED_REQUEST], "mine", "{seen}");
            } else {
                assert!(seen.get(RELATED_REQUEST).is_none(), "{seen}");
            }
            // A request the relay is not relaying: no mark.
            h.upstream_sends(log(json!(999))).await;
            let seen = h.client_gets().await;
            assert!(seen.get(RELATED_REQUEST).is_none(), "{seen}");
            h.upstream_sends(json!({"jsonrpc": "2.0", "id": req["id"], "result": {}})).await;
            assert_eq!(h.client_gets().await["id"], "mine");
        }
    }

    #[tokio::test]
    async fn pages_pass_through_and_each_is_filtered() {
        let mut h = start(POLICY);
        h.client_sends(json!({"jsonrpc": "2.0", "id": "first", "method": "tools/list"})).await;
        let req = h.upstream_gets().await;
        assert_eq!(req["method"], "tools/list");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": req["id"], "result": {
            "tools": [{"name": "a"}, {"name": "h_x"}, {"name": "zzz"}],
            "nextCursor": "page-2", "x-new-field": 1}}))
            .await;
        let page = h.client_gets().await;
        assert_eq!(page["id"], "first");
        assert_eq!(page["result"]["tools"], json!([{"name": "a"}]));
        assert_eq!(page["result"]["nextCursor"], "page-2");
        assert_eq!(page["result"]["x-new-field"], 1, "unknown fields pass through");
        h.client_sends(json!({"jsonrpc": "2.0", "id": "second", "method": "tools/list",
            "params": {"cursor": "page-2"}}))
            .await;
        let req = h.upstream_gets().await;
        assert_eq!(req["params"]["cursor"], "page-2");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": req["id"], "result": {
            "tools": [{"name": "h_y"}, {"name": "b"}]}}))
            .await;
        let page = h.client_gets().await;
        assert_eq!(page["id"], "second");
        assert_eq!(page["result"]["tools"], json!([{"name": "b"}]));
    }

    #[tokio::test]
    async fn the_gateways_own_requests_never_collide_with_the_peers_ids() {
        let mut h = start(POLICY);
        h.initialize(json!({}), json!({"tools": {"listChanged": true}})).await;
        h.client_sends(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(h.upstream_gets().await["method"], "notifications/initialized");
        // The gateway lists the tools for itself, with an id of its own numbering.
        let own = h.upstream_gets().await;
        assert_eq!(own["method"], "tools/list");
        // The client happens to use the same id for a request of its own.
        h.client_sends(json!({"jsonrpc": "2.0", "id": own["id"], "method": "ping"})).await;
        let ping = h.upstream_gets().await;
        assert_ne!(ping["id"], own["id"]);
        // The upstream answers both; the client sees only its own answer, with its id.
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": own["id"], "result": {"tools": [
            {"name": "a", "outputSchema": {"type": "object"}}]}}))
            .await;
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": ping["id"], "result": {}})).await;
        let answer = h.client_gets().await;
        assert_eq!(answer, json!({"jsonrpc": "2.0", "id": own["id"], "result": {}}));

        // A server-to-client request whose id equals one of the client's: mapped both ways.
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"})).await;
        let ask = h.client_gets().await;
        assert_eq!(ask["method"], "roots/list");
        h.client_sends(json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": []}})).await;
        let back = h.upstream_gets().await;
        assert_eq!(back, json!({"jsonrpc": "2.0", "id": 1, "result": {"roots": []}}));
    }

    #[test]
    fn param_headers_follow_the_schemas_declarations() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "plain": {"type": "string"},
            "nested": {"type": "object", "properties": {
                "tenant": {"type": "string", "x-mcp-header": "Tenant"}}},
            "list": {"type": "array", "items": {"type": "string", "x-mcp-header": "Item"}},
            "empty": {"type": "string", "x-mcp-header": ""}}});
        let mut declared = param_header_declarations(&schema);
        declared.sort();
        let names: Vec<&str> = declared.iter().map(|(_, h)| h.as_str()).collect();
        assert_eq!(names, ["Count", "Tenant", "Region"]);
        let args = json!({"region": "eu west ", "count": 3, "plain": "x",
            "nested": {"tenant": "acme"}, "list": ["a"]});
        let mut values = param_header_values(&declared, Some(&args));
        values.sort();
        assert_eq!(
            values,
            [
                ("mcp-param-Count".to_owned(), "3".to_owned()),
                ("mcp-param-Region".to_owned(), encode_header_value("eu west ")),
                ("mcp-param-Tenant".to_owned(), "acme".to_owned()),
            ]
        );
        assert!(values[1].1.starts_with("=?base64?"), "a trailing blank is Base64");
        // Absent, null and structured arguments have no header.
        let args = json!({"region": null, "count": {"n": 1}});
        assert!(param_header_values(&declared, Some(&args)).is_empty());
    }

    #[test]
    fn sep_2243_header_values_round_trip() {
        for v in ["read", "file:///a b.txt", " lead", "trail\t", "naïve", "=?base64?x?=", ""] {
            let encoded = encode_header_value(v);
            assert!(encoded.chars().all(|c| (' '..='~').contains(&c)), "{encoded}");
            assert_eq!(decode_header_value(&encoded).as_deref(), Some(v));
        }
        assert_eq!(encode_header_value("read"), "read");
        assert_eq!(encode_header_value("naïve"), "=?base64?bmHDr3Zl?=");
        assert_eq!(decode_header_value("=?base64?%%?="), None);
        let p = json!({"name": "t", "uri": "u", "taskId": "k"});
        let p = p.as_object();
        assert_eq!(mcp_name("tools/call", p), Some("t"));
        assert_eq!(mcp_name("resources/read", p), Some("u"));
        assert_eq!(mcp_name("tasks/get", p), Some("k"));
        assert_eq!(mcp_name("tools/list", p), None);
    }

    /// The upstream's own `input_required`: the retry with its `requestState`, same tool and
    /// arguments, continues the call once without a second charge; anything else is new.
    #[tokio::test]
    async fn the_upstreams_input_required_retry_is_charged_once() {
        let mut h = start(
            r#"{"version": "1", "default": "deny", "tools": {
                "a": {"limits": [{"counter": "a", "window": "hour", "max": 2}]},
                "b": {"limits": [{"counter": "b", "window": "hour", "max": 5}]}}}"#,
        );
        let call = |id: i64, tool: &str, args: Value, state: Option<&str>| {
            let mut p = json!({"name": tool, "arguments": args});
            if let Some(s) = state {
                p["requestState"] = json!(s);
                p["inputResponses"] = json!({"upstream-q": {"action": "accept"}});
            }
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": p})
        };
        // Charged once (1 of 2); the upstream asks for input.
        h.client_sends(call(1, "a", json!({"x": 1, "y": 2}), None)).await;
        let up = h.upstream_gets().await;
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"], "result": {
            "resultType": "input_required", "requestState": "U1",
            "inputRequests": {"upstream-q": {"method": "elicitation/create", "params": {}}}}}))
            .await;
        let r = h.client_gets().await;
        assert_eq!(r["result"]["requestState"], "U1", "passed through unchanged: {r}");
        // The retry (members in another order) continues it: not charged, passed unchanged.
        h.client_sends(call(2, "a", json!({"y": 2, "x": 1}), Some("U1"))).await;
        let up = h.upstream_gets().await;
        assert_eq!(up["params"]["requestState"], "U1");
        assert_eq!(up["params"]["inputResponses"]["upstream-q"]["action"], "accept");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"], "result": {"content": []}}))
            .await;
        assert_eq!(h.client_gets().await["id"], 2);
        // Replayed: decided as a new call, charged (2 of 2) and relayed with its state.
        h.client_sends(call(3, "a", json!({"x": 1, "y": 2}), Some("U1"))).await;
        let up = h.upstream_gets().await;
        assert_eq!(up["params"]["requestState"], "U1");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"], "result": {
            "resultType": "input_required", "requestState": "U2"}}))
            .await;
        h.client_gets().await;
        // Other arguments, another tool, a forged state: each decided as new. `a` is spent.
        h.client_sends(call(4, "a", json!({"x": 9, "y": 2}), Some("U2"))).await;
        let r = h.client_gets().await;
        assert_eq!(r["result"]["isError"], true, "other arguments are a new call: {r}");
        h.client_sends(call(5, "b", json!({"x": 1, "y": 2}), Some("U2"))).await;
        let up = h.upstream_gets().await;
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"], "result": {"content": []}}))
            .await;
        h.client_gets().await;
        h.client_sends(call(6, "a", json!({"x": 1, "y": 2}), Some("forged"))).await;
        let r = h.client_gets().await;
        assert_eq!(r["result"]["isError"], true, "a forged state is a new call: {r}");
        // The round for `a` is still there (other tools and arguments did not spend it).
        h.client_sends(call(7, "a", json!({"x": 1, "y": 2}), Some("U2"))).await;
        let up = h.upstream_gets().await;
        assert_eq!(up["params"]["name"], "a");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"], "result": {
            "resultType": "input_required", "requestState": "U3"}}))
            .await;
        h.client_gets().await;
        // A reloaded policy that no longer allows `a`: its continuation is a new call, refused.
        h.evaluator.reload(r#"{"version": "1", "default": "deny", "tools": {}}"#.parse().unwrap());
        h.client_sends(call(8, "a", json!({"x": 1, "y": 2}), Some("U3"))).await;
        let r = h.client_gets().await;
        assert_eq!(r["result"]["isError"], true, "{r}");
    }

    #[tokio::test]
    async fn the_upstream_going_answers_every_waiting_request() {
        let mut h = start(POLICY);
        h.client_sends(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "a", "arguments": {}}}))
            .await;
        h.client_sends(json!({"jsonrpc": "2.0", "id": 8, "method": "resources/list"})).await;
        assert_eq!(h.upstream_gets().await["method"], "tools/call");
        assert_eq!(h.upstream_gets().await["method"], "resources/list");
        h.upstream_out = None;
        let mut ids = vec![h.client_gets().await, h.client_gets().await]
            .into_iter()
            .map(|m| {
                assert_eq!(m["error"]["code"], jsonrpc::INTERNAL_ERROR);
                m["id"].as_i64().unwrap()
            })
            .collect::<Vec<_>>();
        ids.sort();
        assert_eq!(ids, vec![7, 8]);
        assert_eq!(h.task.await.unwrap(), RelayEnd::UpstreamClosed);
    }

    /// A decision log written to a file in `dir`, and the file.
    fn file_log(dir: &std::path::Path) -> (Arc<DecisionLog>, std::path::PathBuf) {
        let path = dir.join("log.jsonl");
        let log = DecisionLog::open(path.to_str().unwrap(), 1 << 20, Default::default()).unwrap();
        (Arc::new(log), path)
    }

    fn answering_after_eof() -> RelayConfig {
        RelayConfig { answer_after_client_eof: true, ..RelayConfig::default() }
    }

    fn call_of_a(id: i64) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "a", "arguments": {}}})
    }

    /// A client over stdio that closes its input with calls in flight (`printf REQUESTS |
    /// gateway`) still gets their answers; the upstream sees the end of its input first, as it
    /// would with the client in front of it (a server that answers as its input ends answers).
    #[tokio::test]
    async fn a_client_closing_its_input_still_gets_the_answers_in_flight() {
        let mut h = start_with(POLICY, answering_after_eof());
        h.client_sends(call_of_a(7)).await;
        let up = h.upstream_gets().await;
        h.client_in = mpsc::channel(1).0;
        let closed = tokio::time::timeout(Duration::from_secs(30), h.upstream_in.recv()).await;
        assert!(matches!(closed, Ok(None)), "the upstream's input was not closed: {closed:?}");
        // A request of the upstream's (which the client could not answer) is not put to it.
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage",
            "params": {"messages": [], "maxTokens": 10}}))
            .await;
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"],
            "result": {"content": [{"type": "text", "text": "ran"}]}}))
            .await;
        let r = h.client_gets().await;
        assert_eq!(
            (r["id"].as_i64(), &r["result"]["content"][0]["text"]),
            (Some(7), &json!("ran")),
            "{r}"
        );
        assert_eq!(h.task.await.unwrap(), RelayEnd::ClientClosed);
        assert!(h.client_out.recv().await.is_none(), "more reached the client");
    }

    /// The wait after the client's input ended is bounded: an upstream that never answers
    /// leaves the client an error for each call, and the relay ends; one that closes its output
    /// gives the client the "gone" error at once.
    #[tokio::test(start_paused = true)]
    async fn calls_unanswered_after_the_clients_input_ended_get_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = file_log(dir.path());
        let mut h = start_logged(POLICY, answering_after_eof(), log.clone());
        h.client_sends(call_of_a(7)).await;
        h.upstream_gets().await;
        let started = tokio::time::Instant::now();
        h.client_in = mpsc::channel(1).0;
        let r = h.client_gets().await;
        assert_eq!(r["id"], 7);
        assert_eq!(r["error"]["code"], jsonrpc::INTERNAL_ERROR);
        assert!(r["error"]["message"].as_str().unwrap().contains("did not answer in time"), "{r}");
        assert!(started.elapsed() >= CLIENT_EOF_WAIT, "{:?}", started.elapsed());
        assert_eq!(h.task.await.unwrap(), RelayEnd::ClientClosed);

        let mut h = start_logged(POLICY, answering_after_eof(), log.clone());
        h.client_sends(call_of_a(8)).await;
        h.upstream_gets().await;
        h.client_in = mpsc::channel(1).0;
        // The relay has seen the client's end once it closes the upstream's input.
        assert!(h.upstream_in.recv().await.is_none());
        h.upstream_out = None;
        let r = h.client_gets().await;
        assert_eq!(r["id"], 8);
        assert!(r["error"]["message"].as_str().unwrap().contains("has gone"), "{r}");
        assert_eq!(h.task.await.unwrap(), RelayEnd::ClientClosed);
        // The decision log says so (docs/gateway.md, "Failure behaviour").
        assert!(log.finish());
        let outcomes: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["outcome"].to_string())
            .collect();
        assert_eq!(outcomes, vec!["\"upstream_timeout\"", "\"upstream_closed\""]);
    }

    /// A client that closes its input while the gateway asks it for an approval cannot answer
    /// it: the call is not dispatched and is answered (and logged) as a failed approval at once,
    /// not after the wait, nor as the upstream's fault; the call in flight beside it is still
    /// answered by the upstream.
    #[tokio::test]
    async fn an_approval_asked_when_the_client_closes_its_input_fails_as_such() {
        let policy = r#"{"version": "1", "default": "deny",
            "tools": {"a": {}, "w": {"approve_if": [{"conditions": []}]}}}"#;
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = file_log(dir.path());
        let mut h = start_logged(policy, answering_after_eof(), log.clone());
        h.initialize(json!({"elicitation": {}}), json!({"tools": {}})).await;
        h.client_sends(call_of_a(7)).await;
        let up = h.upstream_gets().await;
        h.client_sends(json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
            "params": {"name": "w", "arguments": {}}}))
            .await;
        let ask = h.client_gets().await;
        assert_eq!(ask["method"], "elicitation/create", "{ask}");
        h.client_in = mpsc::channel(1).0;
        let cancelled = h.client_gets().await;
        assert_eq!(cancelled["method"], "notifications/cancelled", "{cancelled}");
        assert_eq!(cancelled["params"]["requestId"], ask["id"]);
        let r = h.client_gets().await;
        assert_eq!(r["id"], 8);
        assert_eq!(r["result"]["isError"], true, "{r}");
        assert!(r["result"]["content"][0]["text"].as_str().unwrap().contains("Approval failed"));
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"],
            "result": {"content": [{"type": "text", "text": "ran"}]}}))
            .await;
        let r = h.client_gets().await;
        assert_eq!(
            (r["id"].as_i64(), &r["result"]["content"][0]["text"]),
            (Some(7), &json!("ran"))
        );
        assert_eq!(h.task.await.unwrap(), RelayEnd::ClientClosed);
        assert!(log.finish());
        let lines: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let of_w: Vec<(&Value, &Value)> = lines
            .iter()
            .filter(|l| l["tool"] == "w")
            .map(|l| (&l["outcome"], &l["approval"]))
            .collect();
        assert_eq!(
            of_w,
            vec![
                (&json!("approval_requested"), &Value::Null),
                (&json!("not_dispatched"), &json!("failed"))
            ],
            "{lines:?}"
        );
        let of_a: Vec<&Value> =
            lines.iter().filter(|l| l["tool"] == "a").map(|l| &l["outcome"]).collect();
        assert_eq!(of_a, vec![&json!("ok")]);
    }

    /// Every approval failed because the client closed its input is logged, also when the
    /// client does not read what it is told (the messages wait, the log lines do not).
    #[tokio::test(start_paused = true)]
    async fn approvals_failed_at_the_clients_eof_are_logged_even_unread() {
        let policy = r#"{"version": "1", "default": "deny",
            "tools": {"w": {"approve_if": [{"conditions": []}]}}}"#;
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = file_log(dir.path());
        let mut h = start_logged(policy, answering_after_eof(), log.clone());
        h.initialize(json!({"elicitation": {}}), json!({"tools": {}})).await;
        const CALLS: i64 = 20;
        for id in 10..10 + CALLS {
            h.client_sends(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "w", "arguments": {}}}))
                .await;
            assert_eq!(h.client_gets().await["method"], "elicitation/create");
        }
        // The client closes its input and reads nothing more (its channel takes 16).
        h.client_in = mpsc::channel(1).0;
        let end = tokio::time::timeout(CLIENT_EOF_WAIT * 2, &mut h.task).await;
        assert!(matches!(end, Ok(Ok(RelayEnd::ClientClosed))), "{end:?}");
        assert!(log.finish());
        let failed = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|l| l["approval"] == "failed" && l["outcome"] == "not_dispatched")
            .count();
        assert_eq!(failed, usize::try_from(CALLS).unwrap());
    }

    /// The gateway's own `tools/list` (a refresh) answered during the wait after the client's
    /// input ended, with a next page, and a `list_changed` then: what the gateway would ask the
    /// upstream cannot be sent (its input is closed) and holds nothing up; the call in flight is
    /// answered, and the relay ends.
    #[tokio::test]
    async fn a_refresh_during_the_wait_after_the_clients_input_ended_holds_nothing_up() {
        let mut h = start_with(POLICY, answering_after_eof());
        h.initialize(json!({}), json!({"tools": {"listChanged": true}})).await;
        h.client_sends(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(h.upstream_gets().await["method"], "notifications/initialized");
        let own = h.upstream_gets().await;
        assert_eq!(own["method"], "tools/list");
        h.client_sends(call_of_a(7)).await;
        let up = h.upstream_gets().await;
        h.client_in = mpsc::channel(1).0;
        assert!(h.upstream_in.recv().await.is_none());
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": own["id"], "result": {
            "tools": [{"name": "a"}], "nextCursor": "p2"}}))
            .await;
        h.upstream_sends(jsonrpc::notification("notifications/tools/list_changed", json!({})))
            .await;
        assert_eq!(h.client_gets().await["method"], "notifications/tools/list_changed");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"],
            "result": {"content": [{"type": "text", "text": "ran"}]}}))
            .await;
        let r = h.client_gets().await;
        assert_eq!(
            (r["id"].as_i64(), &r["result"]["content"][0]["text"]),
            (Some(7), &json!("ran"))
        );
        let end = tokio::time::timeout(Duration::from_secs(30), h.task).await;
        assert!(matches!(end, Ok(Ok(RelayEnd::ClientClosed))), "{end:?}");
    }

    /// A client that closed its input and does not read its output (its pipe and the writer's
    /// queue full), in front of an upstream that floods it with notifications and never
    /// answers: the relay still ends when the wait is over (it used to wait for the client to
    /// read, forever, and the gateway with it).
    #[tokio::test(start_paused = true)]
    async fn a_client_that_closed_its_input_and_does_not_read_is_not_waited_for() {
        let mut h = start_with(POLICY, answering_after_eof());
        h.client_sends(call_of_a(7)).await;
        h.upstream_gets().await;
        h.client_in = mpsc::channel(1).0;
        assert!(h.upstream_in.recv().await.is_none());
        let up = h.upstream_out.take().unwrap();
        let flood = tokio::spawn(async move {
            let note = jsonrpc::notification("notifications/message", json!({"data": "x"}));
            while up.send(note.clone()).await.is_ok() {}
        });
        let bound = CLIENT_EOF_WAIT + UPSTREAM_SEND_TIMEOUT + Duration::from_secs(1);
        let end = tokio::time::timeout(bound, &mut h.task).await;
        assert!(matches!(end, Ok(Ok(RelayEnd::ClientClosed))), "the relay did not end: {end:?}");
        flood.abort();
    }

    fn probing() -> RelayConfig {
        RelayConfig { probe_inline: true, ..RelayConfig::default() }
    }

    fn inline_request(id: i64, method: &str) -> Value {
        let meta = json!({META_PROTOCOL_VERSION: "2026-07-28", "x": id,
            "progressToken": format!("inline-progress-{id}")});
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"_meta": meta}})
    }

    /// Before the first request of 2026-07-28, a command upstream is asked what it offers (with
    /// that request's `_meta`); the requests that came meanwhile wait, and go on in order once
    /// it offers the revision; it is asked once.
    #[tokio::test]
    async fn a_command_upstream_is_asked_once_what_it_offers() {
        let mut h = start_with(POLICY, probing());
        h.client_sends(inline_request(1, "tools/list")).await;
        h.client_sends(inline_request(2, "resources/list")).await;
        let ask = h.upstream_gets().await;
        assert_eq!(ask["method"], "server/discover", "{ask}");
        assert_eq!(ask["params"]["_meta"]["x"], 1, "{ask}");
        // Not the request's progress token: the upstream's progress on it would reach that
        // request's POST.
        assert!(ask["params"]["_meta"].get("progressToken").is_none(), "{ask}");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": ask["id"],
            "result": {"supportedVersions": ["2025-06-18", "2026-07-28"]}}))
            .await;
        assert_eq!(h.upstream_gets().await["method"], "tools/list");
        assert_eq!(h.upstream_gets().await["method"], "resources/list");
        h.client_sends(inline_request(3, "prompts/list")).await;
        assert_eq!(h.upstream_gets().await["method"], "prompts/list");
    }

    /// An upstream that answers `server/discover` with an error, or without the revision,
    /// offers none: each request of that revision gets the refusal that carries 400 for the
    /// listener, and reaches nothing; requests that name no such revision pass. When the client
    /// asked `server/discover` itself, its answer is what the gateway learns.
    #[tokio::test]
    async fn requests_of_a_revision_the_upstream_does_not_offer_are_refused_with_400() {
        let mut h = start_with(POLICY, probing());
        h.client_sends(inline_request(1, "tools/list")).await;
        h.client_sends(inline_request(2, "tools/call")).await;
        let ask = h.upstream_gets().await;
        h.upstream_sends(jsonrpc::error(ask["id"].clone(), -32601, "Method not found")).await;
        for id in [1, 2] {
            let m = h.client_gets().await;
            assert_eq!(m["id"], id, "{m}");
            assert_eq!(m["error"]["code"], jsonrpc::INVALID_PARAMS, "{m}");
            assert_eq!(m["error"]["data"][UPSTREAM_STATUS], 400, "{m}");
            assert_eq!(m["error"]["data"]["requested"], "2026-07-28", "{m}");
        }
        h.client_sends(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"})).await;
        assert_eq!(h.upstream_gets().await["method"], "ping", "nothing else reached it");

        let mut h = start_with(POLICY, probing());
        h.client_sends(inline_request(1, "server/discover")).await;
        let d = h.upstream_gets().await;
        assert_eq!(d["method"], "server/discover");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": d["id"],
            "result": {"supportedVersions": ["2025-06-18"]}}))
            .await;
        assert_eq!(h.client_gets().await["error"]["code"], jsonrpc::METHOD_NOT_FOUND);
        h.client_sends(inline_request(2, "tools/list")).await;
        let m = h.client_gets().await;
        assert_eq!(m["error"]["data"][UPSTREAM_STATUS], 400, "asked again: {m}");
    }

    /// An upstream silent to the gateway's `server/discover` offers nothing for now: after
    /// [`DISCOVERY_TIMEOUT`] the requests that waited are refused (400), and so are those that
    /// follow, until its late answer (an upstream slow to start), which is learned.
    /// (It takes `DISCOVERY_TIMEOUT` of real time: 5 s.)
    #[tokio::test]
    async fn an_upstream_silent_to_discovery_offers_nothing() {
        let mut h = start_with(POLICY, probing());
        h.client_sends(inline_request(1, "tools/list")).await;
        let ask = h.upstream_gets().await;
        assert_eq!(ask["method"], "server/discover");
        let m = h.client_gets().await;
        assert_eq!(m["id"], 1, "{m}");
        assert_eq!(m["error"]["data"][UPSTREAM_STATUS], 400, "{m}");
        h.client_sends(inline_request(2, "tools/list")).await;
        let m = h.client_gets().await;
        assert_eq!(m["error"]["data"][UPSTREAM_STATUS], 400, "not asked again: {m}");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": ask["id"],
            "result": {"supportedVersions": ["2026-07-28"]}}))
            .await;
        // (The relay may take a request before the answer that came just before it: each
        // request refused meanwhile is answered, until one is relayed.)
        for id in 3..1000 {
            h.client_sends(inline_request(id, "tools/list")).await;
            tokio::select! {
                m = h.client_out.recv() => {
                    let m = m.unwrap();
                    assert_eq!(m["error"]["data"][UPSTREAM_STATUS], 400, "{m}");
                }
                m = h.upstream_in.recv() => {
                    assert_eq!(m.unwrap()["method"], "tools/list", "the late answer was learned");
                    return;
                }
            }
        }
        panic!("the late answer was never learned");
    }

    /// A request cancelled while it waits for the upstream's answer to the gateway's
    /// `server/discover` (a sessionless client that closed its connection) is never decided nor
    /// relayed: the cancelled call does not run, and its units are not charged.
    #[tokio::test]
    async fn a_request_cancelled_while_waiting_for_discovery_never_reaches_the_upstream() {
        const LIMITED: &str = r#"{"version": "1", "default": "deny",
            "tools": {"a": {"limits": [{"counter": "a", "window": "hour", "max": 1}]}}}"#;
        let mut h = start_with(LIMITED, probing());
        let mut call = inline_request(1, "tools/call");
        call["params"]["name"] = json!("a");
        h.client_sends(call.clone()).await;
        h.client_sends(inline_request(2, "tools/list")).await;
        let ask = h.upstream_gets().await;
        assert_eq!(ask["method"], "server/discover", "{ask}");
        h.client_sends(json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 1, "reason": "the client closed its connection"}}))
            .await;
        // A request of no such revision passes at once: the cancellation before it was handled.
        h.client_sends(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"})).await;
        assert_eq!(h.upstream_gets().await["method"], "ping");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": ask["id"],
            "result": {"supportedVersions": ["2026-07-28"]}}))
            .await;
        let m = h.upstream_gets().await;
        assert_eq!(m["method"], "tools/list", "the cancelled call was relayed: {m}");
        // Its unit was not charged: the one call the limit allows still runs.
        call["id"] = json!(3);
        h.client_sends(call).await;
        let m = h.upstream_gets().await;
        assert_eq!(m["method"], "tools/call", "{m}");
        assert_eq!(m["params"]["name"], "a", "{m}");
    }

    /// An upstream that repeats a revision in its answer to `server/discover` (a huge answer)
    /// is offered each revision once: the gateway keeps a list of at most the revisions it
    /// speaks, searched for every request.
    #[test]
    fn the_offer_is_at_most_the_revisions_the_gateway_speaks() {
        let many = vec![json!("2026-07-28"); 100_000];
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"supportedVersions": many}});
        assert_eq!(inline_offered(&answer), vec!["2026-07-28".to_owned()]);
        let other = json!({"result": {"supportedVersions": ["2025-06-18", 7, null]}});
        assert!(inline_offered(&other).is_empty());
        assert!(inline_offered(&json!({"error": {"code": -32601}})).is_empty());
    }

    /// An upstream that takes nothing (its input full, its output read) is not reading its
    /// input: after [`UPSTREAM_SEND_TIMEOUT`] the client's next requests are read again and each
    /// is answered so, rather than waiting for ever.
    #[tokio::test]
    async fn an_upstream_not_reading_its_input_gets_the_client_errors() {
        let mut h = start(POLICY);
        // The harness's upstream channel holds 16 messages; nobody reads it.
        let client = h.client_in.clone();
        tokio::spawn(async move {
            for id in 1..=18 {
                let ping = json!({"jsonrpc": "2.0", "id": id, "method": "ping"});
                if client.send(Inbound::Message(ping)).await.is_err() {
                    return;
                }
            }
        });
        let m = h.client_gets().await;
        assert_eq!(m["id"], 17, "{m}");
        assert_eq!(m["error"]["code"], jsonrpc::INTERNAL_ERROR, "{m}");
        assert_eq!(h.client_gets().await["id"], 18);
        assert_eq!(h.upstream_gets().await["method"], "ping");
    }

    /// docs/gateway.md, "What is relayed": `notifications/cancelled` has its request id
    /// rewritten for the other end, both ways (the ids the gateway gave each end differ from
    /// the peers' own).
    #[tokio::test]
    async fn cancellations_name_the_other_ends_id() {
        let mut h = start(POLICY);
        // The client cancels its request: the upstream hears of the id it was sent.
        h.client_sends(json!({"jsonrpc": "2.0", "id": "c-1", "method": "resources/list"})).await;
        let up = h.upstream_gets().await;
        assert_ne!(up["id"], "c-1", "{up}");
        h.client_sends(json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": "c-1", "reason": "changed my mind"}}))
            .await;
        let cancelled = h.upstream_gets().await;
        assert_eq!(cancelled["method"], "notifications/cancelled", "{cancelled}");
        assert_eq!(cancelled["params"]["requestId"], up["id"], "{cancelled}");
        assert_eq!(cancelled["params"]["reason"], "changed my mind");
        // The upstream cancels its own request to the client: the client hears of its id.
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": 77, "method": "roots/list"})).await;
        let down = h.client_gets().await;
        assert_eq!(down["method"], "roots/list", "{down}");
        assert_ne!(down["id"], 77, "{down}");
        h.upstream_sends(json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 77}}))
            .await;
        let cancelled = h.client_gets().await;
        assert_eq!(cancelled["method"], "notifications/cancelled", "{cancelled}");
        assert_eq!(cancelled["params"]["requestId"], down["id"], "{cancelled}");
    }

    /// docs/gateway.md, "What is relayed": a client asking for a revision the gateway does not
    /// speak has the upstream asked for the newest one it does (`2025-11-25`); the upstream's
    /// answer goes back unchanged (instructions, fields the gateway does not know); an answer
    /// in a revision the gateway does not speak is -32602 with the supported versions.
    #[tokio::test]
    async fn initialize_is_negotiated_as_documented() {
        let init = |version: &str| {
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}})
        };
        let mut h = start(POLICY);
        h.client_sends(init("2099-01-01")).await;
        let up = h.upstream_gets().await;
        assert_eq!(up["params"]["protocolVersion"], "2025-11-25", "{up}");
        let answer = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
            "serverInfo": {"name": "u", "version": "1"}, "instructions": "be kind",
            "x-future": {"kept": true}});
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"], "result": answer})).await;
        let r = h.client_gets().await;
        assert_eq!(r["id"], 1);
        assert_eq!(r["result"], answer, "unchanged: {r}");

        let mut h = start(POLICY);
        h.client_sends(init("2025-06-18")).await;
        let up = h.upstream_gets().await;
        assert_eq!(up["params"]["protocolVersion"], "2025-06-18", "{up}");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"], "result": {
            "protocolVersion": "1999-01-01", "capabilities": {},
            "serverInfo": {"name": "u", "version": "1"}}}))
            .await;
        let r = h.client_gets().await;
        assert_eq!(r["id"], 1);
        assert_eq!(r["error"]["code"], jsonrpc::INVALID_PARAMS, "{r}");
        assert_eq!(r["error"]["data"]["supported"], json!(PROTOCOL_VERSIONS), "{r}");
    }

    /// docs/gateway.md, "Failure behaviour": a call that is allowed but cannot be sent (here
    /// the upstream does not take its input) gets -32603 and its units back: with `max: 1`,
    /// the next call is allowed and reaches the upstream.
    #[tokio::test]
    async fn an_allowed_call_that_cannot_be_sent_gets_its_units_back() {
        let mut h = start(
            r#"{"version": "1", "default": "deny", "tools": {
                "lim": {"limits": [{"counter": "lim", "window": "hour", "max": 1}]}}}"#,
        );
        let call = |id: i64| {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "lim", "arguments": {}}})
        };
        // The harness's upstream channel holds 16 messages; nobody reads it yet.
        for id in 1..=16 {
            h.client_sends(json!({"jsonrpc": "2.0", "id": id, "method": "ping"})).await;
        }
        h.client_sends(call(100)).await;
        let m = h.client_gets().await;
        assert_eq!(m["id"], 100, "{m}");
        assert_eq!(m["error"]["code"], jsonrpc::INTERNAL_ERROR, "{m}");
        for _ in 1..=16 {
            assert_eq!(h.upstream_gets().await["method"], "ping");
        }
        // Its unit came back: the only one of the hour is there for the next call.
        h.client_sends(call(101)).await;
        let up = h.upstream_gets().await;
        assert_eq!(up["method"], "tools/call", "{up}");
        assert_eq!(up["params"]["name"], "lim", "{up}");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": up["id"], "result": {"content": []}}))
            .await;
        let m = h.client_gets().await;
        assert_eq!(m["id"], 101, "{m}");
        assert!(m["result"].is_object(), "{m}");
        // And it is charged: the one after is limited.
        h.client_sends(call(102)).await;
        let m = h.client_gets().await;
        assert_eq!(m["result"]["isError"], true, "{m}");
        assert!(m["result"]["content"][0]["text"].as_str().unwrap().contains("Rate limited"));
    }

    /// The requests that waited for the upstream's `server/discover` go on as the upstream takes
    /// them, while the relay keeps reading it: here an upstream that reads its input only once
    /// its last message was relayed (its output read). Replayed at once, they filled its input,
    /// the relay stopped reading it, and every request past the first few got "the upstream
    /// is not reading its input" (one a second).
    #[tokio::test]
    async fn requests_that_waited_for_discovery_go_on_as_the_upstream_takes_them() {
        let mut h = start_with(POLICY, probing());
        const WAITED: i64 = 40;
        for id in 1..=WAITED {
            h.client_sends(inline_request(id, "tools/list")).await;
        }
        let ask = h.upstream_gets().await;
        assert_eq!(ask["method"], "server/discover", "{ask}");
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": ask["id"],
            "result": {"supportedVersions": ["2026-07-28"]}}))
            .await;
        for n in 0..WAITED {
            let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                "params": {"level": "info", "data": n}});
            h.upstream_sends(note).await;
            let m = h.client_gets().await;
            assert_eq!(m["params"]["data"], n, "not the upstream's message: {m}");
            assert_eq!(h.upstream_gets().await["method"], "tools/list");
        }
    }

    /// At most [`MAX_WAITING_FOR_DISCOVERY`] requests wait for the upstream's answer; the next
    /// are refused at once, with 429 for the listener.
    #[tokio::test]
    async fn a_bounded_number_of_requests_wait_for_discovery() {
        let mut h = start_with(POLICY, probing());
        let n = i64::try_from(MAX_WAITING_FOR_DISCOVERY).unwrap();
        let client = h.client_in.clone();
        tokio::spawn(async move {
            for id in 1..=n + 2 {
                let m = inline_request(id, "tools/list");
                client.send(Inbound::Message(m)).await.unwrap();
            }
        });
        assert_eq!(h.upstream_gets().await["method"], "server/discover");
        for id in [n + 1, n + 2] {
            let m = h.client_gets().await;
            assert_eq!(m["id"], id, "{m}");
            assert_eq!(m["error"]["data"][UPSTREAM_STATUS], 429, "{m}");
        }
    }

    /// The upstream going while the gateway asks it: the requests that waited get errors.
    #[tokio::test]
    async fn requests_waiting_for_discovery_get_errors_when_the_upstream_goes() {
        let mut h = start_with(POLICY, probing());
        h.client_sends(inline_request(1, "tools/list")).await;
        assert_eq!(h.upstream_gets().await["method"], "server/discover");
        h.upstream_out = None;
        let m = h.client_gets().await;
        assert_eq!(
            (m["id"].as_i64(), m["error"]["code"].as_i64()),
            (Some(1), Some(jsonrpc::INTERNAL_ERROR))
        );
        assert_eq!(h.task.await.unwrap(), RelayEnd::UpstreamClosed);
    }
}

#[cfg(test)]
mod line_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::os::fd::AsFd;

    use super::*;
    use crate::decision_log::DecisionLog;
    use crate::guard::Mode;
    use crate::lines::{LineReader, LineWriter, ReadEnd, WriteEnd};
    use mcp_policy::Evaluator;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// Both ends of a Unix socket pair as tokio sockets: (the relay's, the test's).
    fn pair() -> (std::os::unix::net::UnixStream, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn tokio_socket(s: std::os::unix::net::UnixStream) -> tokio::net::UnixStream {
        tokio::net::UnixStream::from_std(s).unwrap()
    }

    /// A call sent on from its line to an upstream that takes nothing (its input full) waits
    /// for it; the policy reloaded meanwhile did not decide it, and the decision log says
    /// which did (the digest of the policy in force when it was decided).
    #[tokio::test(start_paused = true)]
    async fn a_call_waiting_for_a_full_upstream_is_logged_with_the_policy_that_decided_it() {
        const ALLOW: &str = r#"{"version": "1", "default": "deny", "tools": {"a": {}}}"#;
        const OTHER: &str = r#"{"version": "1", "default": "deny", "tools": {"a": {}, "b": {}}}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = Arc::new(
            DecisionLog::open(path.to_str().unwrap(), 1 << 20, Default::default()).unwrap(),
        );
        let evaluator = Arc::new(Evaluator::new(ALLOW.parse().unwrap()));
        let decided_by = evaluator.policy().digest().to_owned();
        let guard = Arc::new(Guard::new(evaluator.clone(), "g", Mode::Enforce));
        // The client: a socket pair. The upstream's input: a pipe of one page nobody reads.
        let (relay_client, test_client) = pair();
        let relay_client_out = relay_client.try_clone().unwrap();
        let (up_tx, _up_rx) = tokio::net::unix::pipe::pipe().unwrap();
        nix::fcntl::fcntl(up_tx.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
        let (relay_up_in, _test_up_out) = pair();
        let client = ClientLink {
            tx: ClientTx::Lines(Arc::new(LineWriter::new(
                WriteEnd::Socket(tokio_socket(relay_client_out)),
                || {},
            ))),
            rx: ClientRx::Lines(LineReader::new(
                ReadEnd::Socket(tokio_socket(relay_client)),
                1 << 24,
            )),
        };
        let upstream = UpstreamLink {
            tx: UpstreamTx::Lines(LineWriter::new(WriteEnd::Pipe(up_tx), || {})),
            rx: UpstreamRx::Lines {
                lines: LineReader::new(ReadEnd::Socket(tokio_socket(relay_up_in)), 1 << 24),
                clean: |_| {},
            },
        };
        let config = RelayConfig::default();
        let task = tokio::spawn(Relay::run(guard, log.clone(), config, client, upstream));
        let test_client = tokio_socket(test_client);
        let (read_half, mut write_half) = test_client.into_split();
        let mut from_relay = BufReader::new(read_half).lines();
        // Requests the gateway only relays, until its queue for the upstream is full (the first
        // fills the pipe and stays queued, the rest of `QUEUED_MAX` with it); then the call.
        let pad = "x".repeat(8192);
        let mut text = String::new();
        for id in 0..crate::lines::QUEUED_MAX {
            text.push_str(&format!(
                r#"{{"jsonrpc":"2.0","id":"p{id}","method":"ping","params":{{"pad":"{pad}"}}}}"#
            ));
            text.push('\n');
        }
        text.push_str(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a"}}"#);
        text.push('\n');
        write_half.write_all(text.as_bytes()).await.unwrap();
        // The call is read once the upstream has taken nothing for `UPSTREAM_SEND_TIMEOUT`, then
        // waits as long again for the upstream to take it: the policy changes meanwhile.
        tokio::time::sleep(UPSTREAM_SEND_TIMEOUT + UPSTREAM_SEND_TIMEOUT / 2).await;
        evaluator.reload_from_str(OTHER).unwrap();
        assert_ne!(evaluator.policy().digest(), decided_by);
        let answer = loop {
            let line = from_relay.next_line().await.unwrap().unwrap();
            let m: Value = serde_json::from_str(&line).unwrap();
            if m["id"] == 7 {
                break m;
            }
        };
        assert_eq!(answer["error"]["code"], jsonrpc::INTERNAL_ERROR, "{answer}");
        assert!(log.finish());
        let text = std::fs::read_to_string(&path).unwrap();
        let line: Value =
            serde_json::from_str(text.lines().find(|l| l.contains(r#""tool":"a""#)).unwrap())
                .unwrap();
        assert_eq!(line["outcome"], "upstream_closed", "{line}");
        assert_eq!(line["policy"], decided_by.as_str(), "{line}");
        drop(write_half);
        task.abort();
    }
}

#[cfg(test)]
#[path = "relay_out_of_band_tests.rs"]
mod out_of_band_tests;
