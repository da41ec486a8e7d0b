//! The relay's side of "whichever answer comes first decides" (out-of-band approvals over HTTP,
//! `RelayConfig::approval_resolutions`): what the end-to-end tests (tests/http_approval_race.rs)
//! cannot arrange, two calls under one entry and a relay that missed announcements.

use super::*;
use crate::approvals::{RESOLUTIONS_BACKLOG, Resolutions};
use crate::guard::Mode;
use mcp_policy::Evaluator;
use tokio::sync::mpsc;

const POLICY: &str = r#"{"version": "1", "default": "deny", "tools": {"t": {
    "approve_if": [{"conditions": [], "reason": "a human must say"}]}}}"#;

/// A decision-log record's `approval` and outcome.
type Logged = (Option<&'static str>, &'static str);

/// A relay with out-of-band approvals, its client asking in band (2025-06-18, elicitation).
struct OutOfBand {
    evaluator: Arc<Evaluator>,
    resolutions: Resolutions,
    client_in: mpsc::Sender<Inbound>,
    client_out: mpsc::Receiver<Value>,
    upstream_in: mpsc::Receiver<Value>,
    upstream_out: mpsc::Sender<Value>,
    /// The decision log's `approval` and outcome of each record, in order.
    logged: Arc<std::sync::Mutex<Vec<Logged>>>,
}

impl OutOfBand {
    /// The relay, its client not initialized (for requests of revisions without `initialize`).
    fn spawn() -> OutOfBand {
        let evaluator = Arc::new(Evaluator::new(POLICY.parse().unwrap()));
        let guard = Arc::new(
            Guard::new(evaluator.clone(), "g", Mode::Enforce).with_out_of_band_approvals(),
        );
        let resolutions = Resolutions::default();
        let config = RelayConfig {
            session: Some("s".into()),
            approval_resolutions: Some(resolutions.clone()),
            ..RelayConfig::default()
        };
        let (client_in, rx) = mpsc::channel(16);
        let (tx, client_out) = mpsc::channel(16);
        let (up_tx, upstream_in) = mpsc::channel(16);
        let (upstream_out, up_rx) = mpsc::channel(16);
        let logged = Arc::new(std::sync::Mutex::new(Vec::new()));
        let theirs = logged.clone();
        let log =
            DecisionLog::disabled().with_observer(Arc::new(move |r: &Record, o: Outcome, _| {
                theirs.lock().unwrap().push((r.approval, o.as_str()));
            }));
        tokio::spawn(Relay::run(
            guard,
            Arc::new(log),
            config,
            ClientLink { tx: tx.into(), rx: rx.into() },
            UpstreamLink { tx: up_tx.into(), rx: up_rx.into() },
        ));
        OutOfBand {
            evaluator,
            resolutions,
            client_in,
            client_out,
            upstream_in,
            upstream_out,
            logged,
        }
    }

    /// The relay, its client initialized (2025-06-18, elicitation).
    async fn start() -> OutOfBand {
        let mut h = OutOfBand::spawn();
        h.client_sends(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
                "clientInfo": {"name": "t", "version": "1"}}}))
            .await;
        let init = h.upstream_gets().await;
        h.upstream_sends(json!({"jsonrpc": "2.0", "id": init["id"], "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "u", "version": "1"}}}))
            .await;
        assert_eq!(h.client_gets().await["id"], 1);
        h
    }

    async fn client_sends(&self, v: Value) {
        self.client_in.send(Inbound::Message(v)).await.unwrap();
    }

    async fn upstream_sends(&self, v: Value) {
        self.upstream_out.send(v).await.unwrap();
    }

    async fn upstream_gets(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(30), self.upstream_in.recv())
            .await
            .expect("nothing reached the upstream")
            .unwrap()
    }

    async fn client_gets(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(30), self.client_out.recv())
            .await
            .expect("nothing reached the client")
            .unwrap()
    }

    /// A call of `t` with `arguments`: the client is asked; the id of the question.
    async fn ask(&mut self, id: i64, arguments: Value) -> Value {
        self.client_sends(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "t", "arguments": arguments}}))
            .await;
        let ask = self.client_gets().await;
        assert_eq!(ask["method"], "elicitation/create", "{ask}");
        ask["id"].clone()
    }

    /// The next call reaching the upstream, answered: its arguments.
    async fn runs(&mut self) -> Value {
        let call = self.upstream_gets().await;
        assert_eq!(call["method"], "tools/call", "{call}");
        self.upstream_sends(json!({"jsonrpc": "2.0", "id": call["id"],
            "result": {"content": [{"type": "text", "text": "ran"}]}}))
            .await;
        call["params"]["arguments"].clone()
    }

    fn pending_ids(&self) -> Vec<String> {
        self.evaluator.pending_approvals().into_iter().map(|p| p.id).collect()
    }
}

