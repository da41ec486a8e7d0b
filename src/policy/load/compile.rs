//! The compile stage: a [`PolicyDocument`] to the compiled form the evaluator reads, checking
//! every value against the language on the way.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use hashbrown::HashMap;

use super::super::compiled::{Compiled, CompiledCheck, CompiledLimit, CompiledRule, RuleName};
use super::super::condition::LazyRegex;
use super::super::exact::ExactIndex;
use super::super::model::{PolicyDocument, Rule, Scope};
use super::super::pattern::{self, Pattern, PatternIndex};
use super::{DiagnosticKind, Problem, Skip};
use crate::json::pointer::join;

/// The compile stage's state.
pub(super) struct Compiler<'s> {
    pub(super) problems: Vec<Problem>,
    /// The pieces the read stage stood in for.
    pub(super) skip: &'s Skip,
    pub(super) limits: Vec<CompiledLimit>,
    /// The first limit seen for each counter: its pointer, window, scope and sliding flag.
    pub(super) counters: BTreeMap<String, (Arc<str>, u64, Scope, bool)>,
    /// Regexes checked so far, by pattern: policies often repeat one, and the conditions that
    /// share a pattern share its compiled program.
    pub(super) regexes: HashMap<String, Arc<LazyRegex>>,
}

/// Compiles `document`; the compiled form only when no problem was found.
pub(super) fn compile(document: PolicyDocument, skip: &Skip) -> (Option<Compiled>, Vec<Problem>) {
    let mut c = Compiler {
        problems: Vec::new(),
        skip,
        limits: Vec::new(),
        counters: BTreeMap::new(),
        regexes: HashMap::new(),
    };
    let compiled = c.document(document);
    (compiled, c.problems)
}

