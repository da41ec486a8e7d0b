//! Unit tests of the pending approvals.

use super::key::binding;
use super::*;
use serde_json::json;

const ASK: Ask<'static> = Ask { rule: "/tools/t/approve_if/0", reason: "why" };

fn issue(a: &Approvals, call: &ToolCall<'_>, digest: &str, now: Timestamp) -> String {
    a.issue(call, &binding(call, digest), digest, ASK, now).0
}

fn valid(a: &Approvals, key: &str, call: &ToolCall<'_>, digest: &str, now: Timestamp) -> bool {
    matches!(a.take(key, &binding(call, digest), now, false), KeyUse::Valid(_))
}

#[test]
fn binding_is_canonical() {
    let a = json!({"x": 1.0, "y": [1, 2]});
    let b = json!({"y": [1, 2.0], "x": 1});
    let ca = ToolCall::new("t").with_arguments(&a).with_grant("g");
    let cb = ToolCall::new("t").with_arguments(&b).with_grant("g");
    assert_eq!(binding(&ca, "d").digest, binding(&cb, "d").digest);
    assert_ne!(binding(&ca, "d").digest, binding(&ca, "e").digest);
    assert_ne!(binding(&ca, "d").digest, binding(&ca.with_session("s"), "d").digest);
    assert_eq!(binding(&ca, "d").bytes, r#"{"x":1,"y":[1,2]}"#.len());
}

#[test]
fn pending_keys_are_bounded_and_the_oldest_go_first() {
    let mut approvals = Approvals::new(Duration::from_secs(3600));
    approvals.caps.global = 3;
    let args: Vec<Value> = (0..5).map(|i| json!({ "i": i })).collect();
    let calls: Vec<ToolCall<'_>> =
        args.iter().map(|a| ToolCall::new("t").with_arguments(a)).collect();
    let keys: Vec<String> = (0..5)
        .map(|i| issue(&approvals, &calls[i], "d", Timestamp::from_unix_seconds(100.0 + i as f64)))
        .collect();
    assert_eq!(approvals.len(), 3);
    let now = Timestamp::from_unix_seconds(200.0);
    assert!(!valid(&approvals, &keys[0], &calls[0], "d", now), "the oldest was forgotten");
    assert!(!valid(&approvals, &keys[1], &calls[1], "d", now));
    assert!(valid(&approvals, &keys[4], &calls[4], "d", now));
    // Expired keys are swept before the oldest live one is dropped.
    let mut approvals = Approvals::new(Duration::from_secs(10));
    approvals.caps.global = 2;
    let old = issue(&approvals, &calls[0], "d", Timestamp::from_unix_seconds(0.0));
    let live = issue(&approvals, &calls[1], "d", Timestamp::from_unix_seconds(95.0));
    let _new = issue(&approvals, &calls[2], "d", Timestamp::from_unix_seconds(100.0));
    let at = Timestamp::from_unix_seconds(100.0);
    assert!(valid(&approvals, &live, &calls[1], "d", at));
    assert!(!valid(&approvals, &old, &calls[0], "d", at));
}

#[test]
fn an_identical_pending_call_reuses_its_entry() {
    let approvals = Approvals::new(Duration::from_secs(10));
    let call = ToolCall::new("t").with_grant("g");
    let t0 = Timestamp::from_unix_seconds(100.0);
    let b = binding(&call, "d");
    let first = approvals.issue(&call, &b, "d", ASK, t0);
    let again = approvals.issue(&call, &b, "d", ASK, t0);
    assert_eq!(first, again);
    assert_eq!(approvals.len(), 1);
    // Once it expired, a new entry with a new key.
    let later = approvals.issue(&call, &b, "d", ASK, Timestamp::from_unix_seconds(111.0));
    assert_ne!(first.0, later.0);
    assert_ne!(first.1, later.1);
    assert_eq!(approvals.len(), 1);
}

#[test]
fn the_id_does_not_reveal_the_key() {
    let approvals = Approvals::new(Duration::from_secs(10));
    let call = ToolCall::new("t");
    let (key, id) =
        approvals.issue(&call, &binding(&call, "d"), "d", ASK, Timestamp::from_unix_seconds(1.0));
    assert_eq!((key.len(), id.len()), (64, 32));
    assert!(!key.contains(&id));
    assert_eq!(unhex::<32>(&key).map(|k| hex(&k)), Some(key.clone()));
    assert!(unhex::<32>(&key.to_uppercase()).is_none() || key.to_uppercase() == key);
    assert!(unhex::<16>("0g000000000000000000000000000000").is_none());
    let b = binding(&call, "d");
    assert!(matches!(
        approvals.take(&id, &b, Timestamp::from_unix_seconds(1.0), false),
        KeyUse::Invalid
    ));
}

#[test]
fn a_grant_over_its_byte_budget_loses_its_own_oldest() {
    let mut approvals = Approvals::new(Duration::from_secs(3600));
    approvals.caps.bytes_per_grant = 40;
    let a = json!({"s": "0123456789"}); // 16 bytes
    let b = json!({"s": "abcdefghij"});
    let c = json!({"s": "ABCDEFGHIJ"});
    let t = Timestamp::from_unix_seconds(1.0);
    let other = issue(&approvals, &ToolCall::new("t").with_arguments(&a).with_grant("h"), "d", t);
    let ka = issue(&approvals, &ToolCall::new("t").with_arguments(&a).with_grant("g"), "d", t);
    let kb = issue(&approvals, &ToolCall::new("t").with_arguments(&b).with_grant("g"), "d", t);
    let kc = issue(&approvals, &ToolCall::new("t").with_arguments(&c).with_grant("g"), "d", t);
    let g = |v| ToolCall::new("t").with_arguments(v).with_grant("g");
    assert!(!valid(&approvals, &ka, &g(&a), "d", t), "g's oldest went");
    assert!(valid(&approvals, &kb, &g(&b), "d", t));
    assert!(valid(&approvals, &kc, &g(&c), "d", t));
    let h = ToolCall::new("t").with_arguments(&a).with_grant("h");
    assert!(valid(&approvals, &other, &h, "d", t), "another grant's entry stays");
}

#[test]
fn a_restored_approval_is_found_before_a_prompt_issued_meanwhile() {
    let approvals = Approvals::new(Duration::from_secs(3600));
    let call = ToolCall::new("t");
    let b = binding(&call, "d");
    let t = Timestamp::from_unix_seconds(1.0);
    let (_, id) = approvals.issue(&call, &b, "d", ASK, t);
    approvals.resolve(&id, true, "d", t).unwrap();
    let Earlier::Approved(Some(e)) = approvals.earlier(&b, t, false) else { panic!("approved") };
    // Meanwhile an identical call asks again; then the approved call is refused by a limit.
    let (_, again) = approvals.issue(&call, &b, "d", ASK, t);
    assert_ne!(id, again);
    approvals.restore(e);
    assert!(matches!(approvals.earlier(&b, t, false), Earlier::Approved(_)));
    assert_eq!(approvals.len(), 1, "the prompt issued meanwhile stays listed");
    assert_eq!(approvals.list("d", t)[0].id, again);
}

#[test]
fn keys_are_single_use_and_expire() {
    let approvals = Approvals::new(Duration::from_secs(10));
    let call = ToolCall::new("t");
    let t0 = Timestamp::from_unix_seconds(100.0);
    let k = issue(&approvals, &call, "d", t0);
    assert!(!valid(&approvals, &k, &call, "e", t0), "another policy");
    assert!(valid(&approvals, &k, &call, "d", t0));
    assert!(!valid(&approvals, &k, &call, "d", t0), "second use");
    let k = issue(&approvals, &call, "d", t0);
    assert!(!valid(&approvals, &k, &call, "d", Timestamp::from_unix_seconds(111.0)));
    assert_eq!(approvals.len(), 0, "an expired entry is dropped when met");
}
