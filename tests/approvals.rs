//! Approvals and refunds that an agent cannot abuse: move-only receipts, limits checked before a
//! human is asked, pending approvals that one grant cannot flood or evict, hidden tools that
//! answer as unknown ones, and the out-of-band approval API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use mcp_policy::MAX_PENDING_PER_GRANT;
use mcp_policy::{
    ChargeOutcome, ChargeRequest, CounterStore, DecisionKind, Evaluator, ManualClock, Policy,
    ResolveApprovalError, StoreError, Timestamp, ToolCall,
};
use serde_json::{Value, json};

use DecisionKind::{Allow, Approve, Deny, Limit};

/// 2026-01-01T00:00:00Z.
const T0: f64 = 1_767_225_600.0;

fn policy(doc: Value) -> Policy {
    Policy::from_json_str(&doc.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn evaluator(doc: Value) -> (Evaluator, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(T0)));
    (Evaluator::new(policy(doc)).with_clock(clock.clone()), clock)
}

/// `execute_sql` asks a human for `delete`, under a limit of `max` a minute.
fn sql(max: u64) -> (Evaluator, Arc<ManualClock>) {
    evaluator(json!({"version": "1", "default": "deny", "tools": {"execute_sql": {
        "approve_if": [{"conditions": [{"path": "args.statement", "op": "regex", "value": "(?i)^delete"}],
                        "reason": "data-changing SQL needs a human"}],
        "limits": [{"counter": "sql", "window": "minute", "max": max}]}}}))
}

// ------------------------------------------------------------------ receipts are move-only

#[test]
fn a_limit_of_two_admits_exactly_two_whatever_is_rolled_back_twice() {
    let (e, _) = evaluator(json!({"version": "1", "default": "deny", "tools": {"t": {
        "limits": [{"counter": "c", "window": "hour", "max": 2}]}}}));
    let call = ToolCall::new("t").with_grant("g");
    let mut admitted = 0i32; // admitted minus returned, as the store should see it

    // A receipt taken out, then returned: the decision has no charge left to return.
    let mut d1 = e.evaluate(&call);
    assert_eq!(d1.kind(), Allow);
    admitted += 1;
    let r1 = d1.take_receipt().unwrap();
    assert!(d1.take_receipt().is_none(), "a charge can be taken once");
    assert!(!d1.has_charge());
    e.rollback_receipt(r1).unwrap();
    admitted -= 1;
    e.rollback(&mut d1).unwrap(); // nothing left: returns nothing

    let mut d2 = e.evaluate(&call);
    let mut d3 = e.evaluate(&call);
    assert_eq!((d2.kind(), d3.kind()), (Allow, Allow));
    admitted += 2;
    assert_eq!(e.evaluate(&call).kind(), Limit);

    // Rolled back twice: the second does nothing.
    e.rollback(&mut d2).unwrap();
    admitted -= 1;
    e.rollback(&mut d2).unwrap();
    assert!(d2.take_receipt().is_none());
    assert_eq!(e.evaluate(&call).kind(), Allow);
    admitted += 1;
    assert_eq!(e.evaluate(&call).kind(), Limit, "a double rollback would admit a third");

    // A receipt taken, the decision rolled back (nothing), then the receipt returned: once.
    let r3 = d3.take_receipt().unwrap();
    e.rollback(&mut d3).unwrap();
    e.rollback_receipt(r3).unwrap();
    admitted -= 1;
    assert_eq!(e.evaluate(&call).kind(), Allow);
    admitted += 1;
    assert_eq!(e.evaluate(&call).kind(), Limit);
    assert_eq!(admitted, 2);

    // The async face consumes its receipt too.
    let mut d = e.evaluate(&ToolCall::new("t").with_grant("h"));
    let r = d.take_receipt().unwrap();
    block_on(e.rollback_receipt_async(r)).unwrap();
    assert!(d.take_receipt().is_none());
}

// ------------------------------------------------- limits are checked before asking a human

