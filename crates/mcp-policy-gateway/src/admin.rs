//! The approvals admin API: `GET /approvals` lists the calls waiting for a human, `POST
//! /approvals/{id}` with `{"approve": true|false}` resolves one. Both need `Authorization:
//! Bearer <admin token>` (the content of `--admin-token-file`), compared in constant time.
//! Each answer recorded is announced on the API's [`Resolutions`], for the relays asking their
//! clients about the same entry.

// Handlers answer refusals with a ready `Response` as their error.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use mcp_policy::ResolveApprovalError;

use crate::approvals::{ApprovalAdmin, Resolutions};
use crate::auth::{bearer, constant_time_eq};

/// The admin API: its token and the approvals it serves.
pub struct AdminApi {
    token: Vec<u8>,
    approvals: Arc<dyn ApprovalAdmin>,
    resolutions: Resolutions,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminApi")
    }
}

impl AdminApi {
    /// The API with the token in `path` (its content, trimmed; at least 16 bytes).
    pub fn from_token_file(path: &Path, approvals: Arc<dyn ApprovalAdmin>) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the admin token `{}`: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 16 {
            return Err(format!(
                "the admin token in `{}` is {} bytes long: use at least 16 random characters",
                path.display(),
                token.len()
            ));
        }
        Ok(AdminApi {
            token: token.as_bytes().to_vec(),
            approvals,
            resolutions: Resolutions::default(),
        })
    }

    /// Where the answers this API records are announced (for the relays: see
    /// [`crate::relay::RelayConfig::approval_resolutions`]).
    pub fn resolutions(&self) -> &Resolutions {
        &self.resolutions
    }

    fn authorized(&self, headers: &HeaderMap) -> Result<(), Response> {
        match bearer(headers) {
            Some(t) if constant_time_eq(t.as_bytes(), &self.token) => Ok(()),
            _ => Err((
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"mcp-policy-gateway approvals\"")],
                axum::Json(json!({ "error": "the approvals API needs `Authorization: Bearer <admin token>`" })),
            )
                .into_response()),
        }
    }

    /// `GET /approvals`.
    pub fn list(&self, headers: &HeaderMap) -> Response {
        if let Err(r) = self.authorized(headers) {
            return r;
        }
        axum::Json(json!({ "pending": self.approvals.pending() })).into_response()
    }

    /// `POST /approvals/{id}` with `body`.
    pub fn resolve(&self, headers: &HeaderMap, id: &str, body: &[u8]) -> Response {
        if let Err(r) = self.authorized(headers) {
            return r;
        }
        let approve = match serde_json::from_slice::<Value>(body) {
            Ok(v) => v.get("approve").and_then(Value::as_bool),
            Err(_) => None,
        };
        let Some(approve) = approve else {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": "the body must be `{\"approve\": true}` or `{\"approve\": false}`" })),
            )
                .into_response();
        };
        match self.approvals.resolve(id, approve) {
            Ok(()) => {
                self.resolutions.announce(id);
                axum::Json(json!({ "id": id, "approve": approve })).into_response()
            }
            // Unknown (never issued, spent, evicted, issued under another policy) or expired.
            Err(e @ (ResolveApprovalError::Unknown(_) | ResolveApprovalError::Expired(_))) => {
                (StatusCode::NOT_FOUND, axum::Json(json!({ "error": e.to_string() })))
                    .into_response()
            }
            Err(e) => (StatusCode::CONFLICT, axum::Json(json!({ "error": e.to_string() })))
                .into_response(),
        }
    }
}