/// Two identical calls asked about at once share one entry: the administrator's approval runs
/// one of them, once; the other keeps waiting for its client, under the new entry the core
/// names, and runs when the client accepts it.
#[tokio::test]
async fn one_approval_runs_one_of_two_identical_calls_the_other_waits() {
    let mut h = OutOfBand::start().await;
    let first = h.ask(10, json!({"a": 1})).await;
    let second = h.ask(11, json!({"a": 1})).await;
    let ids = h.pending_ids();
    assert_eq!(ids.len(), 1, "an identical call reuses the entry");
    h.evaluator.resolve_approval(&ids[0], true).unwrap();
    h.resolutions.announce(&ids[0]);

    let cancel = h.client_gets().await;
    assert_eq!(cancel["method"], "notifications/cancelled", "{cancel}");
    let withdrawn = cancel["params"]["requestId"].clone();
    assert!(withdrawn == first || withdrawn == second, "{cancel}");
    assert_eq!(h.runs().await, json!({"a": 1}));
    let answered = h.client_gets().await;
    let (ran, still) = if withdrawn == first { (10, &second) } else { (11, &first) };
    assert_eq!(answered["id"], ran, "{answered}");
    assert_eq!(answered["result"]["content"][0]["text"], "ran", "{answered}");

    let now = h.pending_ids();
    assert_eq!(now.len(), 1, "the other call waits under a new entry: {now:?}");
    assert_ne!(now[0], ids[0]);
    h.client_sends(json!({"jsonrpc": "2.0", "id": still,
        "result": {"action": "accept", "content": {"approve": true}}}))
        .await;
    assert_eq!(h.runs().await, json!({"a": 1}));
    let answered = h.client_gets().await;
    assert_eq!(answered["id"], if ran == 10 { 11 } else { 10 }, "{answered}");
    assert!(h.pending_ids().is_empty());
}

/// A relay that missed announcements (more than [`RESOLUTIONS_BACKLOG`] came at once) decides
/// again every call it asks about: the resolved one runs, the one still waiting keeps waiting
/// (nothing is approved that nobody approved).
#[tokio::test]
async fn a_relay_that_missed_announcements_still_applies_them() {
    let mut h = OutOfBand::start().await;
    let first = h.ask(10, json!({"a": 1})).await;
    let second = h.ask(11, json!({"b": 2})).await;
    let ids = h.pending_ids();
    assert_eq!(ids.len(), 2);
    let resolved = h
        .evaluator
        .pending_approvals()
        .into_iter()
        .find(|p| p.arguments == json!({"a": 1}))
        .unwrap()
        .id;
    h.evaluator.resolve_approval(&resolved, true).unwrap();
    // The relay's task runs only when this one waits (a current-thread runtime): it has
    // missed the first of these when it reads them.
    for n in 0..=RESOLUTIONS_BACKLOG {
        h.resolutions.announce(&format!("other-{n}"));
    }

    let cancel = h.client_gets().await;
    assert_eq!(cancel["method"], "notifications/cancelled", "{cancel}");
    assert_eq!(cancel["params"]["requestId"], first, "{cancel}");
    assert_eq!(h.runs().await, json!({"a": 1}), "the resolved call runs, the other does not");
    assert_eq!(h.client_gets().await["id"], 10);
    let waiting = h.pending_ids();
    assert_eq!(waiting.len(), 1);
    assert_ne!(waiting[0], resolved, "the other entry still waits, unchanged");

    h.client_sends(json!({"jsonrpc": "2.0", "id": second,
        "result": {"action": "accept", "content": {"approve": true}}}))
        .await;
    assert_eq!(h.runs().await, json!({"b": 2}));
    assert_eq!(h.client_gets().await["id"], 11);
}