#[test]
fn prompts_stop_when_the_limit_is_exhausted() {
    let (e, clock) = evaluator(json!({"version": "1", "default": "deny",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 3}]},
        "tools": {"refund": {"approve_if": [{"conditions": [], "reason": "refunds need a human"}]}}}));
    // 100 different calls; the human approves every prompt (in band, with the key).
    let (mut prompts, mut limited) = (0, 0);
    for i in 0..100 {
        let args = json!({"order": i});
        let call = ToolCall::new("refund").with_arguments(&args).with_grant("agent");
        let d = e.evaluate(&call);
        match d.kind() {
            Approve => {
                prompts += 1;
                let key = d.approval_key().unwrap().to_owned();
                assert_eq!(e.evaluate(&call.with_approval_key(&key)).kind(), Allow);
            }
            Limit => {
                limited += 1;
                assert_eq!(d.rule(), "/all_tools/limits/0");
                assert!(d.retry_after().is_some());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((prompts, limited), (3, 97));
    assert!(e.pending_approvals().is_empty(), "a limited call leaves nothing pending");

    // The same out of band: prompts go to the pending list only while the limit has room.
    clock.set(Timestamp::from_unix_seconds(T0 + 60.0));
    let (mut prompts, mut limited) = (0, 0);
    for i in 0..100 {
        let args = json!({"order": 1000 + i});
        let call = ToolCall::new("refund").with_arguments(&args).with_grant("agent");
        match e.evaluate(&call).kind() {
            Approve => {
                prompts += 1;
                let id = e.pending_approvals()[0].id.clone();
                e.resolve_approval(&id, true).unwrap();
                assert_eq!(e.evaluate(&call).kind(), Allow);
            }
            Limit => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((prompts, limited), (3, 97));
}

#[test]
fn asking_charges_nothing_and_a_call_that_would_be_limited_is_not_asked_about() {
    let (e, _) = sql(2);
    let args = json!({"statement": "delete from t"});
    let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("g");
    for _ in 0..5 {
        assert_eq!(e.evaluate(&call).kind(), Approve);
    }
    // Asking five times charged nothing: the limit still admits two.
    let select = json!({"statement": "select 1"});
    let plain = ToolCall::new("execute_sql").with_arguments(&select).with_grant("g");
    assert_eq!(e.evaluate(&plain).kind(), Allow);
    assert_eq!(e.evaluate(&plain).kind(), Allow);
    // Exhausted: the delete is limited, not asked about; a fresh delete leaves nothing pending.
    let other = json!({"statement": "delete from u"});
    let fresh = ToolCall::new("execute_sql").with_arguments(&other).with_grant("g");
    let d = e.evaluate(&fresh);
    assert_eq!((d.kind(), d.rule().into_owned()), (Limit, "/tools/execute_sql/limits/0".into()));
    assert_eq!(d.retry_after(), Some(Duration::from_secs(60)));
    assert!(d.approval_key().is_none() && d.approval_id().is_none());
    assert!(e.pending_approvals().iter().all(|p| p.arguments != other));
}

#[test]
fn a_call_whose_units_step_7_refuses_is_denied_rather_than_asked_about() {
    let (e, _) = evaluator(json!({"version": "1", "default": "deny", "tools": {"pay": {
        "approve_if": [{"conditions": []}],
        "limits": [{"counter": "eur", "window": "day", "max": 100, "increment_from": "args.amount"}]}}}));
    let decide = |args: Value| {
        let call = ToolCall::new("pay").with_arguments(&args);
        let d = e.evaluate(&call);
        (d.kind(), d.rule().into_owned())
    };
    assert_eq!(decide(json!({"amount": -5})), (Deny, "/tools/pay/limits/0/increment_from".into()));
    assert_eq!(decide(json!({})), (Deny, "/tools/pay/limits/0/increment_from".into()));
    assert_eq!(decide(json!({"amount": 101})), (Deny, "/tools/pay/limits/0".into()));
    assert_eq!(decide(json!({"amount": 100})), (Approve, "/tools/pay/approve_if/0".into()));
    assert_eq!(e.pending_approvals().len(), 1);
}

struct BrokenStore;

impl CounterStore for BrokenStore {
    fn charge(&self, _: Timestamp, _: &[ChargeRequest<'_>]) -> Result<ChargeOutcome, StoreError> {
        Err(StoreError::new("connection refused"))
    }
    fn refund(
        &self,
        _: Timestamp,
        _: Timestamp,
        _: &[ChargeRequest<'_>],
    ) -> Result<(), StoreError> {
        Err(StoreError::new("connection refused"))
    }
    fn check(&self, _: Timestamp, _: &[ChargeRequest<'_>]) -> Result<ChargeOutcome, StoreError> {
        Err(StoreError::new("connection refused"))
    }
}

/// A store that implements only `charge` and `refund`: `check` keeps its default.
struct NoCheckStore(mcp_policy::MemoryStore);

impl CounterStore for NoCheckStore {
    fn charge(&self, n: Timestamp, b: &[ChargeRequest<'_>]) -> Result<ChargeOutcome, StoreError> {
        self.0.charge(n, b)
    }
    fn refund(
        &self,
        n: Timestamp,
        a: Timestamp,
        b: &[ChargeRequest<'_>],
    ) -> Result<(), StoreError> {
        self.0.refund(n, a, b)
    }
}

#[test]
fn a_store_error_while_checking_denies_and_a_store_without_check_still_limits() {
    let doc = json!({"version": "1", "default": "deny", "tools": {"t": {
        "approve_if": [{"conditions": []}],
        "limits": [{"counter": "c", "window": "minute", "max": 5}]}}});
    let closed = Evaluator::with_store(policy(doc.clone()), BrokenStore);
    let d = closed.evaluate(&ToolCall::new("t"));
    assert_eq!((d.kind(), d.rule().into_owned()), (Deny, "/tools/t/limits/0".into()));
    assert!(d.message().contains("connection refused"), "{}", d.message());
    assert!(closed.pending_approvals().is_empty());
    let open =
        Evaluator::with_store(policy(doc.clone()), BrokenStore).fail_open_on_store_error(true);
    assert_eq!(open.evaluate(&ToolCall::new("t")).kind(), Approve);

    // A store without `check` asks as before; the limit still holds when the call is charged.
    let store = NoCheckStore(mcp_policy::MemoryStore::new());
    let doc = json!({"version": "1", "default": "deny", "tools": {"t": {
        "approve_if": [{"conditions": []}],
        "limits": [{"counter": "c", "window": "minute", "max": 1}]}}});
    let e = Evaluator::with_store(policy(doc), store);
    let k1 = e.evaluate(&ToolCall::new("t").with_grant("a")).approval_key().unwrap().to_owned();
    let k2 = e.evaluate(&ToolCall::new("t").with_grant("b")).approval_key().unwrap().to_owned();
    let c = ToolCall::new("t").with_grant("a");
    assert_eq!(e.evaluate(&c.with_approval_key(&k1)).kind(), Allow);
    assert_eq!(e.evaluate(&c.with_approval_key(&k1)).kind(), Deny, "used");
    let c = ToolCall::new("t").with_grant("b");
    assert_eq!(e.evaluate(&c.with_approval_key(&k2)).kind(), Allow, "per grant");
    // Exhausted for `a`: the default `check` does not look, so `a` is still asked about ...
    let a = ToolCall::new("t").with_grant("a");
    let k3 = e.evaluate(&a).approval_key().unwrap().to_owned();
    // ... but the charge refuses it.
    assert_eq!(e.evaluate(&a.with_approval_key(&k3)).kind(), Limit);
}

// ---------------------------------------------------------------------- flooding and evicting

#[test]
fn an_identical_pending_call_reuses_its_entry() {
    let (e, _) = sql(100);
    let args = json!({"statement": "delete from t"});
    let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("g").with_session("s");
    let first = e.evaluate(&call);
    let (key, id) = (first.approval_key().unwrap(), first.approval_id().unwrap());
    for _ in 0..1000 {
        let again = e.evaluate(&call);
        assert_eq!((again.approval_key(), again.approval_id()), (Some(key), Some(id)));
    }
    // The same arguments in another spelling are the same call.
    let respelled = json!({"statement": "delete from t", "x": 1.0});
    let with_x = json!({"x": 1, "statement": "delete from t"});
    let a = e.evaluate(&ToolCall::new("execute_sql").with_arguments(&respelled).with_grant("g"));
    let b = e.evaluate(&ToolCall::new("execute_sql").with_arguments(&with_x).with_grant("g"));
    assert_eq!(a.approval_id(), b.approval_id());
    assert_eq!(e.pending_approvals().len(), 2);
    // Another session is another call: its own entry.
    let other = e.evaluate(&call.with_session("s2"));
    assert_ne!(other.approval_id(), Some(id));
    assert_eq!(e.pending_approvals().len(), 3);
}

#[test]
fn one_grant_flooding_cannot_evict_another_grants_pending_approval() {
    let (e, _) = sql(u64::from(u32::MAX));
    let victim_args = json!({"statement": "delete from orders where id = 7"});
    let victim = ToolCall::new("execute_sql").with_arguments(&victim_args).with_grant("victim");
    let d = e.evaluate(&victim);
    let (key, id) = (d.approval_key().unwrap().to_owned(), d.approval_id().unwrap().to_owned());

    let mut first_flood_key = String::new();
    for i in 0..100_000u32 {
        let args = json!({ "statement": format!("delete from t where id = {i}") });
        let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("mallory");
        let d = e.evaluate(&call);
        assert_eq!(d.kind(), Approve);
        if i == 0 {
            first_flood_key = d.approval_key().unwrap().to_owned();
        }
    }
    let pending = e.pending_approvals();
    let mallory = pending.iter().filter(|p| p.grant == "mallory").count();
    assert_eq!(mallory, MAX_PENDING_PER_GRANT, "the flooding grant holds at most its cap");
    assert!(pending.iter().any(|p| p.id == id && p.grant == "victim"));
    // The flooder lost its own oldest.
    let first = json!({"statement": "delete from t where id = 0"});
    let first_call = ToolCall::new("execute_sql").with_arguments(&first).with_grant("mallory");
    assert_eq!(e.evaluate(&first_call.with_approval_key(&first_flood_key)).kind(), Deny);
    // The victim's approval still works, in band and out of band.
    assert_eq!(e.evaluate(&victim.with_approval_key(&key)).kind(), Allow);
    let d = e.evaluate(&victim);
    e.resolve_approval(d.approval_id().unwrap(), true).unwrap();
    assert_eq!(e.evaluate(&victim).kind(), Allow);
}

// ------------------------------------------------------------ hidden answers as unknown

#[test]
fn a_hidden_tool_answers_exactly_like_a_tool_nobody_has_heard_of() {
    let (e, _) = evaluator(json!({"version": "1", "default": "deny",
        "hide": ["internal_*", "drop_database"], "tools": {"search": {}, "internal_*": {}}}));
    for hidden in ["drop_database", "internal_reset"] {
        let h = e.evaluate(&ToolCall::new(hidden));
        let u = e.evaluate(&ToolCall::new("never_heard_of"));
        assert_eq!(h.kind(), u.kind());
        assert_eq!(h.message(), u.message());
        assert_eq!(h.client_text(), u.client_text());
        // Only the tool's name and the rule pointer differ: the pointer is for the operator.
        let mut hj = h.to_json();
        let mut uj = u.to_json();
        assert!(h.rule().starts_with("/hide/"), "{}", h.rule());
        assert_eq!(u.rule(), "/default");
        for j in [&mut hj, &mut uj] {
            j.as_object_mut().unwrap().remove("rule");
            j.as_object_mut().unwrap().remove("tool");
        }
        assert_eq!(hj, uj);
        assert!(!h.message().contains("hidden") && !h.client_text().unwrap().contains("hidden"));
    }
}

// --------------------------------------------------------------- out-of-band approvals

#[test]
fn pending_approvals_list_the_call_and_an_approval_passes_the_identical_retry_once() {
    let (e, clock) = sql(100);
    let args = json!({"statement": "DELETE FROM t WHERE id = 1"});
    let call =
        ToolCall::new("execute_sql").with_arguments(&args).with_grant("alice").with_session("s");
    let d = e.evaluate(&call);
    assert_eq!(d.kind(), Approve);
    let id = d.approval_id().unwrap().to_owned();

    let pending = e.pending_approvals();
    assert_eq!(pending.len(), 1);
    let p = &pending[0];
    assert_eq!(p.id, id);
    assert_eq!(p.tool, "execute_sql");
    assert_eq!(p.arguments, args);
    assert_eq!(p.grant, "alice");
    assert_eq!(p.session.as_deref(), Some("s"));
    assert_eq!(p.rule, "/tools/execute_sql/approve_if/0");
    assert_eq!(p.reason, "data-changing SQL needs a human");
    assert_eq!(p.issued_at, Timestamp::from_unix_seconds(T0));
    assert_eq!(p.expires_at, Timestamp::from_unix_seconds(T0 + 3600.0));
    // The listing never carries the secret key.
    assert!(!format!("{p:?}").contains(d.approval_key().unwrap()));

    // Not yet resolved: the retry asks again (the same entry).
    clock.set(Timestamp::from_unix_seconds(T0 + 10.0));
    assert_eq!(e.evaluate(&call).approval_id(), Some(id.as_str()));
    e.resolve_approval(&id, true).unwrap();
    assert!(e.pending_approvals().is_empty(), "resolved: no longer waiting for a human");
    assert_eq!(
        e.resolve_approval(&id, false),
        Err(ResolveApprovalError::AlreadyResolved(id.clone()))
    );

    // Another grant's or session's identical-looking call does not consume it.
    assert_eq!(e.evaluate(&call.with_grant("mallory")).kind(), Approve);
    assert_eq!(e.evaluate(&call.with_session("s2")).kind(), Approve);
    let no_session = ToolCall::new("execute_sql").with_arguments(&args).with_grant("alice");
    assert_eq!(e.evaluate(&no_session).kind(), Approve);
    // Nor does a call with other arguments.
    let other = json!({"statement": "DELETE FROM t WHERE id = 2"});
    let changed =
        ToolCall::new("execute_sql").with_arguments(&other).with_grant("alice").with_session("s");
    assert_eq!(e.evaluate(&changed).kind(), Approve);

    // The identical retry passes once, saying a human approved it, then asks again with a new
    // entry.
    let approved = e.evaluate(&call);
    assert_eq!(approved.kind(), Allow);
    assert!(approved.approved_by_human() && !approved.refused_by_human());
    let again = e.evaluate(&call);
    assert!(!again.approved_by_human());
    assert_eq!(again.kind(), Approve);
    assert_ne!(again.approval_id(), Some(id.as_str()));
    assert_eq!(e.resolve_approval(&id, true), Err(ResolveApprovalError::Unknown(id.clone())));
}

#[test]
fn a_human_refusal_denies_the_identical_retry_once() {
    let (e, _) = sql(100);
    let args = json!({"statement": "delete from users"});
    let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("g");
    let id = e.evaluate(&call).approval_id().unwrap().to_owned();
    e.resolve_approval(&id, false).unwrap();
    // Another grant's identical call is unaffected.
    assert_eq!(e.evaluate(&call.with_grant("h")).kind(), Approve);
    let d = e.evaluate(&call);
    assert_eq!((d.kind(), d.rule().into_owned()), (Deny, "/tools/execute_sql/approve_if/0".into()));
    assert_eq!(d.message(), "a human refused to approve this exact call");
    assert!(d.refused_by_human() && !d.approved_by_human());
    // Other denies at the same check are not a human's refusal.
    let bad_key = e.evaluate(&call.with_grant("h").with_approval_key("not-a-key"));
    assert_eq!(bad_key.kind(), Deny);
    assert!(!bad_key.refused_by_human());
    // Once: the entry is gone, the next identical call asks again.
    assert_eq!(e.evaluate(&call).kind(), Approve);
    assert_eq!(e.resolve_approval(&id, true), Err(ResolveApprovalError::Unknown(id)));

    // A refusal out of band wins over the key in band.
    let d = e.evaluate(&call);
    let (key, id) = (d.approval_key().unwrap().to_owned(), d.approval_id().unwrap().to_owned());
    e.resolve_approval(&id, false).unwrap();
    let d = e.evaluate(&call.with_approval_key(&key));
    assert_eq!(d.kind(), Deny);
    assert_eq!(d.message(), "a human refused to approve this exact call");
    assert!(d.refused_by_human());
    let gone = e.evaluate(&call.with_approval_key(&key));
    assert_eq!(gone.kind(), Deny, "the key is gone");
    assert!(!gone.refused_by_human(), "an unknown key is not a human's refusal");
}

#[test]
fn an_approved_call_that_is_limited_keeps_its_approval() {
    let (e, clock) = sql(1);
    let args = json!({"statement": "delete from t"});
    let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("g");
    let id = e.evaluate(&call).approval_id().unwrap().to_owned();
    e.resolve_approval(&id, true).unwrap();
    let select = json!({"statement": "select 1"});
    assert_eq!(
        e.evaluate(&ToolCall::new("execute_sql").with_arguments(&select).with_grant("g")).kind(),
        Allow
    );
    assert_eq!(e.evaluate(&call).kind(), Limit);
    assert_eq!(e.evaluate(&call).kind(), Limit, "kept, not consumed");
    clock.set(Timestamp::from_unix_seconds(T0 + 60.0));
    assert_eq!(e.evaluate(&call).kind(), Allow);
    assert_eq!(e.evaluate(&call).kind(), Limit, "used once; the next asks only with room");
}

#[test]
fn a_reload_invalidates_pending_and_approved_entries() {
    let (e, _) = sql(100);
    let args = json!({"statement": "delete from t"});
    let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("g");
    let first = e.evaluate(&call).approval_id().unwrap().to_owned();
    let other = json!({"statement": "delete from u"});
    let call2 = ToolCall::new("execute_sql").with_arguments(&other).with_grant("g");
    let second = e.evaluate(&call2).approval_id().unwrap().to_owned();
    e.resolve_approval(&first, true).unwrap();

    e.reload(policy(json!({"version": "1", "default": "deny", "description": "v2", "tools": {"execute_sql": {
        "approve_if": [{"conditions": [{"path": "args.statement", "op": "regex", "value": "(?i)^delete"}]}],
        "limits": [{"counter": "sql", "window": "minute", "max": 100}]}}})));
    assert!(e.pending_approvals().is_empty());
    assert_eq!(e.resolve_approval(&second, true), Err(ResolveApprovalError::Unknown(second)));
    // The approval given under the old policy does not pass under the new one.
    assert_eq!(e.evaluate(&call).kind(), Approve);
}

#[test]
fn resolving_an_unknown_or_expired_id_is_an_error() {
    let (e, clock) = sql(100);
    assert_eq!(e.resolve_approval("nope", true), Err(ResolveApprovalError::Unknown("nope".into())));
    let args = json!({"statement": "delete from t"});
    let call = ToolCall::new("execute_sql").with_arguments(&args);
    let d = e.evaluate(&call);
    let (key, id) = (d.approval_key().unwrap().to_owned(), d.approval_id().unwrap().to_owned());
    // The key is not an id, and the id is not a key.
    assert!(matches!(e.resolve_approval(&key, true), Err(ResolveApprovalError::Unknown(_))));
    assert_eq!(e.evaluate(&call.with_approval_key(&id)).kind(), Deny);
    clock.set(Timestamp::from_unix_seconds(T0 + 3600.0));
    assert!(e.pending_approvals().is_empty(), "expired entries are not listed");
    assert_eq!(e.resolve_approval(&id, true), Err(ResolveApprovalError::Expired(id.clone())));
    assert!(e.resolve_approval(&id, true).is_err());
    let message = ResolveApprovalError::Unknown("x".into()).to_string();
    assert_eq!(message, "no pending approval has the id `x`");
}

#[test]
fn an_approval_after_expiry_does_not_pass() {
    let (e, clock) = sql(100);
    let e = e.with_approval_ttl(Duration::from_secs(10));
    let args = json!({"statement": "delete from t"});
    let call = ToolCall::new("execute_sql").with_arguments(&args);
    let id = e.evaluate(&call).approval_id().unwrap().to_owned();
    e.resolve_approval(&id, true).unwrap();
    clock.set(Timestamp::from_unix_seconds(T0 + 10.0));
    assert_eq!(e.evaluate(&call).kind(), Approve, "an approval holds until the entry expires");
}

/// Polls a future that is ready at once (the memory store never waits).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the memory store must not wait"),
    }
}
