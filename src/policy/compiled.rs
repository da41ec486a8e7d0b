//! The compiled form of a policy: what the evaluator reads on every call.

use std::sync::Arc;

use hashbrown::HashMap;

use super::condition::Condition;
use super::model::{DefaultDecision, PolicyDocument, Scope};
use super::path::Path;
use super::pattern::{Pattern, PatternIndex};

/// A policy compiled for evaluation: schemas built, regexes checked (compiled on first use),
/// tools indexed.
pub(crate) struct Compiled {
    pub(crate) document: PolicyDocument,
    /// The digest, computed at first use (it costs a full serialisation of the document).
    pub(crate) digest: std::sync::OnceLock<String>,
    pub(crate) default: DefaultDecision,
    /// Exact `hide` entries, each with the index of its first occurrence.
    pub(crate) hide_exact: HashMap<Box<str>, usize>,
    /// Pattern `hide` entries with their indexes, in document order.
    pub(crate) hide_patterns: Vec<(Pattern, usize)>,
    /// Exact `tools` keys to their rule.
    pub(crate) exact: super::exact::ExactIndex,
    /// Pattern `tools` keys with their rule.
    pub(crate) patterns: PatternIndex,
    pub(crate) rules: Vec<CompiledRule>,
    /// The `tools` key of each rule.
    pub(crate) rule_keys: Vec<Box<str>>,
    pub(crate) all_tools: Option<CompiledRule>,
    /// The empty rule of `default: allow`.
    pub(crate) default_rule: CompiledRule,
    /// Every limit of the policy, referenced by index from the rules.
    pub(crate) limits: Vec<CompiledLimit>,
    /// The lint's warnings, located, in document order.
    pub(crate) warnings: Vec<super::Diagnostic>,
    /// Where `tools` keys, `hide` entries and `default` stand in the text, for the tool-list lint.
    pub(crate) places: super::lint::Places,
}

/// What identifies a rule in decisions.
#[derive(Debug, Clone)]
pub(crate) enum RuleName {
    /// An exact `tools` key: the pointer is `/tools/` followed by the escaped tool name.
    ExactTool,
    /// Any other rule, with its pointer.
    Pointer(Arc<str>),
}

pub(crate) struct CompiledRule {
    pub(crate) name: RuleName,
    /// What a call under this rule (with `all_tools`) comes to when it has no check: set once
    /// the policy is compiled (see [`Compiled::set_fast`]).
    pub(crate) fast: Fast,
    pub(crate) arguments: Option<Arguments>,
    pub(crate) require: Vec<CompiledCheck>,
    pub(crate) deny_if: Vec<CompiledCheck>,
    pub(crate) approve_if: Vec<CompiledCheck>,
    /// Indexes into [`Compiled::limits`].
    pub(crate) limits: Vec<u32>,
}

impl Compiled {
    /// SHA-256 of the document's model in canonical JSON: spelling out a default
    /// (`"scope": "grant"`), reordering keys or reformatting does not change it.
    pub(crate) fn digest(&self) -> &str {
        self.digest.get_or_init(|| match serde_json::to_value(&self.document) {
            Ok(normal) => crate::json::canonical::digest_hex(&normal),
            // Serialising plain data cannot fail; hash the debug form rather than nothing.
            Err(_) => crate::json::canonical::hex(&<sha2::Sha256 as sha2::Digest>::digest(
                format!("{:?}", self.document).as_bytes(),
            )),
        })
    }
}

impl CompiledRule {
    pub(crate) fn empty(name: RuleName) -> Self {
        CompiledRule {
            name,
            arguments: None,
            require: Vec::new(),
            deny_if: Vec::new(),
            approve_if: Vec::new(),
            limits: Vec::new(),
            fast: Fast::No,
        }
    }

    /// Whether the rule has a check of steps 3 to 6 (an argument schema, `require`, `deny_if`,
    /// `approve_if`).
    fn has_checks(&self) -> bool {
        self.arguments.is_some()
            || !self.require.is_empty()
            || !self.deny_if.is_empty()
            || !self.approve_if.is_empty()
    }
}

/// The evaluator's shortcut for a rule without checks, found at load: a call under such a rule
/// passes steps 3 to 6 whatever its arguments, so only the limits are left to decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// A check, or more than one limit, or units taken from the call: every step, in order.
    No,
    /// No check and no limit: allowed.
    Allow,
    /// No check and one limit of fixed `units` (at most its `max`), at index `id` of
    /// [`Compiled::limits`]: charged alone.
    OneLimit { id: u32, units: u64 },
}

