//! The policy document as plain data.
//!
//! These types mirror the JSON format key for key. They serialise back to the same JSON, and the
//! JSON Schema published at [`docs/policy.schema.json`] is generated from them. The loader
//! ([`Policy::from_json_str`](crate::Policy::from_json_str)) is stricter than their `Deserialize`
//! implementations: it also rejects duplicate keys, checks ranges, regexes, argument schemas,
//! paths and pattern ambiguity, and reports every problem at once with its position.
//!
//! A program that writes a policy (as `mcp-policy init` does) builds these types (their fields
//! are public: struct literals, `..Rule::default()`, or the constructors such as
//! [`PolicyDocument::new`] and [`Condition::new`]) and compiles the document with
//! [`Policy::try_from`](crate::Policy), which runs the same checks on it as the loader does
//! after reading text, without printing and re-reading JSON.
//!
//! [`docs/policy.schema.json`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/policy.schema.json

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The largest `max` a limit accepts: 2^53, the largest integer every JSON reader keeps exactly.
pub const MAX_LIMIT: u64 = 1 << 53;

/// The longest window a limit accepts, in seconds (about 136 years).
pub const MAX_WINDOW_SECONDS: u64 = u32::MAX as u64;

/// A policy document, version "1".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mcp-policy document", extend("$id" = "https://mcp-policy.dev/schema/policy-1.json"))]
pub struct PolicyDocument {
    /// Ignored by the loader; lets editors find the JSON Schema (`"./policy.schema.json"`).
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The language version: only `"1"`.
    #[schemars(extend("const" = "1"))]
    pub version: String,
    /// The decision for a tool that no `tools` key matches.
    pub default: DefaultDecision,
    /// Free text for the people who read the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tools left out of `tools/list` and denied at call time: exact names or `*` patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub hide: Vec<String>,
    /// A rule applied to every call that is not hidden and that a rule (or `default: allow`) lets in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_tools: Option<Rule>,
    /// Rules by tool name or `*` pattern. `{}` allows a tool (subject to `all_tools`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "minLength": 1 }))]
    pub tools: BTreeMap<String, Rule>,
}

impl PolicyDocument {
    /// An empty document of version `"1"` with the given default: no `hide`, no `all_tools`, no
    /// `tools` (add them to the public fields).
    ///
    /// ```
    /// use mcp_policy::model::{DefaultDecision, PolicyDocument, Rule};
    /// let mut doc = PolicyDocument::new(DefaultDecision::Deny);
    /// doc.tools.insert("list_jobs".to_owned(), Rule::default());
    /// let policy = mcp_policy::Policy::try_from(doc)?;
    /// assert!(policy.is_visible("list_jobs"));
    /// # Ok::<(), mcp_policy::InvalidPolicy>(())
    /// ```
    pub fn new(default: DefaultDecision) -> PolicyDocument {
        PolicyDocument {
            schema: None,
            version: "1".to_owned(),
            default,
            description: None,
            hide: Vec::new(),
            all_tools: None,
            tools: BTreeMap::new(),
        }
    }
}

/// The decision for tools that no rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefaultDecision {
    /// Tools without a rule are allowed (with an empty rule, subject to `all_tools`).
    Allow,
    /// Tools without a rule are denied.
    Deny,
}

/// What a policy says about one tool (or, under `all_tools`, about every tool).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Free text; `mcp-policy init` writes the tool's class here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema (2020-12) the call's arguments must validate against, else the call is denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("type" = ["object", "boolean"]))]
    pub arguments: Option<Value>,
    /// Checks that must all hold (every condition definitely true), else the call is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<Check>,
    /// Checks that deny the call when they match (true or unknown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_if: Vec<Check>,
    /// Checks that require a human's approval when they match (true or unknown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approve_if: Vec<ApprovalCheck>,
    /// Rate and quota limits, all checked and charged as one atomic step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<Limit>,
}

/// A check of `require` or `deny_if`: its conditions are ANDed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// A name for audit logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The conditions, all of which must be true for the check to be true.
    pub conditions: Vec<Condition>,
    /// The message of the deny decision this check causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_deny: Option<String>,
}

impl Check {
    /// A check of `conditions` without a name or an `on_deny` message.
    pub fn new(conditions: Vec<Condition>) -> Check {
        Check { name: None, conditions, on_deny: None }
    }
}

