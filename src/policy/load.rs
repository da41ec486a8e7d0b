//! The loader: text to a compiled policy, or every problem of the text at once.
//!
//! Loading runs in three passes:
//!
//! 1. [`source::read`] turns the text into a JSON value, reporting syntax errors, duplicate keys
//!    and excessive nesting;
//! 2. a structural walk checks every key and type against the language, builds the
//!    [`model`](super::model) and compiles each piece (paths, regexes, argument schemas) as it
//!    goes, so that one bad tool does not hide the problems of the next;
//! 3. whole-document checks: ambiguous tool patterns and counters used with conflicting settings.
//!
//! Problems are recorded by JSON Pointer; only when there are some is the text read again to
//! turn pointers into lines and columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::HashMap;
use serde_json::{Map, Value};

use super::compiled::{
    Arguments, Compiled, CompiledCheck, CompiledLimit, CompiledRule, RuleName, Units,
};
use super::condition::{self as cond, Comparison, Test};
use super::diagnostics::{Diagnostic, DiagnosticKind, InvalidPolicy};
use super::lint;
use super::model::{
    ApprovalCheck, Check, Condition, DefaultDecision, Limit, MAX_LIMIT, MAX_WINDOW_SECONDS, Op,
    PolicyDocument, Rule, Scope, Window, WindowUnit,
};
use super::path;
use super::pattern::{self, Pattern, PatternIndex};
use super::suggest::did_you_mean;
use crate::json::pointer::join;
use crate::json::source::{self, SourceProblemKind};

/// A problem located by pointer; turned into a [`Diagnostic`] once positions are known.
struct Problem {
    pointer: String,
    message: String,
    kind: DiagnosticKind,
    /// Point at the object key rather than its value (unknown and duplicate keys).
    at_key: bool,
}

/// Loads and compiles a policy document.
pub(crate) fn load(text: &str) -> Result<Compiled, InvalidPolicy> {
    let read = source::read(text, false);
    let mut problems: Vec<Problem> = read
        .problems
        .iter()
        .map(|p| Problem {
            pointer: p.pointer.clone(),
            message: p.message.clone(),
            kind: match p.kind {
                SourceProblemKind::Syntax => DiagnosticKind::Syntax,
                SourceProblemKind::DuplicateKey => DiagnosticKind::DuplicateKey,
                SourceProblemKind::TooDeep => DiagnosticKind::TooDeep,
            },
            at_key: p.kind == SourceProblemKind::DuplicateKey,
        })
        .collect();
    // Problems of the reader carry their own offsets (a duplicate key's is its second
    // occurrence, which a pointer cannot tell from the first).
    let mut offsets: Vec<Option<usize>> = read.problems.iter().map(|p| Some(p.offset)).collect();

    let compiled = match &read.value {
        Some(value) => {
            let mut walker = Walker::default();
            let compiled = walker.document(value);
            problems.extend(walker.problems);
            offsets.resize(problems.len(), None);
            compiled
        }
        None => None,
    };
    match compiled {
        Some(mut c) if problems.is_empty() => {
            c.places = lint::Places::scan(text);
            let findings = lint::document(&c.document);
            if !findings.is_empty() {
                let found: Vec<Problem> = findings
                    .into_iter()
                    .map(|f| Problem {
                        pointer: f.pointer,
                        message: f.message,
                        kind: f.kind,
                        at_key: false,
                    })
                    .collect();
                let offsets = vec![None; found.len()];
                c.warnings = locate(text, found, offsets).diagnostics().to_vec();
            }
            Ok(c)
        }
        _ => Err(locate(text, problems, offsets)),
    }
}

/// Turns pointer-located problems into diagnostics with lines and columns, in document order.
fn locate(text: &str, problems: Vec<Problem>, offsets: Vec<Option<usize>>) -> InvalidPolicy {
    let spans = source::spans_of(text, problems.iter().map(|p| p.pointer.as_str()));
    let mut at: Vec<(usize, Problem)> = problems
        .into_iter()
        .zip(offsets)
        .map(|(p, offset)| {
            let offset = offset.unwrap_or_else(|| {
                if p.at_key { spans.key_offset(&p.pointer) } else { spans.value_offset(&p.pointer) }
            });
            (offset.min(text.len()), p)
        })
        .collect();
    at.sort_by_key(|(offset, _)| *offset);
    // One sweep over the text for all problems (in offset order), so that thousands of
    // diagnostics in a large document cost one pass, not one pass each.
    let (mut pos, mut line, mut column) = (0usize, 1usize, 1usize);
    let located = at
        .into_iter()
        .map(|(offset, p)| {
            for c in text.get(pos..offset).unwrap_or("").chars() {
                if c == '\n' {
                    line += 1;
                    column = 1;
                } else {
                    column += 1;
                }
            }
            pos = pos.max(offset);
            Diagnostic::new(line, column, p.pointer, p.message, p.kind)
        })
        .collect();
    InvalidPolicy::new(located)
}

