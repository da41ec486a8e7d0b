//! The compile stage of limits: ranges, `increment` against `max`, and the settings of the
//! limits that share a counter.

use std::sync::Arc;

use super::super::compiled::{CompiledLimit, Units};
use super::super::model::{Limit, MAX_LIMIT, MAX_WINDOW_SECONDS, Window};
use super::DiagnosticKind;
use super::compile::Compiler;
use super::messages::check_range;
use crate::json::pointer::join;

impl Compiler<'_> {
    /// Checks and compiles one limit: its index in the policy's limits, `None` on a problem.
    pub(super) fn limit(&mut self, limit: &Limit, ptr: &str) -> Option<u32> {
        let before = self.problems.len();
        if limit.counter.is_empty() {
            self.problem(
                join(ptr, "counter"),
                DiagnosticKind::InvalidValue,
                "empty counter name: name the counter, for example `\"calls\"`".to_owned(),
            );
        }
        if let Window::Seconds(s) = limit.window {
            let what = "a window in seconds";
            check_range(s, ptr, "window", what, 1, MAX_WINDOW_SECONDS, &mut self.problems);
        }
        let max = check_range(limit.max, ptr, "max", "`max`", 1, MAX_LIMIT, &mut self.problems);
        let increment = limit.increment.and_then(|i| {
            check_range(i, ptr, "increment", "`increment`", 1, MAX_LIMIT, &mut self.problems)
        });
        if let (Some(inc), Some(max)) = (increment, max) {
            if inc > max {
                self.problem(
                    join(ptr, "increment"),
                    DiagnosticKind::InvalidValue,
                    format!(
                        "`increment` {inc} is above `max` {max}: such a limit could never admit a call"
                    ),
                );
            }
        }
        let increment_from =
            limit.increment_from.as_ref().map(|p| self.path(p, ptr, "increment_from"));
        if limit.increment.is_some() && limit.increment_from.is_some() {
            self.problem(
                join(ptr, "increment_from"),
                DiagnosticKind::InvalidValue,
                "a limit takes `increment` or `increment_from`, not both".to_owned(),
            );
        }
        if self.problems.len() != before {
            return None;
        }
        let (counter, window, scope, sliding) =
            (&limit.counter, limit.window.seconds(), limit.scope, limit.sliding);
        let pointer: Arc<str> = ptr.into();
        match self.counters.get(counter) {
            Some((first, w, s, sl)) => {
                let mut diffs = Vec::new();
                if *w != window {
                    diffs.push(format!("`window` {window}s here, {w}s there"));
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
                self.counters.insert(counter.clone(), (pointer.clone(), window, scope, sliding));
            }
        }
        let units = match increment_from {
            Some(Some(path)) => Units::From { path, pointer: join(ptr, "increment_from").into() },
            _ => Units::Fixed(limit.increment.unwrap_or(1)),
        };
        let index = u32::try_from(self.limits.len()).ok()?;
        self.limits.push(CompiledLimit {
            pointer,
            reached: std::sync::OnceLock::new(),
            counter: counter.as_str().into(),
            window_seconds: window,
            sliding,
            scope,
            max: limit.max,
            units,
        });
        Some(index)
    }
}
