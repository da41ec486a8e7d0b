//! The lint that needs the server's tool list: rules and `hide` entries that match no tool,
//! risky tools that `default: allow` leaves without a rule, and look-alike names (confusable
//! characters, mixed scripts, bidi controls, invisible characters) in `tools` keys and `hide`
//! entries.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use unicode_security::MixedScript;

use super::join;
use crate::policy::diagnostics::{Diagnostic, DiagnosticKind};
use crate::policy::model::DefaultDecision;
use crate::policy::{Policy, did_you_mean, pattern_matches};

/// One tool of a server, as the lint reads it: its name and, for a tool that can do harm, why.
///
/// ```
/// use mcp_policy::ToolInfo;
///
/// let t = ToolInfo::from_mcp(&serde_json::json!({
///     "name": "drop_table", "annotations": {"destructiveHint": true}})).unwrap();
/// assert_eq!(t.name(), "drop_table");
/// assert_eq!(t.risk(), Some("destructive (from its MCP annotations)"));
/// assert_eq!(ToolInfo::new("list_jobs").risk(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolInfo {
    name: String,
    risk: Option<String>,
}

impl ToolInfo {
    /// A tool with no known risk.
    pub fn new(name: impl Into<String>) -> ToolInfo {
        ToolInfo { name: name.into(), risk: None }
    }

    /// Marks the tool as able to do harm, with why (`"destructive (from its name)"`): under
    /// `default: allow`, the lint warns when no rule guards it.
    #[must_use]
    pub fn with_risk(mut self, why: impl Into<String>) -> ToolInfo {
        self.risk = Some(why.into());
        self
    }

