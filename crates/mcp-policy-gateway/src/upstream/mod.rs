//! Transports towards the upstream MCP server.

pub mod stdio;

// Branch `http`.
pub mod client;
pub mod http;
