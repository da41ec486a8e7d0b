//! `Evaluator::explain` (issue 13 item 3): every step with its outcome, every condition with its
//! truth value and the type of what it read (never the value), every counter with its count,
//! charging nothing, and always the decision `evaluate` makes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use mcp_policy::{
    ChargeOutcome, ChargeRequest, CounterStore, DecisionKind, Evaluator, Explanation, LimitVerdict,
    ManualClock, Mode, Policy, Step, StepOutcome, StoreError, Timestamp, ToolCall, TruthValue,
    ValueType,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A string no policy, pointer or message contains.
const SECRET: &str = "SECRET-77a1e0-value";
/// A number no policy or message contains (as digits).
const SECRET_NUMBER: u64 = 918_273_645;

const T0: f64 = 1_767_225_600.0;

fn policy() -> Policy {
    json!({"version": "1", "default": "deny", "hide": ["hidden_*"],
      "all_tools": {
        "deny_if": [{"conditions": [{"path": "context.env", "op": "eq", "value": "frozen"}],
                     "on_deny": "the environment is frozen"}],
        "limits": [{"counter": "all", "window": 60, "max": 50, "scope": "global"}]
      },
      "tools": {
        "search": {"limits": [{"counter": "search", "window": "minute", "max": 3}]},
        "execute_sql": {
          "arguments": {"type": "object", "properties": {"statement": {"type": "string"}},
                        "required": ["statement"]},
          "deny_if": [{"conditions": [{"path": "args.statement", "op": "regex",
                                       "value": "(?i)\\bdrop\\b"}],
                       "on_deny": "DROP is not allowed"}],
          "approve_if": [{"conditions": [{"path": "args.statement", "op": "contains",
                                          "value": "DELETE"}],
                          "reason": "deletes need a human"}],
          "limits": [{"counter": "sql", "window": "minute", "max": 2, "scope": "session"}]
        },
        "transfer": {
          "require": [{"conditions": [{"path": "args.currency", "op": "in",
                                       "value": ["EUR", "USD"]},
                                      {"path": "args.amount", "op": "lte", "value": 1000}],
                       "on_deny": "transfers are in EUR or USD, at most 1000"}],
          "limits": [{"counter": "spend", "window": "day", "max": 2000,
                      "increment_from": "args.amount"},
                     {"counter": "spend", "window": "day", "max": 2000}]
        },
        "refund": {"approve_if": [{"conditions": [], "reason": "refunds need a human"}]}
      }
    })
    .to_string()
    .parse()
    .unwrap()
}

fn evaluator() -> (Evaluator, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(T0)));
    (Evaluator::new(policy()).with_clock(clock.clone()), clock)
}

fn outcome(e: &Explanation, step: Step) -> StepOutcome {
    e.step(step).unwrap().outcome
}

#[test]
fn each_step_has_its_outcome_and_the_rule_that_decided() {
    let (ev, _) = evaluator();
    let args = json!({"statement": "drop table users"});
    let call = ToolCall::new("execute_sql").with_arguments(&args).with_session("s");
    let x = ev.explain(&call);
    assert_eq!(x.decision_kind(), DecisionKind::Deny);
    assert_eq!(x.decided_by, Step::DenyIf);
    assert_eq!(x.rule, "/tools/execute_sql/deny_if/0");
    assert_eq!(x.message, "DROP is not allowed");
    let outcomes: Vec<StepOutcome> = x.steps.iter().map(|s| s.outcome).collect();
    use StepOutcome::{Decided, NotReached, Passed};
    assert_eq!(
        outcomes,
        [Passed, Passed, Passed, Passed, Passed, Decided, NotReached, NotReached, NotReached]
    );
    assert_eq!(x.step(Step::Rule).unwrap().rule.as_deref(), Some("/tools/execute_sql"));
    assert_eq!(x.step(Step::DenyIf).unwrap().rule.as_deref(), Some(x.rule.as_str()));
    // deny_if: the tool's check first (true, fires), then all_tools' (context.env absent).
    let checks = &x.step(Step::DenyIf).unwrap().checks;
    assert_eq!(checks.len(), 2);
    assert_eq!((checks[0].truth, checks[0].fires), (TruthValue::True, true));
    let c = &checks[0].conditions[0];
    assert_eq!((c.path.as_str(), c.op.as_str()), ("args.statement", "regex"));
    assert_eq!((c.truth, c.found), (TruthValue::True, ValueType::String));
    assert_eq!(c.rule, "/tools/execute_sql/deny_if/0/conditions/0");
    assert_eq!(checks[1].rule, "/all_tools/deny_if/0");
    assert_eq!(checks[1].conditions[0].found, ValueType::Absent);
    assert_eq!((checks[1].truth, checks[1].fires), (TruthValue::False, false));
    // The schema passed.
    let schemas = &x.step(Step::Arguments).unwrap().checks;
    assert_eq!(schemas[0].rule, "/tools/execute_sql/arguments");
    assert_eq!((schemas[0].truth, schemas[0].fires), (TruthValue::True, false));
    // The counters are shown even though the limits were not reached.
    let counters = &x.step(Step::Limits).unwrap().counters;
    let names: Vec<&str> = counters.iter().map(|c| c.counter.as_str()).collect();
    assert_eq!(names, ["sql", "all"]);
    assert_eq!(counters[0].scope, "session");
    assert_eq!((counters[0].count, counters[0].remaining), (Some(0), Some(2)));
    assert_eq!(counters[0].would, LimitVerdict::Admit);
}