/// A check of `approve_if`: its conditions are ANDed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalCheck {
    /// A name for audit logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The conditions, all of which must be true (or unknown) for approval to be required.
    pub conditions: Vec<Condition>,
    /// Why approval is needed, shown to the human who approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ApprovalCheck {
    /// An approval check of `conditions` without a name or a `reason`.
    pub fn new(conditions: Vec<Condition>) -> ApprovalCheck {
        ApprovalCheck { name: None, conditions, reason: None }
    }
}

/// One comparison of a value of the call with a value of the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Where in the call document to read: `args.a.b` or the JSON Pointer `/args/a/b`.
    #[schemars(length(min = 1))]
    pub path: String,
    /// The comparison.
    pub op: Op,
    /// The operand; optional only for `exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Condition {
    /// The condition `path` `op` `value` (`Op::Exists` takes no value: use
    /// [`Condition::exists`]).
    pub fn new(path: impl Into<String>, op: Op, value: Value) -> Condition {
        Condition { path: path.into(), op, value: Some(value) }
    }

    /// The condition that `path` is present in the call.
    pub fn exists(path: impl Into<String>) -> Condition {
        Condition { path: path.into(), op: Op::Exists, value: None }
    }
}

/// A condition's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Op {
    /// Equal (numbers compare numerically).
    Eq,
    /// Not equal.
    Neq,
    /// Equal to an element of the array.
    In,
    /// Equal to no element of the array.
    NotIn,
    /// A number less than.
    Lt,
    /// A number less than or equal to.
    Lte,
    /// A number greater than.
    Gt,
    /// A number greater than or equal to.
    Gte,
    /// A string containing a substring, or an array containing an element.
    Contains,
    /// A string starting with.
    StartsWith,
    /// A string ending with.
    EndsWith,
    /// A string with a match of the regular expression anywhere.
    Regex,
    /// Present (or absent, with `false`).
    Exists,
    /// An absolute path inside one of the given directories (after lexical normalisation).
    Within,
}

impl Op {
    /// The op as written in a policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::Regex => "regex",
            Op::Exists => "exists",
            Op::Within => "within",
        }
    }

    /// Every op, in the order of the reference.
    pub const ALL: [Op; 14] = [
        Op::Eq,
        Op::Neq,
        Op::In,
        Op::NotIn,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::Contains,
        Op::StartsWith,
        Op::EndsWith,
        Op::Regex,
        Op::Exists,
        Op::Within,
    ];
}

/// A rate or quota limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The counter's name; limits naming the same counter share one count.
    #[schemars(length(min = 1))]
    pub counter: String,
    /// The window's length.
    pub window: Window,
    /// The most units admitted per window.
    #[schemars(range(min = 1, max = 9_007_199_254_740_992u64))]
    pub max: u64,
    /// Whose count: per grant (default), per session, or one count for everyone.
    #[serde(default)]
    pub scope: Scope,
    /// Units one call consumes (default 1, at most `max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9_007_199_254_740_992u64))]
    pub increment: Option<u64>,
    /// Take the units from the call, for example `args.amount` for a spend cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub increment_from: Option<String>,
    /// Never more than `max` units in any interval of length `window`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub sliding: bool,
}

impl Limit {
    /// A limit of `max` calls per `window` on `counter`, per grant, one unit a call, fixed
    /// window.
    pub fn new(counter: impl Into<String>, window: Window, max: u64) -> Limit {
        Limit {
            counter: counter.into(),
            window,
            max,
            scope: Scope::Grant,
            increment: None,
            increment_from: None,
            sliding: false,
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A window's length: a named unit or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Window {
    /// `"second"`, `"minute"`, `"hour"` or `"day"`.
    Named(WindowUnit),
    /// A positive number of seconds.
    Seconds(#[schemars(range(min = 1, max = 4_294_967_295u64))] u64),
}

impl Window {
    /// The window's length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Window::Named(WindowUnit::Second) => 1,
            Window::Named(WindowUnit::Minute) => 60,
            Window::Named(WindowUnit::Hour) => 3_600,
            Window::Named(WindowUnit::Day) => 86_400,
            Window::Seconds(s) => s,
        }
    }
}

/// A named window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowUnit {
    /// One second.
    Second,
    /// Sixty seconds, restarting at every whole minute.
    Minute,
    /// One hour, restarting at every whole hour.
    Hour,
    /// One day, restarting at 00:00 UTC.
    Day,
}

/// Whose count a limit keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// One count per grant (the caller's credential).
    #[default]
    Grant,
    /// One count per (grant, session); calls without a session share one bucket of their grant.
    Session,
    /// One count shared by every caller.
    Global,
}

impl Scope {
    /// The scope as written in a policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Grant => "grant",
            Scope::Session => "session",
            Scope::Global => "global",
        }
    }
}
