//! Enforce or monitor.

/// Whether the evaluator's decisions are enforced or only reported.
///
/// In [`Monitor`](Mode::Monitor) mode the evaluator decides exactly as in
/// [`Enforce`](Mode::Enforce) mode, and its decisions say what *would* happen
/// ([`Decision::kind`](crate::Decision::kind)), but they are marked
/// [monitored](crate::Decision::is_monitored) so that the embedder dispatches the call anyway
/// ([`Decision::should_dispatch`](crate::Decision::should_dispatch)). It charges only what
/// enforcing would charge: an allowed call charges its limits (so the counts, and the `limit`
/// decisions that follow, are the ones enforcing would see), a denied, limited or approve
/// decision charges nothing, and no pending approval is created. Use it to roll a policy out on
/// a live server and read what it would refuse before it refuses anything.
///
/// ```
/// use mcp_policy::{Evaluator, Mode, Policy};
///
/// let policy: Policy = r#"{"version": "1", "default": "deny"}"#.parse()?;
/// let evaluator = Evaluator::new(policy).with_mode(Mode::Monitor);
/// assert_eq!(evaluator.mode(), Mode::Monitor);
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Decisions are enforced: dispatch only what is allowed (the default).
    #[default]
    Enforce,
    /// Decisions are reported, never enforced: dispatch every call, log what would happen.
    Monitor,
}

impl Mode {
    /// `"enforce"` or `"monitor"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