/// A human who declines an approval round (`input_required`, clients without `initialize`)
/// has answered first, as one who declines through elicitation: the administrator's entry is
/// refused too, not left for a late approval that would run the agent's next identical call
/// without anyone asking. A cancelled round is nobody's answer: its entry stays.
#[tokio::test]
async fn a_declined_round_refuses_the_administrators_entry_a_cancelled_one_leaves_it() {
    /// A call of `t` of revision 2026-07-28 (with `answer`: the retry answering a round): its
    /// result.
    async fn call(
        h: &mut OutOfBand,
        id: i64,
        arguments: &Value,
        answer: Option<(&Value, &Value)>,
    ) -> Value {
        let meta = json!({
            META_PROTOCOL_VERSION: "2026-07-28",
            META_CLIENT_CAPABILITIES: {"elicitation": {"form": {}}},
        });
        let mut params = json!({"name": "t", "arguments": arguments, "_meta": meta});
        if let Some((response, state)) = answer {
            params["inputResponses"] = json!({ APPROVAL_INPUT: response });
            params["requestState"] = state.clone();
        }
        h.client_sends(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}),
        )
        .await;
        h.client_gets().await["result"].clone()
    }
    let mut h = OutOfBand::spawn();
    for (n, response, refused) in [
        (1, json!({"action": "decline"}), true),
        (2, json!({"action": "accept", "content": {"approve": false}}), true),
        (3, json!({"action": "cancel"}), false),
    ] {
        let arguments = json!({ "n": n });
        let round = call(&mut h, n * 10, &arguments, None).await;
        assert_eq!(round["resultType"], "input_required", "{round}");
        let ids = h.pending_ids();
        assert_eq!(ids.len(), 1, "{ids:?}");
        let answer = Some((&response, &round["requestState"]));
        let answered = call(&mut h, n * 10 + 1, &arguments, answer).await;
        assert_eq!(answered["isError"], true, "{response}");
        if refused {
            assert!(h.pending_ids().is_empty(), "{response}: the entry is no longer waiting");
            assert!(h.evaluator.resolve_approval(&ids[0], true).is_err(), "{response}: answered");
        } else {
            assert_eq!(h.pending_ids(), ids, "{response}: the entry stays for the administrator");
            h.evaluator.resolve_approval(&ids[0], false).unwrap();
            // The refusal is spent by the next identical call, so the next case starts clean.
            let r = call(&mut h, n * 10 + 2, &arguments, None).await;
            assert_eq!(r["isError"], true, "{r}");
        }
    }
}

/// The administrator answers first, but the client's answer reaches the relay before the
/// announcement does (the admin API announces after the core recorded the answer, and the
/// relay reads its client and the announcements in no fixed order): the first answer still
/// decides. Approved first, the call runs once, whatever the client then says (a decline, a
/// cancel); refused first, it is refused as the administrator said (*"Approval refused"*, also
/// when the client accepts), and the refusal is spent with it (the agent's next identical call
/// is asked again, not refused).
#[tokio::test]
async fn the_administrator_answering_first_decides_though_the_client_answers_before_the_news() {
    for (n, approve, answer) in [
        (1, true, json!({"action": "decline"})),
        (2, true, json!({"action": "accept", "content": {"approve": false}})),
        (3, true, json!({"action": "cancel"})),
        (4, false, json!({"action": "decline"})),
        (5, false, json!({"action": "cancel"})),
        (6, false, json!({"action": "accept", "content": {"approve": true}})),
    ] {
        let mut h = OutOfBand::start().await;
        let arguments = json!({ "n": n });
        let ask = h.ask(10, arguments.clone()).await;
        let ids = h.pending_ids();
        assert_eq!(ids.len(), 1);
        h.evaluator.resolve_approval(&ids[0], approve).unwrap();
        h.client_sends(json!({"jsonrpc": "2.0", "id": ask, "result": answer})).await;
        if approve {
            assert_eq!(h.runs().await, arguments, "{answer}: the administrator approved first");
            let r = h.client_gets().await;
            assert_eq!(r["id"], 10, "{r}");
            assert_eq!(r["result"]["content"][0]["text"], "ran", "{answer}: {r}");
        } else {
            let r = h.client_gets().await;
            assert_eq!(r["id"], 10, "{r}");
            assert_eq!(r["result"]["isError"], true, "{r}");
            let text = r["result"]["content"][0]["text"].as_str().unwrap();
            assert!(text.starts_with("Approval refused"), "{answer}: {text}");
        }
        let (approval, outcome) = h.logged.lock().unwrap().last().copied().unwrap();
        let expected = if approve {
            (Some("approved_out_of_band"), "ok")
        } else {
            (Some("refused_out_of_band"), "not_dispatched")
        };
        assert_eq!((approval, outcome), expected, "{answer}");
        // The late announcement changes nothing; the answer is spent: the next identical call
        // is asked again.
        h.resolutions.announce(&ids[0]);
        let again = h.ask(11, arguments.clone()).await;
        assert_ne!(again, ask);
        assert_eq!(h.pending_ids().len(), 1, "{answer}");
        assert_ne!(h.pending_ids()[0], ids[0], "{answer}");
        assert!(h.upstream_in.try_recv().is_err(), "{answer}: nothing else ran");
    }
}

