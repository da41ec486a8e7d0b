//! JSON-RPC 2.0 framing over `serde_json::Value`: the gateway relays messages as JSON values, so
//! that fields it does not know (newer protocol revisions, extensions) pass through unchanged.

use serde_json::{Map, Value, json};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error (the gateway uses it when the upstream cannot answer).
pub const INTERNAL_ERROR: i64 = -32603;

/// What a JSON value is, as a JSON-RPC message.
#[derive(Debug, PartialEq)]
pub enum Kind<'a> {
    /// A request: it has a method and an id and expects a response.
    Request {
        /// The request's id (a string or a number).
        id: &'a Value,
        /// The method name.
        method: &'a str,
    },
    /// A notification: a method without an id.
    Notification {
        /// The method name.
        method: &'a str,
    },
    /// A response (`result` or `error`) to the request with this id.
    Response {
        /// The id of the request answered.
        id: &'a Value,
    },
    /// Not a valid JSON-RPC 2.0 message.
    Invalid {
        /// The id to answer with (`null` when it could not be read).
        id: Value,
        /// Why, in words for a person.
        reason: &'static str,
    },
}

/// Whether `id` is a valid JSON-RPC request id for MCP: a string or a number.
pub fn valid_id(id: &Value) -> bool {
    matches!(id, Value::String(_) | Value::Number(_))
}

/// Classifies a message. Batches (arrays) are `Invalid`: MCP does not use them since 2025-06-18.
pub fn classify(msg: &Value) -> Kind<'_> {
    let Some(obj) = msg.as_object() else {
        let reason = if msg.is_array() {
            "batches are not supported: send one JSON-RPC message per line"
        } else {
            "a JSON-RPC message must be an object"
        };
        return Kind::Invalid { id: Value::Null, reason };
    };
    let id = obj.get("id");
    let answer_id = id.filter(|i| valid_id(i)).cloned().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Kind::Invalid { id: answer_id, reason: "`jsonrpc` must be \"2.0\"" };
    }
    match obj.get("method") {
        Some(Value::String(method)) => match id {
            None => Kind::Notification { method },
            Some(id) if valid_id(id) => Kind::Request { id, method },
            Some(_) => {
                Kind::Invalid { id: Value::Null, reason: "`id` must be a string or a number" }
            }
        },
        Some(_) => Kind::Invalid { id: answer_id, reason: "`method` must be a string" },
        None => match id {
            Some(id) if (obj.contains_key("result") || obj.contains_key("error")) => {
                Kind::Response { id }
            }
            _ => {
                Kind::Invalid { id: answer_id, reason: "a message needs a `method` or a `result`" }
            }
        },
    }
}

/// A response carrying `result`.
pub fn result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A response carrying an error.
pub fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message.into() } })
}

/// A response carrying an error with `data`.
pub fn error_with_data(id: Value, code: i64, message: impl Into<String>, data: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message.into(), "data": data }
    })
}

/// A request.
pub fn request(id: Value, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// A notification.
pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// A key for a request id, distinguishing `1` from `"1"`.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// The `params` object of a message (`None` when absent or not an object).
pub fn params(msg: &Value) -> Option<&Map<String, Value>> {
    msg.get("params").and_then(Value::as_object)
}

/// Replaces the `id` of a message.
pub fn set_id(msg: &mut Value, id: Value) {
    if let Some(obj) = msg.as_object_mut() {
        obj.insert("id".to_owned(), id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let r = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
        assert_eq!(classify(&r), Kind::Request { id: &json!(1), method: "ping" });
        let n = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(classify(&n), Kind::Notification { method: "notifications/initialized" });
        let resp = json!({"jsonrpc": "2.0", "id": "a", "result": {}});
        assert_eq!(classify(&resp), Kind::Response { id: &json!("a") });
        assert!(matches!(classify(&json!([r])), Kind::Invalid { .. }));
        assert!(matches!(classify(&json!({"id": 1, "method": "x"})), Kind::Invalid { .. }));
        let bad_id = json!({"jsonrpc": "2.0", "id": true, "method": "x"});
        assert!(matches!(classify(&bad_id), Kind::Invalid { id: Value::Null, .. }));
        let bad_method = json!({"jsonrpc": "2.0", "id": 3, "method": 5});
        assert_eq!(
            classify(&bad_method),
            Kind::Invalid { id: json!(3), reason: "`method` must be a string" }
        );
    }

    #[test]
    fn id_keys_keep_types_apart() {
        assert_ne!(id_key(&json!(1)), id_key(&json!("1")));
    }
}
