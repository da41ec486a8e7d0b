//! The tool call being decided: a borrowed view, so that building one never copies the arguments.

use std::sync::LazyLock;

use serde_json::{Map, Value};

/// The deepest nesting of arguments that the steps which walk them recursively (argument
/// schemas, approval keys) accept; serde_json's own parser stops at the same depth.
pub(crate) const MAX_ARGUMENT_DEPTH: usize = 128;

static EMPTY_OBJECT: LazyLock<Value> = LazyLock::new(|| Value::Object(Map::new()));

/// One MCP `tools/call`, as the policy sees it.
///
/// Everything is borrowed from the embedder: the arguments are read in place, never cloned.
/// Only the tool name is required; the rest default to what the policy language says (no
/// arguments reads as `{}`, no context as `{}`, no session as `null`, no grant as `""`).
///
/// ```
/// use mcp_policy::ToolCall;
/// use serde_json::json;
///
/// let args = json!({ "run_id": 42 });
/// let context = json!({ "env": "prod" });
/// let call = ToolCall::new("cancel_run")
///     .with_arguments(&args)
///     .with_grant("token-of-alice")
///     .with_session("session-7")
///     .with_context(&context);
/// assert_eq!(call.tool(), "cancel_run");
/// assert_eq!(call.grant(), "token-of-alice");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ToolCall<'a> {
    tool: &'a str,
    arguments: Option<&'a Value>,
    grant: &'a str,
    session: Option<&'a str>,
    context: Option<&'a Value>,
    approval_key: Option<&'a str>,
}

impl<'a> ToolCall<'a> {
    /// A call of `tool` with no arguments, the empty grant, no session and no context.
    pub fn new(tool: &'a str) -> Self {
        ToolCall {
            tool,
            arguments: None,
            grant: "",
            session: None,
            context: None,
            approval_key: None,
        }
    }

    /// The call's arguments. They must be a JSON object: anything else is a malformed call, which
    /// the evaluator denies.
    pub fn with_arguments(mut self, arguments: &'a Value) -> Self {
        self.arguments = Some(arguments);
        self
    }

    /// The caller's grant: whatever identifies the credential the agent uses (a token's subject, an
    /// API key's id). `grant`-scoped limits count per grant.
    pub fn with_grant(mut self, grant: &'a str) -> Self {
        self.grant = grant;
        self
    }

    /// The MCP session the call belongs to.
    pub fn with_session(mut self, session: &'a str) -> Self {
        self.session = Some(session);
        self
    }

    /// The MCP session, when there may be none.
    pub fn with_optional_session(mut self, session: Option<&'a str>) -> Self {
        self.session = session;
        self
    }

    /// What the embedding server knows about the call (identity claims, environment): a JSON
    /// object that conditions read under `context`.
    pub fn with_context(mut self, context: &'a Value) -> Self {
        self.context = Some(context);
        self
    }

    /// The approval key of an `approve` decision that a human approved.
    pub fn with_approval_key(mut self, key: &'a str) -> Self {
        self.approval_key = Some(key);
        self
    }

    /// The tool's name.
    pub fn tool(&self) -> &'a str {
        self.tool
    }

    /// The arguments as given (`None` when the call has none).
    pub fn arguments(&self) -> Option<&'a Value> {
        self.arguments
    }

    /// The grant (`""` when none was given).
    pub fn grant(&self) -> &'a str {
        self.grant
    }

    /// The session, if any.
    pub fn session(&self) -> Option<&'a str> {
        self.session
    }

    /// The context as given (`None` when none was given).
    pub fn context(&self) -> Option<&'a Value> {
        self.context
    }

    /// The approval key the call carries, if any.
    pub fn approval_key(&self) -> Option<&'a str> {
        self.approval_key
    }

    /// The arguments, `{}` when absent.
    pub(crate) fn arguments_value(&self) -> &'a Value {
        self.arguments.unwrap_or(&EMPTY_OBJECT)
    }

    /// Whether the arguments nest deeper than [`MAX_ARGUMENT_DEPTH`], found without recursion so
    /// that even a hostile value cannot exhaust the stack.
    pub(crate) fn arguments_too_deep(&self) -> bool {
        let mut stack: smallvec::SmallVec<[(&Value, usize); 16]> =
            smallvec::smallvec![(self.arguments_value(), 1)];
        while let Some((v, depth)) = stack.pop() {
            match v {
                Value::Array(items) if !items.is_empty() => {
                    if depth > MAX_ARGUMENT_DEPTH {
                        return true;
                    }
                    stack.extend(items.iter().map(|c| (c, depth + 1)));
                }
                Value::Object(map) if !map.is_empty() => {
                    if depth > MAX_ARGUMENT_DEPTH {
                        return true;
                    }
                    stack.extend(map.values().map(|c| (c, depth + 1)));
                }
                _ => {}
            }
        }
        false
    }

    /// The context, `{}` when absent.
    pub(crate) fn context_value(&self) -> &'a Value {
        self.context.unwrap_or(&EMPTY_OBJECT)
    }
}
