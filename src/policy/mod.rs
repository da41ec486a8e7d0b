//! Policy documents: the model, the loader and its diagnostics.
//!
//! A policy is a JSON document (the language is described in [`docs/policy.md`]). Loading it
//! checks everything at once (unknown and duplicate keys, types, ranges, regexes, argument
//! schemas, paths, ambiguous patterns, conflicting counters) and compiles it into an immutable
//! [`Policy`] that is cheap to share between threads.
//!
//! [`docs/policy.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/policy.md

pub(crate) mod compiled;
pub(crate) mod condition;
mod diagnostics;
mod exact;
pub(crate) mod lint;
mod load;
pub mod model;
pub(crate) mod path;
pub(crate) mod pattern;
pub(crate) mod suggest;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

pub use diagnostics::{
    Diagnostic, DiagnosticKind, InvalidPolicy, PolicyError, ReadError, Severity,
};
use model::{DefaultDecision, PolicyDocument};

use crate::json::source;
use compiled::{Compiled, CompiledRule};

/// A loaded, validated and compiled policy.
///
/// Immutable and cheap to clone (the compiled form is shared), so one policy can serve every
/// thread of a server.
///
/// ```
/// use mcp_policy::Policy;
///
/// let policy: Policy = r#"{
///     "version": "1",
///     "default": "deny",
///     "hide": ["delete_*"],
///     "tools": { "list_clusters": {} }
/// }"#.parse()?;
/// assert!(policy.is_visible("list_clusters"));
/// assert!(!policy.is_visible("delete_job"));   // hidden
/// assert!(!policy.is_visible("start_cluster")); // only the default names it: denied
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Compiled>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("digest", &self.inner.digest())
            .field("tools", &self.inner.document.tools.len())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Loads a policy from JSON text, reporting every problem of the text at once.
    ///
    /// ```
    /// use mcp_policy::{DiagnosticKind, Policy};
    ///
    /// let err = Policy::from_json_str(r#"{"version": "1", "default": "deny",
    ///   "tools": {"cancel_run": {"limts": []}}}"#).unwrap_err();
    /// let d = &err.diagnostics()[0];
    /// assert_eq!(d.kind(), DiagnosticKind::UnknownKey);
    /// assert_eq!(d.pointer(), "/tools/cancel_run/limts");
    /// assert!(d.message().contains("did you mean `limits`?"));
    /// ```
    pub fn from_json_str(text: &str) -> Result<Policy, PolicyError> {
        let compiled = load::load(text)?;
        Ok(Policy { inner: Arc::new(compiled) })
    }

    /// Reads and loads a policy file.
    ///
    /// ```no_run
    /// let policy = mcp_policy::Policy::from_path("policy.json")?;
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ReadError::new(path, e))?;
        Policy::from_json_str(&text)
    }

    /// The warnings of the document: constructs that load but rarely mean what they say
    /// (`exists` on `grant` or `session`, `in: []`, a `regex` anchored with `$` or using
    /// Unicode `\d` / `\w`, a `deny_if` on an argument no `arguments` schema types). Each has
    /// its line, column, pointer and a stable [`DiagnosticKind`]; [`Severity::Warning`] always.
    ///
    /// ```
    /// use mcp_policy::{DiagnosticKind, Policy, Severity};
    ///
    /// let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"t": {
    ///   "approve_if": [{"conditions": [
    ///     {"path": "args.sql", "op": "regex", "value": "^SELECT [a-z]+$"}]}]}}}"#.parse()?;
    /// let w = &policy.warnings()[0];
    /// assert_eq!(w.kind(), DiagnosticKind::DollarAnchor);
    /// assert_eq!(w.severity(), Severity::Warning);
    /// assert_eq!((w.line(), w.column()), (3, 50));
    /// assert_eq!(w.pointer(), "/tools/t/approve_if/0/conditions/0/value");
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.inner.warnings
    }

    /// The document as loaded.
    ///
    /// ```
    /// let policy: mcp_policy::Policy = r#"{"version": "1", "default": "allow"}"#.parse()?;
    /// assert_eq!(policy.document().default, mcp_policy::model::DefaultDecision::Allow);
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn document(&self) -> &PolicyDocument {
        &self.inner.document
    }

    /// The SHA-256 (lowercase hex) of the document in canonical JSON (RFC 8785): the same for
    /// two documents that differ only in formatting, key order or number spelling.
    ///
    /// One deliberate difference from RFC 8785: an integer written without a fraction or
    /// exponent that a 64-bit float cannot hold exactly (beyond ±2^53, up to the 64-bit range)
    /// keeps all of its digits, where RFC 8785 would round it to the nearest float. So
    /// `9007199254740993` and `9007199254740992` give two digests (RFC 8785 writes both as
    /// `9007199254740992`), as the evaluator compares such integers exactly too. Every other
    /// number is written as RFC 8785 writes it (ECMAScript's shortest round-trip form).
    ///
    /// ```
    /// use mcp_policy::Policy;
    /// let a: Policy = r#"{"version": "1", "default": "deny"}"#.parse()?;
    /// let b: Policy = "{ \"default\":\"deny\",\n  \"version\":\"1\" }".parse()?;
    /// assert_eq!(a.digest(), b.digest());
    /// assert_eq!(a.digest().len(), 64);
    ///
    /// let doc = |n: &str| format!(r#"{{"version": "1", "default": "deny", "tools": {{"t": {{
    ///     "deny_if": [{{"conditions": [{{"path": "args.n", "op": "eq", "value": {n}}}]}}]}}}}}}"#);
    /// let exact: Policy = doc("9007199254740993").parse()?;
    /// let rounded: Policy = doc("9007199254740992").parse()?;
    /// assert_ne!(exact.digest(), rounded.digest());
    /// let one: Policy = doc("1").parse()?;
    /// let one_point_zero: Policy = doc("1.0").parse()?;
    /// assert_eq!(one.digest(), one_point_zero.digest());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn digest(&self) -> &str {
        self.inner.digest()
    }

    /// Whether `tool` matches a `hide` entry: it is left out of `tools/list` and denied.
    ///
    /// ```
    /// let policy: mcp_policy::Policy =
    ///     r#"{"version": "1", "default": "allow", "hide": ["dbfs_*"]}"#.parse()?;
    /// assert!(policy.is_hidden("dbfs_delete"));
    /// assert!(!policy.is_hidden("list_jobs"));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn is_hidden(&self, tool: &str) -> bool {
        self.hidden_by(tool).is_some()
    }

    /// Whether `tool` belongs in `tools/list`: it is not hidden, and a `tools` rule matches it or
    /// the default is `allow`. Tools with explicit rules stay visible even when a check may deny
    /// some of their calls.
    ///
    /// ```
    /// let policy: mcp_policy::Policy =
    ///     r#"{"version": "1", "default": "deny", "tools": {"get_*": {}}}"#.parse()?;
    /// assert!(policy.is_visible("get_cluster"));
    /// assert!(!policy.is_visible("create_cluster"));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn is_visible(&self, tool: &str) -> bool {
        !self.is_hidden(tool)
            && (self.rule_for(tool).is_some() || self.inner.default == DefaultDecision::Allow)
    }

    /// The `tools` key whose rule governs `tool` (the exact key, else the most specific
    /// pattern), or `None` when only the default does. Hidden tools are not considered hidden
    /// here: ask [`is_hidden`](Policy::is_hidden).
    ///
    /// ```
    /// let policy: mcp_policy::Policy = r#"{"version": "1", "default": "deny",
    ///     "tools": {"list_*": {}, "list_secrets": {}}}"#.parse()?;
    /// assert_eq!(policy.rule_key("list_jobs"), Some("list_*"));
    /// assert_eq!(policy.rule_key("list_secrets"), Some("list_secrets"));
    /// assert_eq!(policy.rule_key("cancel_run"), None);
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn rule_key(&self, tool: &str) -> Option<&str> {
        let index = match self.inner.exact.get(tool) {
            Some(i) => i,
            None => self.inner.patterns.find(tool)?,
        };
        self.inner.rule_keys.get(index).map(|k| &**k)
    }

    /// The JSON Schema (2020-12) of the policy document, as published at
    /// [`docs/policy.schema.json`].
    ///
    /// ```
    /// let schema = mcp_policy::Policy::json_schema();
    /// assert_eq!(schema["properties"]["version"]["const"], "1");
    /// ```
    ///
    /// [`docs/policy.schema.json`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/policy.schema.json
    pub fn json_schema() -> serde_json::Value {
        let schema = schemars::schema_for!(PolicyDocument);
        let mut value = serde_json::to_value(schema).unwrap_or(serde_json::Value::Null);
        strip_null(&mut value);
        value
    }

    /// [`Policy::json_schema`] as pretty-printed text with a final newline: the exact bytes of
    /// [`docs/policy.schema.json`].
    ///
    /// ```
    /// assert!(mcp_policy::Policy::json_schema_text().ends_with("}\n"));
    /// ```
    ///
    /// [`docs/policy.schema.json`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/policy.schema.json
    pub fn json_schema_text() -> String {
        let mut s = serde_json::to_string_pretty(&Policy::json_schema()).unwrap_or_default();
        s.push('\n');
        s
    }

    pub(crate) fn compiled(&self) -> &Arc<Compiled> {
        &self.inner
    }

    /// The index of the first `hide` entry matching `tool`.
    pub(crate) fn hidden_by(&self, tool: &str) -> Option<usize> {
        self.inner.hidden_by(tool)
    }

    /// The rule of `tool` (not counting the default), with the `tools` key it was found under.
    pub(crate) fn rule_for(&self, tool: &str) -> Option<&CompiledRule> {
        self.inner.rule_for(tool)
    }
}