impl Compiler<'_> {
    pub(super) fn problem(&mut self, pointer: impl Into<String>, kind: DiagnosticKind, m: String) {
        self.problems.push(Problem::new(pointer, kind, m));
    }

    fn document(&mut self, document: PolicyDocument) -> Option<Compiled> {
        if document.version != "1" {
            self.problem(
                "/version",
                DiagnosticKind::UnsupportedVersion,
                format!(
                    "unsupported policy version `{}`: the supported version is \"1\"",
                    document.version
                ),
            );
        }
        let mut hide_exact: HashMap<Box<str>, usize> = HashMap::new();
        let mut hide_patterns = Vec::new();
        for (i, s) in document.hide.iter().enumerate() {
            let ptr = format!("/hide/{i}");
            if self.skip.piece(&ptr) {
                continue;
            }
            if s.is_empty() {
                self.problem(
                    &ptr,
                    DiagnosticKind::InvalidValue,
                    "empty tool pattern: write a tool name, or `*` to hide every tool".to_owned(),
                );
            } else if pattern::is_pattern(s) {
                hide_patterns.push((Pattern::new(s), i));
            } else {
                hide_exact.entry(s.as_str().into()).or_insert(i);
            }
        }
        let all_tools = document
            .all_tools
            .as_ref()
            .and_then(|r| self.rule(r, "/all_tools", RuleName::Pointer("/all_tools".into())));

        let mut rules = Vec::with_capacity(document.tools.len());
        let mut rule_keys: Vec<Box<str>> = Vec::with_capacity(document.tools.len());
        let mut exact = ExactIndex::with_capacity(document.tools.len());
        let mut patterns: Vec<(Pattern, usize, &str)> = Vec::new();
        for (key, rule) in &document.tools {
            let ptr = join("/tools", key);
            if key.is_empty() {
                self.problems.push(Problem::at_key(
                    ptr,
                    DiagnosticKind::InvalidValue,
                    "empty tool pattern: a `tools` key is a tool name or a pattern with `*`"
                        .to_owned(),
                ));
                continue;
            }
            let is_pattern = pattern::is_pattern(key);
            let name = if is_pattern {
                RuleName::Pointer(ptr.as_str().into())
            } else {
                RuleName::ExactTool
            };
            let Some(compiled) = self.rule(rule, &ptr, name) else { continue };
            if self.skip.rule(key) {
                continue;
            }
            let index = rules.len();
            rules.push(compiled);
            rule_keys.push(key.as_str().into());
            if is_pattern {
                patterns.push((Pattern::new(key), index, key));
            } else {
                exact.insert(key, index);
            }
        }
        self.check_ambiguity(&patterns);
        if !self.problems.is_empty() {
            return None;
        }
        let patterns = PatternIndex::new(patterns.iter().map(|(_, i, key)| (*key, *i)));
        let mut compiled = Compiled {
            default: document.default,
            document,
            digest: OnceLock::new(),
            hide_exact,
            hide_patterns,
            exact,
            patterns,
            rules,
            rule_keys,
            all_tools,
            default_rule: CompiledRule::empty(RuleName::Pointer("/default".into())),
            limits: std::mem::take(&mut self.limits),
            warnings: Vec::new(),
            places: Default::default(),
        };
        compiled.set_fast();
        Some(compiled)
    }

    /// Two patterns with the same number of literal characters that can match one name.
    fn check_ambiguity(&mut self, patterns: &[(Pattern, usize, &str)]) {
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

    /// Compiles one rule; `None` when it has a problem.
    fn rule(&mut self, rule: &Rule, ptr: &str, name: RuleName) -> Option<CompiledRule> {
        let before = self.problems.len();
        let mut compiled = CompiledRule::empty(name);
        if let Some(schema) = &rule.arguments {
            compiled.arguments = self.arguments_schema(schema, &join(ptr, "arguments"));
        }
        for (i, c) in rule.require.iter().enumerate() {
            let check = self.check(ptr, "require", i, &c.name, &c.conditions, &c.on_deny);
            compiled.require.extend(check);
        }
        for (i, c) in rule.deny_if.iter().enumerate() {
            let check = self.check(ptr, "deny_if", i, &c.name, &c.conditions, &c.on_deny);
            compiled.deny_if.extend(check);
        }
        for (i, c) in rule.approve_if.iter().enumerate() {
            let check = self.check(ptr, "approve_if", i, &c.name, &c.conditions, &c.reason);
            compiled.approve_if.extend(check);
        }
        for (i, limit) in rule.limits.iter().enumerate() {
            let lptr = format!("{ptr}/limits/{i}");
            if self.skip.piece(&lptr) {
                continue;
            }
            if let Some(index) = self.limit(limit, &lptr) {
                compiled.limits.push(index);
            }
        }
        (self.problems.len() == before).then_some(compiled)
    }

    /// Compiles check `i` of `rule[key]`.
    fn check(
        &mut self,
        rule: &str,
        key: &str,
        i: usize,
        name: &Option<String>,
        conditions: &[super::super::model::Condition],
        message: &Option<String>,
    ) -> Option<CompiledCheck> {
        let cptr = format!("{rule}/{key}/{i}");
        if self.skip.piece(&cptr) {
            return None;
        }
        let mut compiled = Vec::with_capacity(conditions.len());
        let before = self.problems.len();
        for (j, c) in conditions.iter().enumerate() {
            let ptr = format!("{cptr}/conditions/{j}");
            if self.skip.piece(&ptr) {
                continue;
            }
            compiled.extend(self.condition(c, &ptr));
        }
        if self.problems.len() != before {
            return None;
        }
        let message = match (message, key, name) {
            (Some(m), _, _) => m.clone(),
            (_, "approve_if", Some(n)) => format!("approval required by check `{n}`"),
            (_, "approve_if", None) => format!("approval required by `{cptr}`"),
            (_, "require", Some(n)) => format!("the call does not meet requirement `{n}`"),
            (_, "require", None) => format!("the call does not meet the requirement at `{cptr}`"),
            (_, _, Some(n)) => format!("denied by check `{n}`"),
            (_, _, None) => format!("denied by `{cptr}`"),
        };
        Some(CompiledCheck { pointer: cptr.into(), message: message.into(), conditions: compiled })
    }
}
