//! The names of a pending entry: the call's binding, the secret key and the public id, in hex.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::super::call::ToolCall;
use crate::json::canonical;

/// A call's binding, computed once per evaluation.
pub(crate) struct Binding {
    pub(super) digest: [u8; 32],
    /// The length of the arguments' canonical JSON.
    pub(super) bytes: usize,
}

/// The public id of the entry with `key`: a one-way hash, so it does not reveal the key.
pub(super) fn id_of(key: &[u8; 32]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"mcp-policy approval id\0");
    h.update(key);
    let d: [u8; 32] = h.finalize().into();
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().zip(d) {
        *i = b;
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hexadecimal.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            s.push(char::from(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0')));
        }
    }
    s
}

/// The bytes of exactly `2 * N` lowercase hexadecimal digits.
pub(super) fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let value = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *o = (value(*hi)? << 4) | value(*lo)?;
    }
    Some(out)
}

/// SHA-256 of the canonical JSON of `{"args", "grant", "policy", "session", "tool"}`, written
/// directly (keys already in canonical order), without copying the arguments.
pub(super) fn binding(call: &ToolCall<'_>, policy_digest: &str) -> Binding {
    let mut s = String::new();
    s.push_str("{\"args\":");
    canonical::write(call.arguments_value(), &mut s);
    let bytes = s.len() - 8;
    s.push_str(",\"grant\":");
    canonical::write_string(call.grant(), &mut s);
    s.push_str(",\"policy\":");
    canonical::write_string(policy_digest, &mut s);
    s.push_str(",\"session\":");
    match call.session() {
        Some(sess) => canonical::write_string(sess, &mut s),
        None => canonical::write(&Value::Null, &mut s),
    }
    s.push_str(",\"tool\":");
    canonical::write_string(call.tool(), &mut s);
    s.push('}');
    Binding { digest: Sha256::digest(s.as_bytes()).into(), bytes }
}