impl Compiled {
    #[inline]
    pub(crate) fn hidden_by(&self, tool: &str) -> Option<usize> {
        // Most policies hide nothing, or only patterns: skip hashing the name then.
        if self.hide_patterns.is_empty() && self.hide_exact.is_empty() {
            return None;
        }
        let exact =
            if self.hide_exact.is_empty() { None } else { self.hide_exact.get(tool).copied() };
        let pattern = self.hide_patterns.iter().find(|(p, _)| p.matches(tool)).map(|(_, i)| *i);
        match (exact, pattern) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    #[inline]
    pub(crate) fn rule_for(&self, tool: &str) -> Option<&CompiledRule> {
        let index = match self.exact.get(tool) {
            Some(i) => i,
            None => self.patterns.find(tool)?,
        };
        self.rules.get(index)
    }
}

/// The 1-based line and column (in characters) of the value at `pointer` in the JSON `text`, or
/// of its nearest ancestor present in the text: for tools that report their own findings about a
/// policy (such as `mcp-policy validate --tools`) in the same form as load errors.
///
/// ```
/// let text = "{\n  \"version\": \"1\",\n  \"tools\": { \"a\": {} }\n}";
/// assert_eq!(mcp_policy::locate(text, "/tools/a"), (3, 19));
/// assert_eq!(mcp_policy::locate(text, "/tools/b"), (3, 12));
/// ```
pub fn locate(text: &str, pointer: &str) -> (usize, usize) {
    let spans = source::read(text, true).spans;
    source::line_column(text, spans.value_offset(pointer))
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a likely typo:
/// the "did you mean" of load errors, for tools that report on policies.
///
/// ```
/// use mcp_policy::did_you_mean;
/// assert_eq!(did_you_mean("cancel_runs", ["cancel_run", "list_jobs"]), Some("cancel_run"));
/// assert_eq!(did_you_mean("zzz", ["cancel_run"]), None);
/// ```
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    suggest::closest(word, candidates.into_iter())
}

/// Whether the tool pattern `pattern` (a `tools` key or `hide` entry: an exact name, or `*` for
/// any run of characters) matches the tool name `tool`, case-sensitively and byte for byte.
///
/// ```
/// use mcp_policy::pattern_matches;
/// assert!(pattern_matches("dbfs_*", "dbfs_delete"));
/// assert!(pattern_matches("cancel_run", "cancel_run"));
/// assert!(!pattern_matches("cancel_run", "Cancel_run"));
/// ```
pub fn pattern_matches(pattern: &str, tool: &str) -> bool {
    if pattern::is_pattern(pattern) {
        pattern::Pattern::new(pattern).matches(tool)
    } else {
        pattern == tool
    }
}

/// Optional keys may be absent but not `null` (the loader says so too): removes the `null`
/// alternatives that schemars gives `Option` fields.
fn strip_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    let null = serde_json::json!({ "type": "null" });
    if let Value::Object(map) = v {
        if let Some(Value::Array(types)) = map.get_mut("type") {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                map.insert("type".into(), only);
            }
        }
        if let Some(Value::Array(alternatives)) = map.get("anyOf") {
            if alternatives.len() == 2 && alternatives.contains(&null) {
                let kept: Vec<Value> =
                    alternatives.iter().filter(|a| **a != null).cloned().collect();
                map.remove("anyOf");
                for alt in kept {
                    if let Value::Object(alt) = alt {
                        map.extend(alt);
                    }
                }
            }
        }
        map.values_mut().for_each(strip_null);
    } else if let Value::Array(items) = v {
        items.iter_mut().for_each(strip_null);
    }
}