#[test]
fn unknown_hidden_malformed_and_schema_failures_are_decided_at_their_steps() {
    let (ev, _) = evaluator();
    let x = ev.explain(&ToolCall::new("hidden_tool"));
    assert_eq!((x.decided_by, x.rule.as_str()), (Step::Hide, "/hide/0"));
    assert_eq!(outcome(&x, Step::Call), StepOutcome::Passed);
    assert_eq!(outcome(&x, Step::Rule), StepOutcome::NotReached);

    let x = ev.explain(&ToolCall::new("nobody_knows"));
    assert_eq!((x.decided_by, x.rule.as_str()), (Step::Rule, "/default"));

    let not_object = json!([1, 2]);
    let x = ev.explain(&ToolCall::new("search").with_arguments(&not_object));
    assert_eq!((x.decision, x.decided_by), (DecisionKind::Deny, Step::Call));

    let wrong = json!({"statement": 7});
    let x = ev.explain(&ToolCall::new("execute_sql").with_arguments(&wrong));
    assert_eq!((x.decided_by, x.rule.as_str()), (Step::Arguments, "/tools/execute_sql/arguments"));
    let schema = &x.step(Step::Arguments).unwrap().checks[0];
    assert_eq!((schema.truth, schema.fires), (TruthValue::False, true));

    // require: `in` true, `lte` unknown on a string: the check is unknown and fires.
    let args = json!({"currency": "EUR", "amount": "lots"});
    let x = ev.explain(&ToolCall::new("transfer").with_arguments(&args));
    assert_eq!(x.decided_by, Step::Require);
    let check = &x.step(Step::Require).unwrap().checks[0];
    assert_eq!((check.truth, check.fires), (TruthValue::Unknown, true));
    let truths: Vec<(TruthValue, ValueType)> =
        check.conditions.iter().map(|c| (c.truth, c.found)).collect();
    assert_eq!(
        truths,
        [(TruthValue::True, ValueType::String), (TruthValue::Unknown, ValueType::String)]
    );
}