impl Compiled {
    /// Sets the [`Fast`] shortcut of every rule, `all_tools` counted in.
    pub(crate) fn set_fast(&mut self) {
        let all = self.all_tools.as_ref();
        let limits = &self.limits;
        let fast = |r: &CompiledRule| -> Fast {
            if r.has_checks() || all.is_some_and(CompiledRule::has_checks) {
                return Fast::No;
            }
            let mut ids = r.limits.iter().chain(all.map_or(&[][..], |a| &a.limits[..]));
            match (ids.next(), ids.next()) {
                (None, _) => Fast::Allow,
                (Some(&id), None) => match limits.get(id as usize) {
                    Some(CompiledLimit { units: Units::Fixed(units), max, .. }) if units <= max => {
                        Fast::OneLimit { id, units: *units }
                    }
                    _ => Fast::No,
                },
                _ => Fast::No,
            }
        };
        let found: Vec<Fast> = self.rules.iter().map(fast).collect();
        for (r, f) in self.rules.iter_mut().zip(found) {
            r.fast = f;
        }
        self.default_rule.fast = fast(&self.default_rule);
    }
}

pub(crate) struct Arguments {
    pub(crate) pointer: Arc<str>,
    pub(crate) validator: jsonschema::Validator,
}

pub(crate) struct CompiledCheck {
    pub(crate) pointer: Arc<str>,
    /// `on_deny` or `reason`, else a message naming the check.
    pub(crate) message: Arc<str>,
    pub(crate) conditions: Vec<Condition>,
}

pub(crate) struct CompiledLimit {
    pub(crate) pointer: Arc<str>,
    /// The message of a call this limit refuses, made at the first refusal and shared by the
    /// next ones (the evaluator words it).
    pub(crate) reached: std::sync::OnceLock<Arc<str>>,
    pub(crate) counter: Arc<str>,
    pub(crate) window_seconds: u64,
    pub(crate) sliding: bool,
    pub(crate) scope: Scope,
    pub(crate) max: u64,
    pub(crate) units: Units,
}

pub(crate) enum Units {
    Fixed(u64),
    From { path: Path, pointer: Arc<str> },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    /// The shortcut of each tool's rule, and of the default rule.
    fn fast_of(doc: &str, tool: &str) -> Fast {
        let policy = Policy::from_json_str(doc).unwrap();
        let c = policy.compiled();
        c.rule_for(tool).map_or(c.default_rule.fast, |r| r.fast)
    }

    #[test]
    fn only_rules_without_checks_and_one_fixed_limit_take_the_shortcut() {
        let limit = r#"{"counter": "c", "window": "minute", "max": 5}"#;
        let doc = |tool: &str, all: &str| {
            format!(r#"{{"version": "1", "default": "allow", "tools": {{"t": {tool}}}{all}}}"#)
        };
        let check = r#"[{"conditions": [{"path": "args.a", "op": "exists", "value": true}]}]"#;
        assert_eq!(fast_of(&doc("{}", ""), "t"), Fast::Allow);
        assert_eq!(fast_of(&doc("{}", ""), "other"), Fast::Allow, "the default rule");
        let one = doc(&format!(r#"{{"limits": [{limit}]}}"#), "");
        assert_eq!(fast_of(&one, "t"), Fast::OneLimit { id: 0, units: 1 });
        let inc =
            doc(&format!(r#"{{"limits": [{}]}}"#, limit.replace('}', r#", "increment": 3}"#)), "");
        assert_eq!(fast_of(&inc, "t"), Fast::OneLimit { id: 0, units: 3 });
        // (`increment` over `max` is a load error; `set_fast` still leaves it to step 7.)
        let from = limit.replace('}', r#", "increment_from": "args.n"}"#);
        assert_eq!(fast_of(&doc(&format!(r#"{{"limits": [{from}]}}"#), ""), "t"), Fast::No);
        let two = doc(&format!(r#"{{"limits": [{limit}, {limit}]}}"#), "");
        assert_eq!(fast_of(&two, "t"), Fast::No);
        for step in ["require", "deny_if", "approve_if"] {
            let own = doc(&format!(r#"{{"{step}": {check}}}"#), "");
            assert_eq!(fast_of(&own, "t"), Fast::No, "{step}");
            let all = doc("{}", &format!(r#", "all_tools": {{"{step}": {check}}}"#));
            assert_eq!(fast_of(&all, "t"), Fast::No, "all_tools {step}");
            assert_eq!(fast_of(&all, "other"), Fast::No, "all_tools {step}, default rule");
        }
        let schema = doc(r#"{"arguments": {"type": "object"}}"#, "");
        assert_eq!(fast_of(&schema, "t"), Fast::No);
        // `all_tools`' limit counts: one limit in all, or two.
        let all_limit = format!(r#", "all_tools": {{"limits": [{limit}]}}"#);
        assert_eq!(fast_of(&doc("{}", &all_limit), "t"), Fast::OneLimit { id: 0, units: 1 });
        let both = doc(&format!(r#"{{"limits": [{limit}]}}"#), &all_limit);
        assert_eq!(fast_of(&both, "t"), Fast::No);
    }
}