    /// A tool of a `tools/list` result (`{"name": ..., "annotations": {...}}`); risky when its
    /// annotations say `destructiveHint: true`. `None` without a string `name`.
    ///
    /// Annotations are hints a server may leave out: a program that classifies tools by name
    /// too (as `mcp-policy validate --tools` does) sets the risk with [`with_risk`](Self::with_risk).
    pub fn from_mcp(tool: &Value) -> Option<ToolInfo> {
        let name = tool.get("name")?.as_str()?;
        let info = ToolInfo::new(name);
        let destructive = tool
            .get("annotations")
            .and_then(|a| a.get("destructiveHint"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Some(if destructive {
            info.with_risk("destructive (from its MCP annotations)")
        } else {
            info
        })
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the tool can do harm, when it can.
    pub fn risk(&self) -> Option<&str> {
        self.risk.as_deref()
    }
}

/// What the server's tool list reveals about a policy: warnings ([`Severity::Warning`]), each
/// with its line, column and pointer in the text the policy was loaded from and a stable
/// [`DiagnosticKind`], sorted by position.
///
/// - `unused_rule`: a `tools` key that governs no tool (with a did-you-mean);
/// - `unused_hide`: a `hide` entry that matches no tool;
/// - `unguarded`: under `default: allow`, a risky tool ([`ToolInfo::risk`]) with no rule and
///   not hidden;
/// - `confusable_name`: an exact `tools` key or `hide` entry that is not a tool's name but looks
///   the same (`dеlete_job` with a Cyrillic `е`): the rule silently never applies;
/// - `confusable_character`, `mixed_script`, `bidi_control`, `invisible_character`: look-alike
///   characters in a `tools` key or `hide` entry (Unicode UTS #39 confusables, several scripts
///   in one name, bidirectional controls, zero-width characters).
///
/// Linear in the policy and the tool list, apart from the did-you-mean of the entries that
/// match nothing.
///
/// [`Severity::Warning`]: crate::Severity::Warning
///
/// ```
/// use mcp_policy::{DiagnosticKind, Policy, ToolInfo, lint};
///
/// let policy: Policy = "{\"version\": \"1\", \"default\": \"deny\",\n \
///     \"tools\": {\"d\u{0435}lete_job\": {}, \"list_jobs\": {}}}".parse()?;
/// let tools = [ToolInfo::new("delete_job"), ToolInfo::new("list_jobs")];
/// let w = lint(&policy, &tools);
/// assert_eq!(w[0].kind(), DiagnosticKind::ConfusableCharacter); // `е` is U+0435
/// assert_eq!(w[1].kind(), DiagnosticKind::ConfusableName);
/// assert_eq!((w[1].line(), w[1].column()), (2, 26));
/// assert!(w[1].message().contains("looks like the tool `delete_job`"));
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
pub fn lint(policy: &Policy, tools: &[ToolInfo]) -> Vec<Diagnostic> {
    let doc = policy.document();
    let places = &policy.compiled().places;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let name_set: HashSet<&str> = names.iter().copied().collect();
    let mut skeletons: HashMap<String, &str> = HashMap::new();
    for n in &names {
        skeletons.entry(skeleton(n)).or_insert(n);
    }
    let matches_a_tool = |pattern: &str| {
        if pattern.contains('*') {
            names.iter().any(|n| pattern_matches(pattern, n))
        } else {
            name_set.contains(pattern)
        }
    };
    // The rule key each tool is governed by: a key no tool reaches is unused.
    let used: HashSet<&str> = names.iter().filter_map(|n| policy.rule_key(n)).collect();
    let mut budget = SUGGESTION_BUDGET;
    let mut out = Vec::new();
    let mut warn = |(line, column): (usize, usize), pointer: String, kind, message: String| {
        out.push(Diagnostic::new(line, column, pointer, message, kind));
    };
    for key in doc.tools.keys() {
        let at = places.tool(key);
        let pointer = join("/tools", key);
        for (kind, message) in lookalike("rule", key) {
            warn(at, pointer.clone(), kind, message);
        }
        if used.contains(key.as_str()) {
            continue;
        }
        let message = if matches_a_tool(key) {
            format!(
                "rule `{key}` applies to no tool of the server: a more specific rule governs \
                 every tool it matches"
            )
        } else if let Some(tool) = confusable_with(key, &skeletons) {
            warn(
                at,
                pointer,
                DiagnosticKind::ConfusableName,
                confusable_message("rule", key, tool),
            );
            continue;
        } else {
            format!("rule `{key}` matches no tool of the server{}", hint(key, &names, &mut budget))
        };
        warn(at, pointer, DiagnosticKind::UnusedRule, message);
    }
    for (i, entry) in doc.hide.iter().enumerate() {
        let at = places.hide(i);
        let pointer = format!("/hide/{i}");
        for (kind, message) in lookalike("hide entry", entry) {
            warn(at, pointer.clone(), kind, message);
        }
        if matches_a_tool(entry) {
            continue;
        }
        if let Some(tool) = confusable_with(entry, &skeletons) {
            let message = confusable_message("hide entry", entry, tool);
            warn(at, pointer, DiagnosticKind::ConfusableName, message);
        } else {
            let message = format!(
                "hide entry `{entry}` matches no tool of the server{}",
                hint(entry, &names, &mut budget)
            );
            warn(at, pointer, DiagnosticKind::UnusedHide, message);
        }
    }
    if doc.default == DefaultDecision::Allow {
        for tool in tools {
            let Some(risk) = &tool.risk else { continue };
            if policy.rule_key(&tool.name).is_none() && !policy.is_hidden(&tool.name) {
                warn(
                    places.default(),
                    "/default".to_owned(),
                    DiagnosticKind::Unguarded,
                    format!(
                        "tool `{}` is {risk} and has no rule: `default: allow` lets every call \
                         of it through",
                        tool.name
                    ),
                );
            }
        }
    }
    out.sort_by_key(|d| (d.line(), d.column()));
    out
}

/// How many full edit distances the did-you-mean of one lint may compute: past it, the entries
/// that match no tool are still reported, without a suggestion. Thousands of unmatched entries
/// against a tool list of thousands would otherwise cost millions of comparisons.
const SUGGESTION_BUDGET: usize = 100_000;

/// "; did you mean `x`?" for the tool name closest to `key`, when it is close.
///
/// Candidates whose length differs too much are skipped before the edit distance.
fn hint(key: &str, names: &[&str], budget: &mut usize) -> String {
    let limit = match key.chars().count() {
        0..=2 => 1,
        3..=5 => 2,
        _ => 3,
    };
    // Each edit changes the length by at most one character (four bytes).
    let close = names.iter().copied().filter(|n| n.len().abs_diff(key.len()) <= limit * 4);
    let mut candidates: Vec<&str> = Vec::new();
    for n in close {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        candidates.push(n);
    }
    did_you_mean(key, candidates).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default()
}

/// The UTS #39 skeleton of `s`: two names that look alike have the same skeleton.
fn skeleton(s: &str) -> String {
    unicode_security::skeleton(s).collect()
}

/// The tool whose name looks like the exact key or entry `key` without being it.
fn confusable_with<'a>(key: &str, skeletons: &HashMap<String, &'a str>) -> Option<&'a str> {
    if key.contains('*') {
        return None;
    }
    skeletons.get(&skeleton(key)).copied().filter(|tool| *tool != key)
}

fn confusable_message(what: &str, key: &str, tool: &str) -> String {
    let differ: Vec<String> = key
        .chars()
        .filter(|c| !tool.contains(*c))
        .map(|c| format!("`{}` ({})", c.escape_debug(), code(c)))
        .collect();
    format!(
        "{what} `{}` is not a tool of the server but looks like the tool `{tool}` (it has {}): \
         it never applies to that tool; write the name with the tool's own characters",
        key.escape_debug(),
        if differ.is_empty() { "other characters".to_owned() } else { differ.join(", ") }
    )
}

fn code(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// Bidirectional formatting controls: they reorder how a name is shown (Trojan Source).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show as nothing (zero-width spaces and joiners, the word joiner and the
/// invisible operators, the byte order mark, the soft hyphen, variation selectors, tags).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The look-alike warnings of one `tools` key or `hide` entry.
pub(crate) fn lookalike(what: &str, key: &str) -> Vec<(DiagnosticKind, String)> {
    let mut out = Vec::new();
    if key.is_ascii() {
        return out;
    }
    let shown = key.escape_debug();
    let list = |pred: &dyn Fn(char) -> bool| -> Vec<String> {
        let mut seen: Vec<char> = Vec::new();
        for c in key.chars().filter(|c| pred(*c)) {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        seen.into_iter().map(code).collect()
    };
    let bidi = list(&is_bidi_control);
    if !bidi.is_empty() {
        out.push((
            DiagnosticKind::BidiControl,
            format!(
                "{what} `{shown}` contains bidirectional control characters ({}): they change \
                 the order in which the name is shown, so it reads as another name",
                bidi.join(", ")
            ),
        ));
    }
    let invisible = list(&is_invisible);
    if !invisible.is_empty() {
        out.push((
            DiagnosticKind::InvisibleCharacter,
            format!(
                "{what} `{shown}` contains invisible characters ({}): it looks like a name \
                 without them, which it does not match",
                invisible.join(", ")
            ),
        ));
    }
    // A name wholly in another script (`запуск`) has letters that look like Latin ones but
    // fools no one; a look-alike next to ASCII letters, or a fullwidth or mathematical letter,
    // does.
    let beside_ascii = key.chars().any(|c| c.is_ascii_alphanumeric());
    let mut confusable: Vec<String> = Vec::new();
    for c in key.chars() {
        if c.is_ascii() || is_bidi_control(c) || is_invisible(c) {
            continue;
        }
        if !beside_ascii && !matches!(c, '\u{FF01}'..='\u{FF5E}' | '\u{1D400}'..='\u{1D7FF}') {
            continue;
        }
        let mut buf = [0u8; 4];
        let look: String = unicode_security::skeleton(c.encode_utf8(&mut buf)).collect();
        if !look.is_empty() && look.is_ascii() {
            let item = format!("`{c}` ({}) looks like `{look}`", code(c));
            if !confusable.contains(&item) {
                confusable.push(item);
            }
        }
    }
    if !confusable.is_empty() {
        out.push((
            DiagnosticKind::ConfusableCharacter,
            format!(
                "{what} `{shown}` has characters that look like ASCII ones: {}; a name typed \
                 with the ASCII letters does not match it",
                confusable.join(", ")
            ),
        ));
    } else if !key.is_single_script() {
        out.push((
            DiagnosticKind::MixedScript,
            format!(
                "{what} `{shown}` mixes scripts (letters of different alphabets in one name), \
                 a common way to make one name look like another"
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(key: &str) -> Vec<DiagnosticKind> {
        lookalike("rule", key).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn real_confusables() {
        // Cyrillic `е` (U+0435) for Latin `e`.
        assert_eq!(kinds("d\u{0435}lete_job"), [DiagnosticKind::ConfusableCharacter]);
        assert!(
            lookalike("rule", "d\u{0435}lete_job")[0].1.contains("`е` (U+0435) looks like `e`")
        );
        // Fullwidth letters.
        assert_eq!(kinds("\u{FF44}elete_job"), [DiagnosticKind::ConfusableCharacter]);
        // Zero-width space and joiner.
        assert_eq!(kinds("delete\u{200B}_job"), [DiagnosticKind::InvisibleCharacter]);
        assert_eq!(kinds("delete_\u{200D}job"), [DiagnosticKind::InvisibleCharacter]);
        // Right-to-left override.
        assert!(kinds("delete_\u{202E}boj").contains(&DiagnosticKind::BidiControl));
        // Two scripts without a confusable: Latin and Greek lambda.
        assert_eq!(kinds("job_\u{03BB}"), [DiagnosticKind::MixedScript]);
        // One script, ASCII or not, is fine.
        assert!(kinds("delete_job").is_empty());
        assert!(
            kinds("\u{0437}\u{0430}\u{043F}\u{0443}\u{0441}\u{043A}").is_empty(),
            "Cyrillic only"
        );
        assert!(kinds("\u{4E0B}\u{8F7D}").is_empty(), "Han only");
    }

    #[test]
    fn skeletons_match_look_alikes() {
        assert_eq!(skeleton("d\u{0435}lete_job"), skeleton("delete_job"));
        assert_eq!(skeleton("\u{FF44}elete_job"), skeleton("delete_job"));
        assert_ne!(skeleton("delete_jobs"), skeleton("delete_job"));
    }
}