/// A policy reloaded while the client is asked drops the entry (an approval holds for the
/// policy it was asked under). A relay that then decides the call again (it missed
/// announcements) names the new entry, for the administrator, but the client's accept of the
/// question asked under the old policy approves nothing under the new one; the
/// administrator's approval of the new entry runs the call at once.
#[tokio::test]
async fn an_accept_asked_under_the_old_policy_approves_nothing_under_the_new_one() {
    let mut h = OutOfBand::start().await;
    let ask = h.ask(10, json!({"a": 1})).await;
    let old = h.pending_ids();
    assert_eq!(old.len(), 1);
    h.evaluator
        .reload(POLICY.replace("a human must say", "a human must say it again").parse().unwrap());
    assert!(h.pending_ids().is_empty(), "the reload drops the entry");
    for n in 0..=RESOLUTIONS_BACKLOG {
        h.resolutions.announce(&format!("other-{n}"));
    }
    let mut new = h.pending_ids();
    while new.is_empty() {
        tokio::task::yield_now().await;
        new = h.pending_ids();
    }
    assert_ne!(new, old);

    h.client_sends(json!({"jsonrpc": "2.0", "id": ask,
        "result": {"action": "accept", "content": {"approve": true}}}))
        .await;
    let r = h.client_gets().await;
    assert_eq!(r["id"], 10, "{r}");
    assert_eq!(r["result"]["isError"], true, "asked under the old policy: {r}");
    assert!(h.upstream_in.try_recv().is_err(), "nothing ran");

    // Asked again under the new policy, the administrator's approval decides it.
    let again = h.ask(11, json!({"a": 1})).await;
    let id = h.pending_ids();
    assert_eq!(id, new, "the same entry");
    h.evaluator.resolve_approval(&id[0], true).unwrap();
    h.resolutions.announce(&id[0]);
    let cancel = h.client_gets().await;
    assert_eq!(cancel["params"]["requestId"], again, "{cancel}");
    assert_eq!(h.runs().await, json!({"a": 1}));
    assert_eq!(h.client_gets().await["id"], 11);
}

/// A client cannot pile up calls waiting for a human without bound (each one held in memory,
/// looked at on every announcement, decided again when the relay missed some): past
/// [`MAX_WAITING_APPROVALS`], a call to approve is refused at once, not asked; once one is
/// answered, the next is asked again.
#[tokio::test]
async fn a_session_has_at_most_so_many_calls_waiting_for_a_human() {
    let mut h = OutOfBand::start().await;
    let mut asks = Vec::new();
    for n in 0..MAX_WAITING_APPROVALS {
        asks.push(h.ask(100 + i64::try_from(n).unwrap(), json!({ "n": n })).await);
    }
    h.client_sends(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "t", "arguments": {"n": "one too many"}}}))
        .await;
    let r = h.client_gets().await;
    assert_eq!(r["id"], 1, "{r}");
    assert_eq!(r["result"]["isError"], true, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("wait for a human's approval"), "{text}");
    assert_eq!(h.logged.lock().unwrap().last().copied(), Some((Some("failed"), "not_dispatched")));

    h.client_sends(json!({"jsonrpc": "2.0", "id": asks[0], "result": {"action": "decline"}})).await;
    assert_eq!(h.client_gets().await["id"], 100);
    h.ask(2, json!({"n": "asked now"})).await;
}