/// The `format` values that argument schemas assert (draft 2020-12, as the validator checks
/// them). Any other `format` is a load error: it would silently check nothing.
pub(crate) const FORMATS: &[&str] = &[
    "date",
    "date-time",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "iri",
    "iri-reference",
    "json-pointer",
    "regex",
    "relative-json-pointer",
    "time",
    "uri",
    "uri-reference",
    "uri-template",
    "uuid",
];

/// The validator of an `arguments` schema: draft 2020-12, `format` asserted (not merely
/// annotated), an unknown `format` an error.
pub(crate) fn argument_validator(
    schema: &Value,
) -> Result<jsonschema::Validator, jsonschema::ValidationError<'_>> {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(schema)
}

#[derive(Default)]
struct Walker {
    problems: Vec<Problem>,
    limits: Vec<CompiledLimit>,
    /// The first limit seen for each counter: its pointer, window, scope and sliding flag.
    counters: BTreeMap<String, (Arc<str>, u64, Scope, bool)>,
    /// Regexes compiled so far, by pattern: policies often repeat one (compiling costs 10 to
    /// 150 µs; a clone shares the compiled program).
    regexes: HashMap<String, regex::Regex>,
}

const DOCUMENT_KEYS: &[&str] =
    &["$schema", "version", "default", "description", "hide", "all_tools", "tools"];
const RULE_KEYS: &[&str] =
    &["description", "arguments", "require", "deny_if", "approve_if", "limits"];
const CHECK_KEYS: &[&str] = &["name", "conditions", "on_deny"];
const APPROVAL_KEYS: &[&str] = &["name", "conditions", "reason"];
const CONDITION_KEYS: &[&str] = &["path", "op", "value"];
const LIMIT_KEYS: &[&str] =
    &["counter", "window", "max", "scope", "increment", "increment_from", "sliding"];
const OPS: &[&str] = &[
    "eq",
    "neq",
    "in",
    "not_in",
    "lt",
    "lte",
    "gt",
    "gte",
    "contains",
    "starts_with",
    "ends_with",
    "regex",
    "exists",
    "within",
];
const WINDOWS: &[&str] = &["second", "minute", "hour", "day"];
const SCOPES: &[&str] = &["grant", "session", "global"];

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short rendering of a value for messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(37).collect();
        format!("{cut}...")
    } else {
        s
    }
}

impl Walker {
    fn problem(&mut self, pointer: impl Into<String>, kind: DiagnosticKind, message: String) {
        self.problems.push(Problem { pointer: pointer.into(), message, kind, at_key: false });
    }

    fn wrong_type(&mut self, ptr: &str, expected: &str, v: &Value) {
        self.problem(
            ptr,
            DiagnosticKind::WrongType,
            format!("expected {expected}, found {} `{}`", type_name(v), show(v)),
        );
    }

