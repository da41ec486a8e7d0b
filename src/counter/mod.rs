//! Counters: the store contract, the in-memory store, clocks and windows.
//!
//! A counter is identified by its name and its scope value (the grant, the grant and session, or
//! nothing for a global counter). The evaluator hands a store every counter a call must charge as
//! one batch, which the store checks and charges atomically. [`MemoryStore`] keeps counters in
//! process; other stores (Redis, for servers that run as several replicas) implement
//! [`CounterStore`], or [`AsyncCounterStore`] when they do I/O.

mod clock;
mod fast;
mod memory;
mod store;
mod window;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use fast::FastClock;
pub use memory::MemoryStore;
pub use store::{
    AsyncCounterStore, ChargeOutcome, ChargeRequest, CounterKey, CounterStore, ScopeKey,
    StoreError, StoreErrorKind, WindowSpec,
};
pub use window::SLIDING_BUCKETS;
