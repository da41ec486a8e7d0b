//! What an allowed decision charged, for a rollback: borrowed in the decision ([`Charge`]), owned
//! once taken out of it ([`ChargeReceipt`]).

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::counter::Timestamp;

/// What an allowed call charged, so that it can be rolled back. Not `Clone`: a charge is
/// returned once.
#[derive(Debug)]
pub(crate) struct Charge<'a> {
    pub(crate) generation: u64,
    pub(crate) at: Timestamp,
    pub(crate) grant: Cow<'a, str>,
    pub(crate) session: Option<Cow<'a, str>>,
    /// (index of the limit in the policy, units charged).
    pub(crate) entries: SmallVec<[(u32, u64); 4]>,
}

/// What an allowed decision charged, owned: taken out of the decision with
/// [`Decision::take_receipt`](crate::Decision::take_receipt) and returned with
/// [`Evaluator::rollback_receipt`](crate::Evaluator::rollback_receipt), which consumes it.
///
/// A receipt is move-only: it cannot be cloned, so the units it names come back once at most.
///
/// ```compile_fail
/// # use mcp_policy::{Evaluator, Policy, ToolCall};
/// # let policy: Policy = r#"{"version": "1", "default": "allow"}"#.parse().unwrap();
/// # let evaluator = Evaluator::new(policy);
/// let receipt = evaluator.evaluate(&ToolCall::new("t")).take_receipt().unwrap();
/// let copy = receipt.clone(); // error: `ChargeReceipt` is not `Clone`
/// ```
///
/// ```compile_fail
/// # use mcp_policy::{Evaluator, Policy, ToolCall};
/// # let policy: Policy = r#"{"version": "1", "default": "allow"}"#.parse().unwrap();
/// # let evaluator = Evaluator::new(policy);
/// let receipt = evaluator.evaluate(&ToolCall::new("t")).take_receipt().unwrap();
/// evaluator.rollback_receipt(receipt).unwrap();
/// evaluator.rollback_receipt(receipt).unwrap(); // error: use of a moved value
/// ```
#[derive(Debug)]
pub struct ChargeReceipt {
    generation: u64,
    at: Timestamp,
    grant: String,
    session: Option<String>,
    entries: Vec<(u32, u64)>,
}

impl ChargeReceipt {
    pub(crate) fn as_charge(&self) -> Charge<'_> {
        Charge {
            generation: self.generation,
            at: self.at,
            grant: Cow::Borrowed(&self.grant),
            session: self.session.as_deref().map(Cow::Borrowed),
            entries: self.entries.iter().copied().collect(),
        }
    }

    /// The owned receipt of `charge`.
    pub(crate) fn from_charge(c: Charge<'_>) -> Self {
        ChargeReceipt {
            generation: c.generation,
            at: c.at,
            grant: c.grant.into_owned(),
            session: c.session.map(Cow::into_owned),
            entries: c.entries.to_vec(),
        }
    }
}
