//! `mcp-policy explain`: how a policy decides one call, step by step, charging nothing.
//!
//! The call is one JSON object in the shape `check` reads on each line (`tool`, `arguments`,
//! `grant`, `session`, `context`, `at`, `approved`), decided on fresh counters at `at` (now
//! when absent). With `approved`, a call that needs approval is explained as a human approved it.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use mcp_policy::{DecisionKind, Evaluator, ManualClock, Timestamp};
use serde_json::Value;

use crate::check::{call_of, load_policy};
use crate::time::type_name;
use crate::{Failure, Out, Result};

/// Explains the call in `call_path` (standard input when absent) under the policy at
/// `policy_path`. Exit status: 0 explained (whatever the decision), 1 the call is malformed,
/// 2 usage or I/O error.
pub(crate) fn run(
    policy_path: &Path,
    call_path: Option<&Path>,
    json: bool,
    out: &mut Out<'_>,
) -> Result<u8> {
    let policy = load_policy(policy_path)?;
    let (name, text) = match call_path {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?,
        ),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Usage(format!("cannot read the call: {e}")))?;
            ("standard input".to_owned(), text)
        }
    };
    let malformed = |why: String| {
        crate::report::error_line(&format!("`{name}`: {why}"));
        Ok(1)
    };
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return malformed(format!("not JSON: {e}")),
    };
    let Value::Object(map) = &v else {
        return malformed(format!("a call is a JSON object, found {}", type_name(&v)));
    };
    let (call, at, approved) = match call_of(map) {
        Ok(parsed) => parsed,
        Err(why) => return malformed(why),
    };
    let at = at.unwrap_or_else(|| Timestamp::from_system_time(std::time::SystemTime::now()));
    let evaluator = Evaluator::new(policy).with_clock(Arc::new(ManualClock::new(at)));
    let mut explanation = evaluator.explain(&call);
    if approved && explanation.decision_kind() == DecisionKind::Approve {
        // As `check` does: ask, a human approves, the call comes back with the key. The
        // evaluator is this command's own, so asking changes nothing anyone else sees.
        let asked = evaluator.evaluate(&call);
        if let Some(key) = asked.approval_key() {
            explanation = evaluator.explain(&call.with_approval_key(key));
        }
    }
    if json {
        serde_json::to_writer_pretty(&mut *out, &explanation)
            .map_err(|e| Failure::Output(e.into()))?;
        writeln!(out)?;
    } else {
        write!(out, "{explanation}")?;
    }
    Ok(0)
}
