//! Transports towards the client.

pub mod stdio;
