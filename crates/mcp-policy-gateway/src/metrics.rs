//! Prometheus metrics, served as text at `/metrics` on the HTTP listener.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `mcp_policy_gateway_decisions_total` | counter | `tool`, `kind` (allow, deny, limit, approve), `rule` (JSON Pointer) |
//! | `mcp_policy_gateway_upstream_latency_seconds` | histogram | |
//! | `mcp_policy_gateway_reloads_total` | counter | `outcome` (`reloaded`, `refused`) |
//! | `mcp_policy_gateway_store_errors_total` | counter | |
//! | `mcp_policy_gateway_sessions` | gauge | |
//! | `mcp_policy_gateway_decision_log_dropped_total` | counter | |
//!
//! A decision is counted when it is written to the decision log (an allowed call once the
//! upstream answered). The `tool` label takes at most [`MAX_TOOLS`] distinct names; calls of
//! further names (a client probing tool names) are counted under `tool="_other"`, so that a client
//! cannot grow the metrics without bound. A decision is counted even when its decision-log line
//! is dropped (the log's queue toward a stalled sink was full, or the sink failed); such lines
//! are counted in `mcp_policy_gateway_decision_log_dropped_total`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use mcp_policy::{AsyncCounterStore, ChargeOutcome, ChargeRequest, StoreError, Timestamp};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decision_log::{Observer, Outcome, Record};

/// The most distinct tool names in labels.
pub const MAX_TOOLS: usize = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    tool: String,
    kind: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: String,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    upstream_latency: Histogram,
    reloads: Family<ReloadLabels, Counter>,
    store_errors: Counter,
    sessions: Gauge,
    decision_log_dropped: Counter,
    tools: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_policy_gateway");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Tool-call decisions by tool, kind and rule",
            decisions.clone(),
        );
        // 0.5 ms to about 16 s.
        let upstream_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "upstream_latency_seconds",
            "Time the upstream took to answer an allowed tool call",
            upstream_latency.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Policy reloads by outcome (reloaded, refused)",
            reloads.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Errors of the counter store (each one denied a call, fail-closed)",
            store_errors.clone(),
        );
        let sessions = Gauge::default();
        registry.register("sessions", "MCP sessions open on the HTTP listener", sessions.clone());
        let decision_log_dropped = Counter::default();
        registry.register(
            "decision_log_dropped",
            "Decision-log lines dropped: the queue toward a slow or stalled sink was full, or the \
             sink failed (the decisions are still counted in decisions_total)",
            decision_log_dropped.clone(),
        );
        Metrics {
            registry,
            decisions,
            upstream_latency,
            reloads,
            store_errors,
            sessions,
            decision_log_dropped,
            tools: Mutex::new(HashSet::new()),
        }
    }

    /// Counts a decision (and the upstream's latency, when it answered).
    pub fn observe(&self, record: &Record, outcome: Outcome, upstream_ms: Option<f64>) {
        let tool = {
            let mut tools = self.tools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if tools.contains(&record.tool) {
                record.tool.clone()
            } else if tools.len() < MAX_TOOLS {
                tools.insert(record.tool.clone());
                record.tool.clone()
            } else {
                "_other".to_owned()
            }
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                tool,
                kind: record.decision.to_owned(),
                rule: record.rule.clone(),
            })
            .inc();
        if let Some(ms) = upstream_ms
            && matches!(outcome, Outcome::Ok | Outcome::ToolError | Outcome::Error)
        {
            self.upstream_latency.observe(ms / 1e3);
        }
    }

    /// The decision-log observer that counts decisions here.
    pub fn observer(self: &Arc<Self>) -> Observer {
        let me = self.clone();
        Arc::new(move |r: &Record, o: Outcome, ms: Option<f64>| me.observe(r, o, ms))
    }

    /// The counter of dropped decision-log lines, for [`DecisionLog::open`] to count in.
    ///
    /// [`DecisionLog::open`]: crate::decision_log::DecisionLog::open
    pub fn decision_log_dropped(&self) -> Counter {
        self.decision_log_dropped.clone()
    }

    /// Counts a reload attempt.
    pub fn reload(&self, reloaded: bool) {
        let outcome = if reloaded { "reloaded" } else { "refused" };
        self.reloads.get_or_create(&ReloadLabels { outcome: outcome.to_owned() }).inc();
    }

    /// Counts an error of the counter store.
    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// Sets the number of open sessions.
    pub fn set_sessions(&self, n: usize) {
        self.sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A counter store that counts its errors in [`Metrics`].
#[derive(Debug, Clone)]
pub struct MeteredStore<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> MeteredStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }
}

impl<S: AsyncCounterStore> AsyncCounterStore for MeteredStore<S> {
    async fn charge_async(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError> {
        let r = self.inner.charge_async(now, batch).await;
        if r.is_err() {
            self.metrics.store_error();
        }
        r
    }

    async fn refund_async(
        &self,
        now: Timestamp,
        charged_at: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<(), StoreError> {
        let r = self.inner.refund_async(now, charged_at, batch).await;
        if r.is_err() {
            self.metrics.store_error();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tool: &str, kind: &'static str) -> Record {
        Record {
            tool: tool.into(),
            grant: "g".into(),
            session: None,
            decision: kind,
            rule: "/tools/t".into(),
            message: String::new(),
            policy: String::new(),
            eval_us: 1.0,
            monitor: false,
            approval: None,
        }
    }

    #[test]
    fn renders_decisions_latency_reloads_and_caps_tools() {
        let m = Metrics::new();
        m.observe(&record("t", "allow"), Outcome::Ok, Some(2.0));
        m.observe(&record("t", "allow"), Outcome::Ok, Some(3.0));
        m.observe(&record("t", "deny"), Outcome::NotDispatched, None);
        m.reload(true);
        m.reload(false);
        m.store_error();
        m.decision_log_dropped().inc_by(3);
        for i in 0..MAX_TOOLS + 5 {
            m.observe(&record(&format!("x{i}"), "deny"), Outcome::NotDispatched, None);
        }
        let text = m.render();
        assert!(
            text.contains(
                r#"mcp_policy_gateway_decisions_total{tool="t",kind="allow",rule="/tools/t"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("mcp_policy_gateway_upstream_latency_seconds_count 2"), "{text}");
        assert!(text.contains(r#"mcp_policy_gateway_reloads_total{outcome="refused"} 1"#));
        assert!(text.contains("mcp_policy_gateway_store_errors_total 1"));
        assert!(text.contains("mcp_policy_gateway_decision_log_dropped_total 3"), "{text}");
        assert!(text.contains(r#"tool="_other""#));
        assert!(!text.contains(&format!("tool=\"x{}\"", MAX_TOOLS + 2)));
    }
}
