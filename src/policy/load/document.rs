//! The read stage: a JSON value to a [`PolicyDocument`], checking every key and JSON type.
//!
//! Values are checked against the language (ranges, paths, regexes, schemas) by the compile
//! stage, which a document built in a program goes through as well. A piece that cannot be
//! built (a condition without a `path`, a limit whose `max` is a string) is reported here and
//! replaced by a stand-in that the compile stage skips, so that the indexes in the pointers of
//! later problems stay those of the text.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::model::{
    ApprovalCheck, Check, Condition, DefaultDecision, Limit, MAX_LIMIT, MAX_WINDOW_SECONDS, Op,
    PolicyDocument, Rule, Scope, Window, WindowUnit,
};
use super::messages::{
    APPROVAL_KEYS, CHECK_KEYS, CONDITION_KEYS, DOCUMENT_KEYS, LIMIT_KEYS, OPS, RULE_KEYS, SCOPES,
    window_message,
};
use super::reader::Reader;
use super::{DiagnosticKind, Problem, Skip};
use crate::json::pointer::join;

/// Reads the document: the model (absent when the text is not an object), what the compile
/// stage is to skip, and the problems found.
pub(super) fn read(value: Value) -> (Option<PolicyDocument>, Skip, Vec<Problem>) {
    let mut r = Reader::default();
    let document = r.document(value);
    (document, r.skip, r.problems)
}

impl Reader {
    fn document(&mut self, v: Value) -> Option<PolicyDocument> {
        let mut map =
            self.object(v, "", "a policy document", DOCUMENT_KEYS, &["version", "default"])?;
        let schema = self.opt_string(&mut map, "$schema", "").unwrap_or_default();
        // A missing or mistyped `version` or `default` is reported; the stand-in lets the
        // rest of the document be checked.
        let version = match map.remove("version") {
            Some(Value::String(s)) => s,
            Some(other) => {
                self.wrong_type("/version", "the string \"1\" (the supported version)", &other);
                "1".to_owned()
            }
            None => "1".to_owned(),
        };
        let default = map
            .get("default")
            .and_then(|d| self.choice(d, "/default", "default decision", &["allow", "deny"]));
        let default =
            if default == Some("allow") { DefaultDecision::Allow } else { DefaultDecision::Deny };
        let description = self.opt_string(&mut map, "description", "").unwrap_or_default();

        let mut hide = Vec::new();
        if let Some(h) = map.remove("hide") {
            if let Some(items) = self.array(h, "/hide", "tool names or patterns") {
                for (i, item) in items.into_iter().enumerate() {
                    let ptr = format!("/hide/{i}");
                    match self.string(item, &ptr) {
                        Some(s) => hide.push(s),
                        None => {
                            self.stand_in(&ptr);
                            hide.push(String::new());
                        }
                    }
                }
            }
        }
        let all_tools = map.remove("all_tools").and_then(|r| self.rule(r, "/all_tools"));
        let mut tools = BTreeMap::new();
        match map.remove("tools") {
            Some(Value::Object(entries)) => {
                for (key, rule) in entries {
                    let before = self.problems.len();
                    let rule = self.rule(rule, &join("/tools", &key));
                    if self.problems.len() != before {
                        self.skip.rules.insert(key.clone());
                    }
                    if let Some(rule) = rule {
                        tools.insert(key, rule);
                    }
                }
            }
            Some(other) => self.wrong_type("/tools", "an object of tool names to rules", &other),
            None => {}
        }
        Some(PolicyDocument { schema, version, default, description, hide, all_tools, tools })
    }

    fn rule(&mut self, v: Value, ptr: &str) -> Option<Rule> {
        let mut map = self.object(v, ptr, "a rule", RULE_KEYS, &[])?;
        let mut rule = Rule {
            description: self.opt_string(&mut map, "description", ptr).unwrap_or_default(),
            arguments: map.remove("arguments"),
            ..Rule::default()
        };
        for key in ["require", "deny_if", "approve_if"] {
            let Some(list) = map.remove(key) else { continue };
            let lptr = join(ptr, key);
            let Some(items) = self.array(list, &lptr, "checks") else { continue };
            for (i, item) in items.into_iter().enumerate() {
                let cptr = format!("{lptr}/{i}");
                let approval = key == "approve_if";
                let (name, conditions, message) = match self.check(item, &cptr, approval) {
                    Some(parts) => parts,
                    None => {
                        self.stand_in(&cptr);
                        (None, Vec::new(), None)
                    }
                };
                match key {
                    "require" => rule.require.push(Check { name, conditions, on_deny: message }),
                    "deny_if" => rule.deny_if.push(Check { name, conditions, on_deny: message }),
                    _ => rule.approve_if.push(ApprovalCheck { name, conditions, reason: message }),
                }
            }
        }
        if let Some(list) = map.remove("limits") {
            let lptr = join(ptr, "limits");
            if let Some(items) = self.array(list, &lptr, "limits") {
                for (i, item) in items.into_iter().enumerate() {
                    let iptr = format!("{lptr}/{i}");
                    let limit = self.limit(item, &iptr).unwrap_or_else(|| {
                        self.stand_in(&iptr);
                        stand_in_limit()
                    });
                    rule.limits.push(limit);
                }
            }
        }
        Some(rule)
    }