#[test]
fn limits_show_counts_and_what_they_would_do() {
    let (ev, _) = evaluator();
    let call = ToolCall::new("search").with_grant("g");
    for _ in 0..3 {
        assert!(ev.evaluate(&call).is_allowed());
    }
    let x = ev.explain(&call);
    assert_eq!((x.decision, x.decided_by), (DecisionKind::Limit, Step::Limits));
    assert!(x.retry_after.unwrap() > 0.0);
    let search = &x.step(Step::Limits).unwrap().counters[0];
    assert_eq!(search.rule, "/tools/search/limits/0");
    assert_eq!((search.count, search.remaining, search.max), (Some(3), Some(0), 3));
    assert_eq!((search.window_seconds, search.sliding), (60, false));
    assert_eq!((search.units, search.units_from_call), (Some(1), false));
    assert_eq!(search.would, LimitVerdict::Limit);
    let all = &x.step(Step::Limits).unwrap().counters[1];
    assert_eq!((all.counter.as_str(), all.scope.as_str(), all.count), ("all", "global", Some(3)));
    assert_eq!(all.would, LimitVerdict::Admit);

    // Units from the call: never shown; the same counter twice counts both.
    let args = json!({"currency": "EUR", "amount": 1000});
    let x = ev.explain(&ToolCall::new("transfer").with_arguments(&args));
    let counters = &x.step(Step::Limits).unwrap().counters;
    assert_eq!((counters[0].units, counters[0].units_from_call), (None, true));
    assert_eq!(counters[0].would, LimitVerdict::Admit);
    assert_eq!(counters[1].units, Some(1));
    assert_eq!(x.decision, DecisionKind::Allow);
    let args = json!({"currency": "EUR", "amount": -5});
    let x = ev.explain(&ToolCall::new("transfer").with_arguments(&args));
    let spend = &x.step(Step::Limits).unwrap().counters[0];
    assert_eq!(spend.would, LimitVerdict::Deny);
    assert!(spend.note.as_deref().unwrap().contains("found a negative number"), "{spend:?}");
    assert_eq!(x.rule, "/tools/transfer/limits/0/increment_from");
}

#[test]
fn explaining_a_thousand_times_charges_nothing_and_uses_no_approval() {
    let (ev, _) = evaluator();
    let search = ToolCall::new("search").with_grant("g");
    assert!(ev.evaluate(&search).is_allowed());
    let refund_args = json!({"order": 1});
    let refund = ToolCall::new("refund").with_arguments(&refund_args).with_grant("g");
    let asked = ev.evaluate(&refund);
    assert_eq!(asked.kind(), DecisionKind::Approve);
    let key = asked.approval_key().unwrap().to_owned();
    let with_key = refund.with_approval_key(&key);
    let pending = ev.pending_approvals();
    assert_eq!(pending.len(), 1);

    for _ in 0..1_000 {
        assert_eq!(ev.explain(&search).decision, DecisionKind::Allow);
        // With the key: explained as allowed, and the key is not used up.
        assert_eq!(ev.explain(&with_key).decision, DecisionKind::Allow);
        assert_eq!(ev.explain(&refund).decision, DecisionKind::Approve);
    }
    let x = ev.explain(&search);
    assert_eq!(x.step(Step::Limits).unwrap().counters[0].count, Some(1), "still one charge");
    assert_eq!(ev.pending_approvals(), pending, "no approval created, used or removed");
    // Two more searches are admitted (max 3), then the limit: exactly as if never explained.
    assert!(ev.evaluate(&search).is_allowed());
    assert!(ev.evaluate(&search).is_allowed());
    assert_eq!(ev.evaluate(&search).kind(), DecisionKind::Limit);
    // The key still works, once.
    assert!(ev.evaluate(&with_key).is_allowed());
    assert_eq!(ev.evaluate(&with_key).kind(), DecisionKind::Deny);
    // Out of band: a denial is explained without being consumed.
    let asked = ev.evaluate(&refund);
    let id = asked.approval_id().unwrap().to_owned();
    ev.resolve_approval(&id, false).unwrap();
    for _ in 0..3 {
        let x = ev.explain(&refund);
        assert_eq!((x.decision, x.decided_by), (DecisionKind::Deny, Step::ApproveIf));
    }
    assert_eq!(ev.evaluate(&refund).kind(), DecisionKind::Deny);
    assert_eq!(ev.evaluate(&refund).kind(), DecisionKind::Approve);
}

