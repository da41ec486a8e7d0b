//! Transports towards the upstream MCP server.

pub mod stdio;
