//! The texts of the evaluator's own decisions: unknown tools, malformed calls, approvals, limits.
//!
//! Like every decision message they name the call's parts (a tool, a counter, the JSON type of a
//! value) and never quote a value of the call: see `text.rs`, which also bounds their length.

use serde_json::Value;

use super::decision::{Decision, DecisionKind, Human, RuleRef, Text};
use super::text;
use crate::policy::compiled::{CompiledLimit, Units};
use crate::policy::model::Scope;

/// The message of a call that no rule allows under `default: deny`, and of a hidden tool: a
/// hidden tool answers exactly as a tool nobody has heard of, so that the hide list stays
/// secret (the rule pointer, `/hide/N`, still tells the operator).
pub(super) const UNKNOWN_TOOL: &str = "no rule allows this tool and the default is deny";

/// The decision when the clock reads a time outside the supported range.
pub(super) fn clock_out_of_range(tool: &str) -> Decision<'_> {
    Decision::new(
        DecisionKind::Deny,
        tool,
        RuleRef::Static(""),
        Text::Static(
            "the clock is out of range: it reads a time outside 1970 to the end of 2500, so no \
             limit or approval can be decided; the call is denied (fail-closed)",
        ),
    )
}

/// The decision for arguments nested deeper than the steps that walk them accept.
pub(super) fn too_deep(tool: &str) -> Decision<'_> {
    Decision::new(
        DecisionKind::Deny,
        tool,
        RuleRef::Static(""),
        Text::Static("malformed call: the arguments are nested more than 128 levels deep"),
    )
}

/// The decision for `arguments` or `context` (`what`) that is not an object.
pub(super) fn not_an_object<'a>(tool: &'a str, what: &str, v: &Value) -> Decision<'a> {
    Decision::new(
        DecisionKind::Deny,
        tool,
        RuleRef::Static(""),
        Text::Owned(format!(
            "malformed call: `{what}` must be a JSON object, found {}",
            kind_of(v)
        )),
    )
}

/// Step 6: a human refused this exact call.
pub(super) fn refused_by_human<'a>(tool: &'a str, rule: RuleRef<'a>) -> Decision<'a> {
    let mut d = Decision::new(
        DecisionKind::Deny,
        tool,
        rule,
        Text::Static("a human refused to approve this exact call"),
    );
    d.human = Human::Refused;
    d
}

/// Step 6: the call carries a key that does not approve it.
pub(super) fn invalid_key<'a>(tool: &'a str, rule: RuleRef<'a>) -> Decision<'a> {
    Decision::new(
        DecisionKind::Deny,
        tool,
        rule,
        Text::Static(
            "the approval key is not valid for this call: it was used already, has expired, or \
             was issued for another call, grant, session or policy",
        ),
    )
}

/// Step 7: the units of `limit` (with `earlier` units that earlier limits put on the same
/// counter) are more than its `max`.
pub(super) fn never_admitted(limit: &CompiledLimit, units: u64, earlier: u64) -> String {
    // Units taken from the call are a value of the call: not quoted.
    let needs = match limit.units {
        Units::Fixed(_) => format!("{units} units"),
        Units::From { .. } => "more units (taken from the call)".to_owned(),
    };
    text::bounded_message(format!(
        "this call needs {needs} of counter `{}`{} but the limit admits at most {} per window: it \
         can never be admitted",
        text::bounded(&limit.counter, 256),
        if earlier > 0 {
            format!(" after {earlier} charged by earlier limits")
        } else {
            String::new()
        },
        limit.max
    ))
}

/// Step 7: the store refused the charge of `limit`.
pub(super) fn limit_reached(limit: &CompiledLimit) -> String {
    format!(
        "limit reached: counter `{}` admits {} per {} {}",
        limit.counter,
        limit.max,
        window_words(limit.window_seconds),
        scope_words(limit.scope)
    )
}

/// A window's length in words: `minute`, `hour`, `90 seconds`.
pub(super) fn window_words(seconds: u64) -> String {
    match seconds {
        1 => "second".to_owned(),
        60 => "minute".to_owned(),
        3600 => "hour".to_owned(),
        86_400 => "day".to_owned(),
        s => format!("{s} seconds"),
    }
}

/// A limit's scope in words: `per grant`.
pub(super) fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Grant => "per grant",
        Scope::Session => "per session",
        Scope::Global => "for all callers",
    }
}

/// A JSON value's kind in words, for messages (`a string`): never the value.
pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