#[test]
fn a_secret_value_never_appears_in_an_explanation() {
    let (ev, _) = evaluator();
    let n = SECRET_NUMBER;
    let s = SECRET;
    let context = json!({"env": s});
    let cases: Vec<(&str, Value)> = vec![
        ("execute_sql", json!({"statement": s})),
        ("execute_sql", json!({"statement": format!("DROP {s}")})),
        ("execute_sql", json!({"statement": format!("DELETE {s}")})),
        ("execute_sql", json!({"statement": n})),
        ("transfer", json!({"currency": s, "amount": n})),
        ("transfer", json!({"currency": "EUR", "amount": n})),
        ("transfer", json!({"currency": "EUR", "amount": s})),
        ("refund", json!({"order": s})),
        ("search", json!({"q": s, "n": n})),
        ("hidden_x", json!({"q": s})),
    ];
    for (tool, args) in &cases {
        let call = ToolCall::new(tool).with_arguments(args).with_context(&context);
        let x = ev.explain(&call);
        let texts = [x.to_string(), serde_json::to_string(&x).unwrap(), format!("{x:?}")];
        for text in texts {
            assert!(!text.contains("SECRET"), "{tool} {args}: quotes the value: {text}");
            assert!(!text.contains(&n.to_string()), "{tool} {args}: quotes the number: {text}");
        }
    }
}

#[test]
fn the_json_has_stable_snake_case_names() {
    let (ev, _) = evaluator();
    let args = json!({"statement": "select 1"});
    let call = ToolCall::new("execute_sql").with_arguments(&args);
    let v = serde_json::to_value(ev.explain(&call)).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        ["decided_by", "decision", "message", "monitor", "retry_after", "rule", "steps", "tool"]
    );
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["decided_by"], "allow");
    let steps: Vec<&str> =
        v["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        steps,
        [
            "call",
            "hide",
            "rule",
            "arguments",
            "require",
            "deny_if",
            "approve_if",
            "limits",
            "allow"
        ]
    );
    let deny_if = &v["steps"][5];
    assert_eq!(keys(deny_if), ["checks", "counters", "outcome", "rule", "step"]);
    assert_eq!(deny_if["outcome"], "passed");
    assert_eq!(keys(&deny_if["checks"][0]), ["conditions", "fires", "rule", "truth"]);
    assert_eq!(deny_if["checks"][0]["truth"], "false");
    assert_eq!(
        keys(&deny_if["checks"][0]["conditions"][0]),
        ["found", "op", "path", "rule", "truth"]
    );
    assert_eq!(deny_if["checks"][0]["conditions"][0]["found"], "string");
    let counter = &v["steps"][7]["counters"][0];
    assert_eq!(
        keys(counter),
        [
            "count",
            "counter",
            "max",
            "note",
            "remaining",
            "rule",
            "scope",
            "sliding",
            "units",
            "units_from_call",
            "window_seconds",
            "would"
        ]
    );
    assert_eq!(counter["would"], "admit");
    assert_eq!(v["steps"][8]["outcome"], "decided");
}

#[test]
fn the_display_reads_step_by_step() {
    let (ev, _) = evaluator();
    let args = json!({"statement": "drop table t"});
    let text = ev.explain(&ToolCall::new("execute_sql").with_arguments(&args)).to_string();
    assert!(
        text.starts_with(
            "deny `execute_sql` by /tools/execute_sql/deny_if/0: DROP is not allowed\n"
        ),
        "{text}"
    );
    assert!(text.contains(" 5. deny_if     decided (/tools/execute_sql/deny_if/0)\n"), "{text}");
    assert!(text.contains("        args.statement regex: true (read string)\n"), "{text}");
    assert!(text.contains(" 7. limits      not reached\n"), "{text}");
    assert!(
        text.contains("      counter `sql` per session, minute window: 0 of 2 used, 2 remaining; this call charges 1: would admit\n"),
        "{text}"
    );
}

/// A store that charges but cannot check or count: explain says the count is unknown.
struct Blind;