    /// A check's name, conditions and message (`on_deny`, or `reason` of an approval).
    fn check(
        &mut self,
        v: Value,
        ptr: &str,
        approval: bool,
    ) -> Option<(Option<String>, Vec<Condition>, Option<String>)> {
        let (keys, what, message_key) = if approval {
            (APPROVAL_KEYS, "an `approve_if` check", "reason")
        } else {
            (CHECK_KEYS, "a check", "on_deny")
        };
        let mut map = self.object(v, ptr, what, keys, &["conditions"])?;
        let name = self.opt_string(&mut map, "name", ptr).unwrap_or_default();
        let message = self.opt_string(&mut map, message_key, ptr).unwrap_or_default();
        let list = map.remove("conditions")?;
        let cptr = join(ptr, "conditions");
        let items = self.array(list, &cptr, "conditions")?;
        let mut conditions = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let iptr = format!("{cptr}/{i}");
            let condition = self.condition(item, &iptr).unwrap_or_else(|| {
                self.stand_in(&iptr);
                Condition { path: "tool".to_owned(), op: Op::Exists, value: None }
            });
            conditions.push(condition);
        }
        Some((name, conditions, message))
    }

    fn condition(&mut self, v: Value, ptr: &str) -> Option<Condition> {
        let mut map = self.object(v, ptr, "a condition", CONDITION_KEYS, &["path", "op"])?;
        let path = self.string_at(&mut map, "path", ptr);
        let named = |s: &str| Op::ALL.into_iter().find(|o| o.as_str() == s);
        let op = match map.get("op") {
            Some(Value::String(s)) if named(s).is_some() => named(s),
            Some(o) => self.choice(o, &join(ptr, "op"), "op", OPS).and_then(named),
            None => None,
        };
        Some(Condition { path: path?, op: op?, value: map.remove("value") })
    }

    fn limit(&mut self, v: Value, ptr: &str) -> Option<Limit> {
        let mut map = self.object(v, ptr, "a limit", LIMIT_KEYS, &["counter", "window", "max"])?;
        let before = self.problems.len();
        let counter = self.string_at(&mut map, "counter", ptr);
        let wptr = || join(ptr, "window");
        let window = match map.get("window") {
            Some(Value::String(w)) => match w.as_str() {
                "second" => Some(Window::Named(WindowUnit::Second)),
                "minute" => Some(Window::Named(WindowUnit::Minute)),
                "hour" => Some(Window::Named(WindowUnit::Hour)),
                "day" => Some(Window::Named(WindowUnit::Day)),
                _ => {
                    self.problem(wptr(), DiagnosticKind::InvalidValue, window_message(w));
                    None
                }
            },
            Some(Value::Number(_)) => self
                .integer_at(&map, "window", ptr, "a window in seconds", (1, MAX_WINDOW_SECONDS))
                .map(Window::Seconds),
            Some(w) => {
                self.wrong_type(
                    &wptr(),
                    "a window: \"second\", \"minute\", \"hour\", \"day\" or a number of seconds",
                    w,
                );
                None
            }
            None => None,
        };
        let max = self.integer_at(&map, "max", ptr, "`max`", (1, MAX_LIMIT));
        let scope = match map.get("scope") {
            Some(Value::String(s)) if s == "grant" => Some(Scope::Grant),
            Some(s) => self.choice(s, &join(ptr, "scope"), "scope", SCOPES).map(|s| match s {
                "session" => Scope::Session,
                "global" => Scope::Global,
                _ => Scope::Grant,
            }),
            None => Some(Scope::Grant),
        };
        // `Err` when present and reported.
        let increment = if map.contains_key("increment") {
            self.integer_at(&map, "increment", ptr, "`increment`", (1, MAX_LIMIT))
                .map(Some)
                .ok_or(())
        } else {
            Ok(None)
        };
        let increment_from = if map.contains_key("increment_from") {
            self.string_at(&mut map, "increment_from", ptr).map(Some).ok_or(())
        } else {
            Ok(None)
        };
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
        Some(Limit {
            counter: counter?,
            window: window?,
            max: max?,
            scope: scope?,
            increment: increment.ok()?,
            increment_from: increment_from.ok()?,
            sliding: sliding?,
        })
    }
}

/// What stands in for a limit of the wrong shape (the compile stage skips it).
fn stand_in_limit() -> Limit {
    Limit {
        counter: String::new(),
        window: Window::Seconds(1),
        max: 1,
        scope: Scope::Grant,
        increment: None,
        increment_from: None,
        sliding: false,
    }
}