    /// Checks that `v` is an object with only `allowed` keys and all `required` ones.
    fn object<'v>(
        &mut self,
        v: &'v Value,
        ptr: &str,
        what: &str,
        allowed: &[&str],
        required: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            self.wrong_type(ptr, &format!("{what} (a JSON object)"), v);
            return None;
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = did_you_mean(key, allowed)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        format!(
                            "; {what} takes {}",
                            allowed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                        )
                    });
                self.problems.push(Problem {
                    pointer: join(ptr, key),
                    message: format!("unknown key `{key}` in {what}{hint}"),
                    kind: DiagnosticKind::UnknownKey,
                    at_key: true,
                });
            }
        }
        for key in required {
            if !map.contains_key(*key) {
                self.problem(
                    ptr,
                    DiagnosticKind::MissingKey,
                    format!("missing required key `{key}` in {what}"),
                );
            }
        }
        Some(map)
    }

    fn string(&mut self, v: &Value, ptr: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.wrong_type(ptr, "a string", v);
                None
            }
        }
    }

    fn opt_string(&mut self, map: &Map<String, Value>, key: &str, ptr: &str) -> Option<String> {
        map.get(key).and_then(|v| self.string(v, &join(ptr, key)))
    }

    fn array<'v>(&mut self, v: &'v Value, ptr: &str, what: &str) -> Option<&'v Vec<Value>> {
        match v {
            Value::Array(items) => Some(items),
            _ => {
                self.wrong_type(ptr, &format!("an array of {what}"), v);
                None
            }
        }
    }

    fn choice(&mut self, v: &Value, ptr: &str, what: &str, choices: &[&str]) -> Option<String> {
        let s = match v {
            Value::String(s) => s,
            _ => {
                let expected = format!(
                    "{what}: one of {}",
                    choices.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
                );
                self.wrong_type(ptr, &expected, v);
                return None;
            }
        };
        if choices.contains(&s.as_str()) {
            return Some(s.clone());
        }
        let hint =
            did_you_mean(s, choices).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
        self.problem(
            ptr,
            DiagnosticKind::InvalidValue,
            format!(
                "unknown {what} `{s}`: expected one of {}{hint}",
                choices.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ),
        );
        None
    }

    /// An integer in `min..=max`, written as an integer.
    fn integer(&mut self, v: &Value, ptr: &str, what: &str, min: u64, max: u64) -> Option<u64> {
        let range =
            if max == MAX_LIMIT { format!("{min} to 2^53") } else { format!("{min} to {max}") };
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(x) if (min..=max).contains(&x) => Some(x),
                _ => {
                    let why = if n.is_f64() {
                        "a fractional number".to_owned()
                    } else {
                        format!("`{n}`")
                    };
                    self.problem(
                        ptr,
                        DiagnosticKind::InvalidValue,
                        format!("{what} must be a whole number from {range}, found {why}"),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(ptr, &format!("{what}: a whole number from {range}"), v);
                None
            }
        }
    }

    fn document(&mut self, v: &Value) -> Option<Compiled> {
        let map =
            self.object(v, "", "a policy document", DOCUMENT_KEYS, &["version", "default"])?;

        let schema = self.opt_string(map, "$schema", "");
        let version = match map.get("version") {
            Some(Value::String(s)) if s == "1" => Some(s.clone()),
            Some(Value::String(s)) => {
                self.problem(
                    "/version",
                    DiagnosticKind::UnsupportedVersion,
                    format!("unsupported policy version `{s}`: the supported version is \"1\""),
                );
                None
            }
            Some(other) => {
                self.wrong_type("/version", "the string \"1\" (the supported version)", other);
                None
            }
            None => None,
        };
        let default = map.get("default").and_then(|d| {
            self.choice(d, "/default", "default decision", &["allow", "deny"])
                .map(|s| if s == "allow" { DefaultDecision::Allow } else { DefaultDecision::Deny })
        });
        let description = self.opt_string(map, "description", "");

        let mut hide = Vec::new();
        let mut hide_exact: HashMap<Box<str>, usize> = HashMap::new();
        let mut hide_patterns = Vec::new();
        if let Some(h) = map.get("hide") {
            if let Some(items) = self.array(h, "/hide", "tool names or patterns") {
                for (i, item) in items.iter().enumerate() {
                    let ptr = format!("/hide/{i}");
                    let Some(s) = self.string(item, &ptr) else { continue };
                    if s.is_empty() {
                        self.problem(
                            &ptr,
                            DiagnosticKind::InvalidValue,
                            "empty tool pattern: write a tool name, or `*` to hide every tool"
                                .to_owned(),
                        );
                        continue;
                    }
                    if pattern::is_pattern(&s) {
                        hide_patterns.push((Pattern::new(&s), i));
                    } else {
                        hide_exact.entry(s.clone().into_boxed_str()).or_insert(i);
                    }
                    hide.push(s);
                }
            }
        }

        let all_tools = map
            .get("all_tools")
            .and_then(|r| self.rule(r, "/all_tools", RuleName::Pointer("/all_tools".into())));

        let mut tools = BTreeMap::new();
        let mut rules = Vec::new();
        let mut rule_keys: Vec<Box<str>> = Vec::new();
        let mut exact = HashMap::new();
        let mut patterns: Vec<(Pattern, usize, String)> = Vec::new();
        match map.get("tools") {
            Some(Value::Object(entries)) => {
                for (key, rule_value) in entries {
                    let ptr = join("/tools", key);
                    if key.is_empty() {
                        self.problems.push(Problem {
                            pointer: ptr.clone(),
                            message: "empty tool pattern: a `tools` key is a tool name or a \
                                      pattern with `*`"
                                .to_owned(),
                            kind: DiagnosticKind::InvalidValue,
                            at_key: true,
                        });
                        continue;
                    }
                    let is_pattern = pattern::is_pattern(key);
                    let name = if is_pattern {
                        RuleName::Pointer(ptr.as_str().into())
                    } else {
                        RuleName::ExactTool
                    };
                    let Some((model, compiled)) = self.rule(rule_value, &ptr, name) else {
                        continue;
                    };
                    let index = rules.len();
                    rules.push(compiled);
                    rule_keys.push(key.as_str().into());
                    if is_pattern {
                        patterns.push((Pattern::new(key), index, key.clone()));
                    } else {
                        exact.insert(key.clone().into_boxed_str(), index);
                    }
                    tools.insert(key.clone(), model);
                }
            }
            Some(other) => self.wrong_type("/tools", "an object of tool names to rules", other),
            None => {}
        }
        self.check_ambiguity(&patterns);

        let document = PolicyDocument {
            schema,
            version: version?,
            default: default?,
            description,
            hide,
            all_tools: all_tools.as_ref().map(|(m, _)| m.clone()),
            tools,
        };
        if !self.problems.is_empty() {
            return None;
        }
        Some(Compiled {
            default: document.default,
            document,
            digest: std::sync::OnceLock::new(),
            hide_exact,
            hide_patterns,
            exact,
            patterns: PatternIndex::new(patterns.iter().map(|(_, i, key)| (key.as_str(), *i))),
            rules,
            rule_keys,
            all_tools: all_tools.map(|(_, c)| c),
            default_rule: CompiledRule::empty(RuleName::Pointer("/default".into())),
            limits: std::mem::take(&mut self.limits),
            warnings: Vec::new(),
            places: Default::default(),
        })
    }

    /// Two patterns with the same number of literal characters that can match one name.
    fn check_ambiguity(&mut self, patterns: &[(Pattern, usize, String)]) {
        let mut by_specificity: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for (p, _, key) in patterns {
            by_specificity.entry(p.specificity()).or_default().push(key);
        }
        for keys in by_specificity.values() {
            for (i, a) in keys.iter().enumerate() {
                for b in keys.iter().skip(i + 1) {
                    if let Some(example) = pattern::common_match(a, b) {
                        self.problem(
                            join("/tools", b),
                            DiagnosticKind::AmbiguousPattern,
                            format!(
                                "tool patterns `{a}` and `{b}` are equally specific and both \
                                 match `{example}`: make one more specific, or add an exact \
                                 rule for the tools they share"
                            ),
                        );
                    }
                }
            }
        }
    }

    fn rule(&mut self, v: &Value, ptr: &str, name: RuleName) -> Option<(Rule, CompiledRule)> {
        let map = self.object(v, ptr, "a rule", RULE_KEYS, &[])?;
        let before = self.problems.len();
        let mut model = Rule::default();
        let mut compiled = CompiledRule::empty(name);
        model.description = self.opt_string(map, "description", ptr);

        if let Some(schema) = map.get("arguments") {
            let aptr = join(ptr, "arguments");
            compiled.arguments = self.arguments_schema(schema, &aptr);
            model.arguments = Some(schema.clone());
        }
        for (key, message_key) in
            [("require", "on_deny"), ("deny_if", "on_deny"), ("approve_if", "reason")]
        {
            let Some(list) = map.get(key) else { continue };
            let lptr = join(ptr, key);
            let Some(items) = self.array(list, &lptr, "checks") else { continue };
            for (i, item) in items.iter().enumerate() {
                let cptr = format!("{lptr}/{i}");
                let Some((name, conditions, message, compiled_conditions)) =
                    self.check(item, &cptr, message_key)
                else {
                    continue;
                };
                let default_message = match (key, &name) {
                    ("approve_if", Some(n)) => format!("approval required by check `{n}`"),
                    ("approve_if", None) => format!("approval required by `{cptr}`"),
                    ("require", Some(n)) => format!("the call does not meet requirement `{n}`"),
                    ("require", None) => {
                        format!("the call does not meet the requirement at `{cptr}`")
                    }
                    (_, Some(n)) => format!("denied by check `{n}`"),
                    (_, None) => format!("denied by `{cptr}`"),
                };
                let check = CompiledCheck {
                    pointer: cptr.as_str().into(),
                    message: message.clone().unwrap_or(default_message).into(),
                    conditions: compiled_conditions,
                };
                match key {
                    "require" => {
                        model.require.push(Check { name, conditions, on_deny: message });
                        compiled.require.push(check);
                    }
                    "deny_if" => {
                        model.deny_if.push(Check { name, conditions, on_deny: message });
                        compiled.deny_if.push(check);
                    }
                    _ => {
                        model.approve_if.push(ApprovalCheck { name, conditions, reason: message });
                        compiled.approve_if.push(check);
                    }
                }
            }
        }
        if let Some(list) = map.get("limits") {
            let lptr = join(ptr, "limits");
            if let Some(items) = self.array(list, &lptr, "limits") {
                for (i, item) in items.iter().enumerate() {
                    if let Some((limit, index)) = self.limit(item, &format!("{lptr}/{i}")) {
                        model.limits.push(limit);
                        compiled.limits.push(index);
                    }
                }
            }
        }
        (self.problems.len() == before).then_some((model, compiled))
    }

    fn arguments_schema(&mut self, schema: &Value, ptr: &str) -> Option<Arguments> {
        if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
            self.wrong_type(ptr, "a JSON Schema (an object or a boolean)", schema);
            return None;
        }
        let mut bad = false;
        if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
            let at = e.instance_path().as_str();
            let message = schema_message(at, e.instance(), &e.to_string());
            self.problem(format!("{ptr}{at}"), DiagnosticKind::InvalidSchema, message);
            bad = true;
        }
        if bad {
            return None;
        }
        match argument_validator(schema) {
            Ok(validator) => Some(Arguments { pointer: ptr.into(), validator }),
            Err(e) => {
                let at = e.schema_path().as_str();
                let unknown_format = match (e.kind(), e.instance().as_ref()) {
                    (jsonschema::error::ValidationErrorKind::Custom { .. }, Value::String(f))
                        if at.ends_with("/format") =>
                    {
                        Some(f.clone())
                    }
                    _ => None,
                };
                match unknown_format {
                    Some(format) => self.problem(
                        format!("{ptr}{at}"),
                        DiagnosticKind::UnknownFormat,
                        format!(
                            "unknown `format` `{format}` in `arguments`: an argument could never \
                             be checked against it; the supported formats are {}",
                            FORMATS.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
                        ),
                    ),
                    None => self.problem(
                        ptr,
                        DiagnosticKind::InvalidSchema,
                        format!("invalid JSON Schema for `arguments`: {}", flatten(&e.to_string())),
                    ),
                }
                None
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn check(
        &mut self,
        v: &Value,
        ptr: &str,
        message_key: &str,
    ) -> Option<(Option<String>, Vec<Condition>, Option<String>, Vec<cond::Condition>)> {
        let (keys, what) = if message_key == "reason" {
            (APPROVAL_KEYS, "an `approve_if` check")
        } else {
            (CHECK_KEYS, "a check")
        };
        let map = self.object(v, ptr, what, keys, &["conditions"])?;
        let before = self.problems.len();
        let name = self.opt_string(map, "name", ptr);
        let message = self.opt_string(map, message_key, ptr);
        let mut conditions = Vec::new();
        let mut compiled = Vec::new();
        if let Some(list) = map.get("conditions") {
            let cptr = join(ptr, "conditions");
            if let Some(items) = self.array(list, &cptr, "conditions") {
                for (i, item) in items.iter().enumerate() {
                    if let Some((m, c)) = self.condition(item, &format!("{cptr}/{i}")) {
                        conditions.push(m);
                        compiled.push(c);
                    }
                }
            }
        }
        (self.problems.len() == before).then_some((name, conditions, message, compiled))
    }

    fn path(&mut self, v: &Value, ptr: &str) -> Option<(String, path::Path)> {
        let text = self.string(v, ptr)?;
        match path::parse(&text) {
            Ok(p) => Some((text, p)),
            Err(message) => {
                // A bare argument name (`amount`): the path most likely meant.
                let args = format!("args.{text}");
                let message = if !text.contains('.') && path::parse(&args).is_ok() {
                    format!("{message}; did you mean `{args}`?")
                } else {
                    message
                };
                self.problem(ptr, DiagnosticKind::InvalidPath, message);
                None
            }
        }
    }

    fn condition(&mut self, v: &Value, ptr: &str) -> Option<(Condition, cond::Condition)> {
        let map = self.object(v, ptr, "a condition", CONDITION_KEYS, &["path", "op"])?;
        let path = map.get("path").and_then(|p| self.path(p, &join(ptr, "path")));
        let op = map.get("op").and_then(|o| self.choice(o, &join(ptr, "op"), "op", OPS));
        let op = op.and_then(|s| Op::ALL.into_iter().find(|o| o.as_str() == s));
        let value = map.get("value");
        let vptr = join(ptr, "value");
        let test = match op {
            Some(op) => self.test(op, value, &vptr, ptr),
            None => None,
        };
        let ((text, path), op, test) = (path?, op?, test?);
        Some((Condition { path: text, op, value: value.cloned() }, cond::Condition { path, test }))
    }

    /// Compiles the operand of `op`, checking its type.
    fn test(&mut self, op: Op, value: Option<&Value>, vptr: &str, ptr: &str) -> Option<Test> {
        let name = op.as_str();
        let Some(value) = value else {
            if op == Op::Exists {
                return Some(Test::Exists(true));
            }
            self.problem(
                ptr,
                DiagnosticKind::MissingKey,
                format!("missing required key `value`: op `{name}` compares with a value"),
            );
            return None;
        };
        let test = match (op, value) {
            (Op::Eq, v) => Test::Eq(v.clone()),
            (Op::Neq, v) => Test::Neq(v.clone()),
            (Op::In, Value::Array(vs)) => Test::In(vs.clone()),
            (Op::NotIn, Value::Array(vs)) => Test::NotIn(vs.clone()),
            (Op::Lt | Op::Lte | Op::Gt | Op::Gte, Value::Number(n)) => {
                let c = match op {
                    Op::Lt => Comparison::Lt,
                    Op::Lte => Comparison::Lte,
                    Op::Gt => Comparison::Gt,
                    _ => Comparison::Gte,
                };
                Test::Compare(c, n.clone())
            }
            (Op::Contains, v) => Test::Contains(v.clone()),
            (Op::StartsWith, Value::String(s)) => Test::StartsWith(s.as_str().into()),
            (Op::EndsWith, Value::String(s)) => Test::EndsWith(s.as_str().into()),
            (Op::Regex, Value::String(s)) => {
                if let Some(re) = self.regexes.get(s) {
                    return Some(Test::Regex(re.clone()));
                }
                // A nest limit well below the crate's default keeps the parser's recursion shallow
                // on any thread's stack (`a***...` nests one level per `*`).
                match regex::RegexBuilder::new(s).size_limit(1 << 20).nest_limit(64).build() {
                    Ok(re) => {
                        self.regexes.insert(s.clone(), re.clone());
                        Test::Regex(re)
                    }
                    Err(e) => {
                        self.problem(
                            vptr,
                            DiagnosticKind::InvalidRegex,
                            format!("invalid regex `{s}`: {e}"),
                        );
                        return None;
                    }
                }
            }
            (Op::Exists, Value::Bool(b)) => Test::Exists(*b),
            (Op::Within, Value::String(s)) => Test::Within(vec![self.directory(s, vptr)?]),
            (Op::Within, Value::Array(items)) if !items.is_empty() => {
                let mut dirs = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let iptr = format!("{vptr}/{i}");
                    match item {
                        Value::String(s) => {
                            if let Some(d) = self.directory(s, &iptr) {
                                dirs.push(d);
                            }
                        }
                        other => self.wrong_type(&iptr, "an absolute directory path", other),
                    }
                }
                if dirs.len() != items.len() {
                    return None;
                }
                Test::Within(dirs)
            }
            (Op::Within, Value::Array(_)) => {
                self.problem(
                    vptr,
                    DiagnosticKind::InvalidValue,
                    "op `within` needs at least one directory".to_owned(),
                );
                return None;
            }
            (_, v) => {
                let expected = match op {
                    Op::In | Op::NotIn => "an array of values",
                    Op::Lt | Op::Lte | Op::Gt | Op::Gte => "a number",
                    Op::StartsWith | Op::EndsWith => "a string",
                    Op::Regex => "a regex (a string)",
                    Op::Exists => "a boolean",
                    _ => "an absolute path or an array of them",
                };
                self.wrong_type(vptr, &format!("{expected} for op `{name}`"), v);
                return None;
            }
        };
        Some(test)
    }

    fn directory(&mut self, s: &str, ptr: &str) -> Option<Vec<Box<str>>> {
        if !s.starts_with('/') {
            self.problem(
                ptr,
                DiagnosticKind::InvalidValue,
                format!("`within` needs absolute directories, and `{s}` does not start with `/`"),
            );
            return None;
        }
        Some(cond::normalize(s).into_iter().map(Into::into).collect())
    }

    fn limit(&mut self, v: &Value, ptr: &str) -> Option<(Limit, u32)> {
        let map = self.object(v, ptr, "a limit", LIMIT_KEYS, &["counter", "window", "max"])?;
        let before = self.problems.len();
        let counter = map.get("counter").and_then(|c| self.string(c, &join(ptr, "counter")));
        if counter.as_deref() == Some("") {
            self.problem(
                join(ptr, "counter"),
                DiagnosticKind::InvalidValue,
                "empty counter name: name the counter, for example `\"calls\"`".to_owned(),
            );
        }
        let wptr = join(ptr, "window");
        let window = match map.get("window") {
            Some(Value::String(w)) if !WINDOWS.contains(&w.as_str()) => {
                self.problem(&wptr, DiagnosticKind::InvalidValue, window_message(w));
                None
            }
            Some(w @ Value::String(_)) => self.choice(w, &wptr, "window", WINDOWS).map(|s| {
                Window::Named(match s.as_str() {
                    "second" => WindowUnit::Second,
                    "minute" => WindowUnit::Minute,
                    "hour" => WindowUnit::Hour,
                    _ => WindowUnit::Day,
                })
            }),
            Some(w @ Value::Number(_)) => self
                .integer(w, &wptr, "a window in seconds", 1, MAX_WINDOW_SECONDS)
                .map(Window::Seconds),
            Some(w) => {
                self.wrong_type(
                    &wptr,
                    "a window: \"second\", \"minute\", \"hour\", \"day\" or a number of seconds",
                    w,
                );
                None
            }
            None => None,
        };
        let max =
            map.get("max").and_then(|m| self.integer(m, &join(ptr, "max"), "`max`", 1, MAX_LIMIT));
        let scope = match map.get("scope") {
            Some(s) => {
                self.choice(s, &join(ptr, "scope"), "scope", SCOPES).map(|s| match s.as_str() {
                    "session" => Scope::Session,
                    "global" => Scope::Global,
                    _ => Scope::Grant,
                })
            }
            None => Some(Scope::Grant),
        };
        let iptr = join(ptr, "increment");
        let increment =
            map.get("increment").and_then(|i| self.integer(i, &iptr, "`increment`", 1, MAX_LIMIT));
        if let (Some(inc), Some(max)) = (increment, max) {
            if inc > max {
                self.problem(
                    &iptr,
                    DiagnosticKind::InvalidValue,
                    format!(
                        "`increment` {inc} is above `max` {max}: such a limit could never admit a call"
                    ),
                );
            }
        }
        let fptr = join(ptr, "increment_from");
        let increment_from = map.get("increment_from").and_then(|p| self.path(p, &fptr));
        if map.contains_key("increment") && map.contains_key("increment_from") {
            self.problem(
                &fptr,
                DiagnosticKind::InvalidValue,
                "a limit takes `increment` or `increment_from`, not both".to_owned(),
            );
        }
        let sliding = match map.get("sliding") {
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.wrong_type(&join(ptr, "sliding"), "a boolean", other);
                None
            }
            None => Some(false),
        };
        if self.problems.len() != before {
            return None;
        }
        let (counter, window, max, scope, sliding) = (counter?, window?, max?, scope?, sliding?);
        let pointer: Arc<str> = ptr.into();
        match self.counters.get(&counter) {
            Some((first, w, s, sl)) => {
                let mut diffs = Vec::new();
                if *w != window.seconds() {
                    diffs.push(format!("`window` {}s here, {w}s there", window.seconds()));
                }
                if *s != scope {
                    diffs.push(format!(
                        "`scope` `{}` here, `{}` there",
                        scope.as_str(),
                        s.as_str()
                    ));
                }
                if *sl != sliding {
                    diffs.push(format!("`sliding` {sliding} here, {sl} there"));
                }
                if !diffs.is_empty() {
                    let first = first.clone();
                    self.problem(
                        ptr,
                        DiagnosticKind::ConflictingCounter,
                        format!(
                            "counter `{counter}` is also used at `{first}` with other settings ({}): \
                             limits that share a counter must agree on `window`, `scope` and \
                             `sliding`",
                            diffs.join("; ")
                        ),
                    );
                    return None;
                }
            }
            None => {
                self.counters
                    .insert(counter.clone(), (pointer.clone(), window.seconds(), scope, sliding));
            }
        }
        let units = match &increment_from {
            Some((_, path)) => Units::From { path: path.clone(), pointer: fptr.as_str().into() },
            None => Units::Fixed(increment.unwrap_or(1)),
        };
        let index = u32::try_from(self.limits.len()).ok()?;
        self.limits.push(CompiledLimit {
            pointer,
            counter: counter.as_str().into(),
            window_seconds: window.seconds(),
            sliding,
            scope,
            max,
            units,
        });
        Some((
            Limit {
                counter,
                window,
                max,
                scope,
                increment,
                increment_from: increment_from.map(|(t, _)| t),
                sliding,
            },
            index,
        ))
    }
}