/// A relay whose client is asked about nothing is not woken by the administrator's answers
/// (each would cost every session's relay a turn); those it left are taken once a call waits,
/// deciding nothing anew, and the ones that come then are applied.
#[tokio::test]
async fn a_relay_asking_nothing_is_not_woken_by_announcements() {
    let mut h = OutOfBand::start().await;
    for n in 0..2 * RESOLUTIONS_BACKLOG {
        h.resolutions.announce(&format!("other-{n}"));
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(h.resolutions.untaken(), RESOLUTIONS_BACKLOG, "the relay was woken");

    let ask = h.ask(10, json!({"a": 1})).await;
    let ids = h.pending_ids();
    h.evaluator.resolve_approval(&ids[0], true).unwrap();
    h.resolutions.announce(&ids[0]);
    let cancel = h.client_gets().await;
    assert_eq!(cancel["params"]["requestId"], ask, "{cancel}");
    assert_eq!(h.runs().await, json!({"a": 1}));
    assert_eq!(h.client_gets().await["id"], 10);
}

/// An approval round declined after the administrator answered: their answer decides the
/// retry, as the agent's retry without an answer would be decided (approved: it runs, once;
/// refused: *"Approval refused"*, the refusal spent), not a decline that leaves their answer for
/// a later call.
#[tokio::test]
async fn a_round_declined_after_the_administrator_answered_is_decided_by_them() {
    let mut h = OutOfBand::spawn();
    let meta = json!({
        META_PROTOCOL_VERSION: "2026-07-28",
        META_CLIENT_CAPABILITIES: {"elicitation": {"form": {}}},
    });
    for (n, approve) in [(1, true), (2, false)] {
        let arguments = json!({ "n": n });
        let params = json!({"name": "t", "arguments": arguments, "_meta": meta});
        let msg = json!({"jsonrpc": "2.0", "id": n * 10, "method": "tools/call", "params": params});
        h.client_sends(msg).await;
        let round = h.client_gets().await["result"].clone();
        assert_eq!(round["resultType"], "input_required", "{round}");
        let id = h.evaluator.pending_approvals().into_iter().find(|p| p.arguments == arguments);
        h.evaluator.resolve_approval(&id.unwrap().id, approve).unwrap();

        let mut params = params.clone();
        params["inputResponses"] = json!({ APPROVAL_INPUT: {"action": "decline"} });
        params["requestState"] = round["requestState"].clone();
        let msg =
            json!({"jsonrpc": "2.0", "id": n * 10 + 1, "method": "tools/call", "params": params});
        h.client_sends(msg).await;
        if approve {
            let call = h.upstream_gets().await;
            assert_eq!(call["params"]["arguments"], arguments, "{call}");
            assert!(call["params"].get("inputResponses").is_none(), "{call}");
            h.upstream_sends(json!({"jsonrpc": "2.0", "id": call["id"],
                "result": {"content": [{"type": "text", "text": "ran"}]}}))
                .await;
            let r = h.client_gets().await;
            assert_eq!(r["result"]["content"][0]["text"], "ran", "{r}");
        } else {
            let r = h.client_gets().await;
            let text = r["result"]["content"][0]["text"].as_str().unwrap().to_owned();
            assert!(text.starts_with("Approval refused"), "{text}");
        }
        // Spent: the next identical call is asked again.
        let msg = json!({"jsonrpc": "2.0", "id": n * 10 + 2, "method": "tools/call",
            "params": {"name": "t", "arguments": arguments, "_meta": meta}});
        h.client_sends(msg).await;
        let again = h.client_gets().await["result"].clone();
        assert_eq!(again["resultType"], "input_required", "{again}");
        assert!(h.upstream_in.try_recv().is_err());
    }
}

/// Two identical calls asked about under one entry: the client declining one leaves the entry
/// for the other, still asked (its accept runs it; the administrator still sees it); declining
/// the last refuses the entry.
#[tokio::test]
async fn declining_one_of_two_identical_calls_leaves_the_entry_for_the_other() {
    let mut h = OutOfBand::start().await;
    let first = h.ask(10, json!({"a": 1})).await;
    let second = h.ask(11, json!({"a": 1})).await;
    let ids = h.pending_ids();
    assert_eq!(ids.len(), 1);
    h.client_sends(json!({"jsonrpc": "2.0", "id": first, "result": {"action": "decline"}})).await;
    let r = h.client_gets().await;
    assert_eq!(r["id"], 10, "{r}");
    assert!(r["result"]["content"][0]["text"].as_str().unwrap().starts_with("Approval declined"));
    assert_eq!(h.pending_ids(), ids, "the other call still asks under the entry");
    h.client_sends(json!({"jsonrpc": "2.0", "id": second,
        "result": {"action": "accept", "content": {"approve": true}}}))
        .await;
    assert_eq!(h.runs().await, json!({"a": 1}));
    assert_eq!(h.client_gets().await["id"], 11);

    // Declining the last one asked refuses the entry.
    let first = h.ask(12, json!({"a": 1})).await;
    let second = h.ask(13, json!({"a": 1})).await;
    let ids = h.pending_ids();
    for ask in [first, second] {
        h.client_sends(json!({"jsonrpc": "2.0", "id": ask, "result": {"action": "decline"}})).await;
        let r = h.client_gets().await;
        let text = r["result"]["content"][0]["text"].as_str().unwrap().to_owned();
        assert!(text.starts_with("Approval declined"), "{text}");
    }
    assert!(h.pending_ids().is_empty());
    assert!(h.evaluator.resolve_approval(&ids[0], true).is_err(), "refused with the last");
}