/// Compiles a document built in a program, without printing and re-reading it: the same checks
/// as [`Policy::from_json_str`] after the text is read (the version, ranges, paths, regexes,
/// argument schemas, ambiguous patterns, conflicting counters), every problem at once.
///
/// A document has no text, so its [`Diagnostic`]s have **no position**: [`Diagnostic::line`]
/// and [`Diagnostic::column`] are 0, and the [`pointer`](Diagnostic::pointer) says where the
/// problem is. The warnings ([`Policy::warnings`]) are likewise without position. The digest is
/// that of the document, so a policy built from a document and the same policy loaded from text
/// have the same [`Policy::digest`].
///
/// The model's structs have public fields (build them with struct literals, `..Default::default()`
/// for a [`Rule`](model::Rule), or the constructors such as
/// [`PolicyDocument::new`](model::PolicyDocument::new)); `serde_json::from_value` reads one from
/// a JSON value too.
///
/// ```
/// use mcp_policy::model::{Condition, Check, DefaultDecision, Limit, Op, PolicyDocument, Rule, Window, WindowUnit};
/// use mcp_policy::{DiagnosticKind, Evaluator, Policy, ToolCall};
/// use serde_json::json;
///
/// let mut document = PolicyDocument::new(DefaultDecision::Deny);
/// document.tools.insert("transfer".to_owned(), Rule {
///     deny_if: vec![Check::new(vec![Condition::new("args.amount", Op::Gt, json!(1000))])],
///     limits: vec![Limit::new("transfers", Window::Named(WindowUnit::Hour), 10)],
///     ..Rule::default()
/// });
/// let policy = Policy::try_from(document.clone())?;
/// let evaluator = Evaluator::new(policy.clone());
/// let args = json!({"amount": 5000});
/// assert!(!evaluator.evaluate(&ToolCall::new("transfer").with_arguments(&args)).is_allowed());
///
/// // The same policy as text has the same digest.
/// let text: Policy = r#"{"version": "1", "default": "deny", "tools": {"transfer": {
///     "deny_if": [{"conditions": [{"path": "args.amount", "op": "gt", "value": 1000}]}],
///     "limits": [{"counter": "transfers", "window": "hour", "max": 10}]}}}"#.parse()?;
/// assert_eq!(policy.digest(), text.digest());
///
/// // Problems have a pointer and no position.
/// document.tools.insert("t".to_owned(), Rule {
///     deny_if: vec![Check::new(vec![Condition::new("args.s", Op::Regex, json!("(unclosed"))])],
///     ..Rule::default()
/// });
/// let err = Policy::try_from(document).unwrap_err();
/// let d = &err.diagnostics()[0];
/// assert_eq!(d.kind(), DiagnosticKind::InvalidRegex);
/// assert_eq!(d.pointer(), "/tools/t/deny_if/0/conditions/0/value");
/// assert_eq!((d.line(), d.column()), (0, 0));
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
impl TryFrom<PolicyDocument> for Policy {
    type Error = InvalidPolicy;

    fn try_from(document: PolicyDocument) -> Result<Self, Self::Error> {
        let compiled = load::compile_document(document)?;
        Ok(Policy { inner: Arc::new(compiled) })
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::from_json_str(s)
    }
}