/// One line of an error message from a dependency.
/// The JSON Schema type names, for `"type"` in an `arguments` schema.
const SCHEMA_TYPES: &[&str] =
    &["array", "boolean", "integer", "null", "number", "object", "string"];

/// What is wrong with an `arguments` schema that the meta-schema rejects: the keyword (the last
/// token of `at`) and its value, rather than the meta-schema's `anyOf` that rejected it.
fn schema_message(at: &str, value: &Value, fallback: &str) -> String {
    let keyword = at.rsplit('/').next().unwrap_or("").replace("~1", "/").replace("~0", "~");
    let shown = match value {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    if keyword == "type" {
        let bad = match value {
            Value::String(s) => Some(s.as_str()),
            Value::Array(items) => {
                items.iter().filter_map(Value::as_str).find(|s| !SCHEMA_TYPES.contains(s))
            }
            _ => None,
        };
        let hint = bad
            .and_then(|b| did_you_mean(b, SCHEMA_TYPES))
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        return format!(
            "invalid JSON Schema for `arguments`: keyword `type` has the value `{}`, which is not \
             a JSON Schema type: expected one of {} (or an array of them){hint}",
            bad.unwrap_or(&shown),
            SCHEMA_TYPES.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        );
    }
    if keyword.is_empty() || keyword.parse::<usize>().is_ok() {
        return format!("invalid JSON Schema for `arguments`: {}", flatten(fallback));
    }
    format!(
        "invalid JSON Schema for `arguments`: keyword `{keyword}` cannot have the value `{shown}`: {}",
        flatten(fallback)
    )
}

/// What a window that is neither a name nor a number means, and what to write instead.
fn window_message(w: &str) -> String {
    let t = w.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let per = match unit.trim().to_ascii_lowercase().as_str() {
        "" => Some(1),
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1u64),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => Some(3600),
        "d" | "day" | "days" => Some(86_400),
        _ => None,
    };
    let seconds = n.parse::<u64>().ok().zip(per).and_then(|(n, per)| n.checked_mul(per));
    let hint = match seconds {
        Some(s) if (1..=MAX_WINDOW_SECONDS).contains(&s) => {
            format!("; write `{s}` (a number, not a string) for {w:?}")
        }
        _ => did_you_mean(w, WINDOWS).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default(),
    };
    format!(
        "unknown window `{w}`: a window is a name (`second`, `minute`, `hour`, `day`) or a number of \
         whole seconds (`60`){hint}"
    )
}

fn flatten(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