impl CounterStore for Blind {
    fn charge(&self, now: Timestamp, _: &[ChargeRequest<'_>]) -> Result<ChargeOutcome, StoreError> {
        Ok(ChargeOutcome::Admitted { at: now })
    }
    fn refund(
        &self,
        _: Timestamp,
        _: Timestamp,
        _: &[ChargeRequest<'_>],
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

#[test]
fn a_store_that_cannot_count_gives_unknown_counts() {
    let ev = Evaluator::with_store(policy(), Blind).with_mode(Mode::Monitor);
    let x = ev.explain(&ToolCall::new("search"));
    assert!(x.monitor);
    let c = &x.step(Step::Limits).unwrap().counters[0];
    assert_eq!((c.count, c.remaining, c.would), (None, None, LimitVerdict::Unknown));
    assert!(c.note.as_deref().unwrap().contains("cannot report a count"));
    assert!(x.to_string().contains("count unknown"));
}

/// One generated step of a session: a call, and what else happens before it.
#[derive(Debug, Clone)]
struct Act {
    tool: usize,
    args: usize,
    grant: usize,
    session: usize,
    context: usize,
    use_key: bool,
    resolve: Option<bool>,
    advance: u8,
}

const TOOLS: [&str; 7] =
    ["search", "execute_sql", "transfer", "refund", "hidden_a", "unknown", "execute_sql"];

fn args_of(i: usize) -> Value {
    match i {
        0 => json!({}),
        1 => json!({"statement": "select 1"}),
        2 => json!({"statement": "DROP table"}),
        3 => json!({"statement": "DELETE from t"}),
        4 => json!({"statement": 3}),
        5 => json!({"currency": "EUR", "amount": 700}),
        6 => json!({"currency": "USD", "amount": 1000.5}),
        7 => json!({"currency": "EUR", "amount": "x"}),
        8 => json!({"currency": "GBP", "amount": 1}),
        9 => json!({"order": 1}),
        10 => json!([1]),
        _ => json!({"currency": "EUR", "amount": -1}),
    }
}

fn act() -> impl Strategy<Value = Act> {
    (
        0..TOOLS.len(),
        0..12usize,
        0..2usize,
        0..3usize,
        0..3usize,
        any::<bool>(),
        prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
        0..40u8,
    )
        .prop_map(|(tool, args, grant, session, context, use_key, resolve, advance)| Act {
            tool,
            args,
            grant,
            session,
            context,
            use_key,
            resolve,
            advance,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Explain gives the decision evaluate makes, call after call, counters and approvals
    /// included (explain changed nothing in between).
    #[test]
    fn explain_decides_as_evaluate(acts in proptest::collection::vec(act(), 1..40)) {
        let (ev, clock) = evaluator();
        let fresh_policy = policy();
        let contexts = [json!({}), json!({"env": "frozen"}), json!({"env": 5})];
        // The last call asked about, and its key: replayed with the key when `use_key`.
        let mut asked: Option<(Act, String)> = None;
        let mut t = T0;
        for a in &acts {
            t += f64::from(a.advance);
            clock.set(Timestamp::from_unix_seconds(t));
            if let Some(approve) = a.resolve
                && let Some(p) = ev.pending_approvals().first()
            {
                let _ = ev.resolve_approval(&p.id, approve);
            }
            let (a, key) = match (&asked, a.use_key) {
                (Some((earlier, key)), true) => (earlier.clone(), Some(key.clone())),
                _ => (a.clone(), None),
            };
            let args = args_of(a.args);
            let grant = ["g", "h"][a.grant];
            let mut call = ToolCall::new(TOOLS[a.tool])
                .with_arguments(&args)
                .with_grant(grant)
                .with_optional_session([None, Some("s1"), Some("s2")][a.session])
                .with_context(&contexts[a.context]);
            if let Some(k) = &key {
                call = call.with_approval_key(k);
            }
            // On a fresh evaluator first.
            let fresh = Evaluator::new(fresh_policy.clone())
                .with_clock(Arc::new(ManualClock::new(Timestamp::from_unix_seconds(t))));
            let x = fresh.explain(&call);
            let d = fresh.evaluate(&call);
            prop_assert_eq!(x.decision_kind(), d.kind());
            // Then on the evaluator with history.
            let x = ev.explain(&call);
            let again = ev.explain(&call);
            prop_assert_eq!(&x, &again, "explaining twice gives the same");
            let d = ev.evaluate(&call);
            prop_assert_eq!(x.decision_kind(), d.kind(), "{:?}: {}", a, x);
            let rule = d.rule();
            prop_assert_eq!(x.rule.as_str(), rule.as_ref());
            prop_assert_eq!(x.message.as_str(), d.message());
            if let Some(k) = d.approval_key() {
                asked = Some((a.clone(), k.to_owned()));
            }
        }
    }
}
