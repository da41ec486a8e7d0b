//! JSON utilities, the lowest layer: the positioned reader (line, column and JSON Pointer of
//! every value, duplicate keys, depth), JSON Pointer (RFC 6901) and canonical JSON (RFC 8785).
//!
//! This module imports nothing else from the crate (`tests/layers.rs` checks it).

pub(crate) mod canonical;
pub(crate) mod pointer;
pub(crate) mod source;
