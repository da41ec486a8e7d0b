//! Transports towards the client.

pub mod stdio;

// Branch `http`.
pub mod http;
