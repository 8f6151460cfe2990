//! The HTTP API: acknowledgements and silences, behind a bearer token.
//!
//! `POST /alerts/{id}/ack` (id = alert id or fingerprint), `GET /alerts`, `POST /silences`,
//! `GET /silences`, `DELETE /silences/{id}`. Every route needs `Authorization: Bearer <token>`
//! (401 otherwise, compared in constant time); bodies above `max_body_bytes` get 413; malformed
//! JSON gets 400 with the parser's reason. Errors are `{"error": "..."}`. A mutation answers
//! only once its state changelog write is acknowledged by the broker (500 with the reason
//! otherwise), so an acknowledged ack or silence survives a restart.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use vigil_topology::InternalEvent;

use crate::changelog::Pending;
use crate::config::MatchConfig;
use crate::internal_events::{AlerterMetrics, StateWriteFailed};
use crate::state::{AlertBook, SilenceError};

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    book: Arc<AlertBook>,
    token_digest: [u8; 32],
    metrics: AlerterMetrics,
}

impl ApiState {
    /// Returns the state; only a digest of the token is kept.
    pub fn new(book: Arc<AlertBook>, token: &str, metrics: AlerterMetrics) -> Self {
        Self {
            book,
            token_digest: Sha256::digest(token.as_bytes()).into(),
            metrics,
        }
    }
}

/// Returns the API router with auth and the body limit applied.
pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/alerts", get(list_alerts))
        .route("/alerts/{id}/ack", post(ack))
        .route("/silences", post(create_silence).get(list_silences))
        .route("/silences/{id}", delete(delete_silence))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

fn error(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": reason.to_string() }))).into_response()
}

/// Compares digests so neither the length nor a common prefix of the token leaks through timing.
fn token_matches(expected: &[u8; 32], presented: &str) -> bool {
    let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    expected
        .iter()
        .zip(got.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

async fn authorize(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let response = match presented {
        Some(t) if token_matches(&state.token_digest, t.trim()) => next.run(req).await,
        _ => {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    };
    state
        .metrics
        .api_requests
        .with_label_values(&[response.status().as_str()])
        .inc();
    response
}

/// Reads a JSON body; an empty body is `T::default()` when `allow_empty`.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per request
fn parse_body<T: for<'de> Deserialize<'de> + Default>(
    body: Result<Bytes, BytesRejection>,
    allow_empty: bool,
) -> Result<T, Response> {
    let bytes = body.map_err(|r| error(r.status(), r.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if allow_empty {
            return Ok(T::default());
        }
        return Err(error(StatusCode::BAD_REQUEST, "a JSON body is required"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    #[serde(default)]
    by: String,
    #[serde(default)]
    comment: String,
}

async fn ack(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: AckRequest = match parse_body(body, true) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.by.len() > 256 || req.comment.len() > 4096 {
        return error(StatusCode::BAD_REQUEST, "by or comment too long");
    }
    let mut pending = Pending::new();
    let ids = state.book.ack(&id, &req.by, &req.comment, &mut pending);
    if ids.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "no active alert with this id or fingerprint",
        );
    }
    if let Err(r) = persisted(&state, pending).await {
        return r;
    }
    tracing::info!(%id, by = req.by, count = ids.len(), "alert acknowledged");
    axum::Json(json!({ "acknowledged": ids })).into_response()
}

/// Waits for the changelog writes of one API call; a failure is a 500 naming the reason.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per request
async fn persisted(state: &ApiState, pending: Pending) -> Result<(), Response> {
    pending.acked().await.map(|_| ()).map_err(|e| {
        StateWriteFailed {
            metrics: &state.metrics,
            caller: "api",
            error: &e.to_string(),
        }
        .emit();
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("not persisted, try again: {e}"),
        )
    })
}

async fn list_alerts(State(state): State<ApiState>) -> Response {
    axum::Json(json!({ "alerts": state.book.list_active() })).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceRequest {
    matchers: MatchConfig,
    /// RFC 3339 end; or `duration_ms` from now.
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

async fn create_silence(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: SilenceRequest = match parse_body(body, false) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let now_ms = vigil_schemas::model::now_micros() / 1_000;
    let ends_at_ms = match (&req.ends_at, req.duration_ms) {
        (Some(t), None) => match vigil_schemas::model::parse_rfc3339(t) {
            Some(us) => us / 1_000,
            None => return error(StatusCode::BAD_REQUEST, "ends_at: not an RFC 3339 time"),
        },
        (None, Some(d)) => now_ms.saturating_add(i64::try_from(d).unwrap_or(i64::MAX)),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give exactly one of ends_at and duration_ms",
            );
        }
    };
    let mut pending = Pending::new();
    match state.book.add_silence(
        req.matchers,
        ends_at_ms,
        req.created_by,
        req.comment,
        &mut pending,
    ) {
        Ok(s) => {
            if let Err(r) = persisted(&state, pending).await {
                // Not durable: take it back so a retry does not leave two silences behind.
                state.book.remove_silence(s.id, &mut Pending::new());
                return r;
            }
            tracing::info!(id = %s.id, by = s.created_by, "silence created");
            (StatusCode::CREATED, axum::Json(s)).into_response()
        }
        Err(e @ SilenceError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e),
        Err(e @ SilenceError::Full(_)) => error(StatusCode::CONFLICT, e),
    }
}

async fn list_silences(State(state): State<ApiState>) -> Response {
    axum::Json(json!({ "silences": state.book.silences() })).into_response()
}

async fn delete_silence(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(StatusCode::BAD_REQUEST, "not a silence id");
    };
    let mut pending = Pending::new();
    if state.book.remove_silence(id, &mut pending) {
        if let Err(r) = persisted(&state, pending).await {
            return r;
        }
        tracing::info!(%id, "silence deleted");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such silence")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_accepts_only_the_exact_token() {
        let d: [u8; 32] = Sha256::digest(b"s3cret").into();
        assert!(token_matches(&d, "s3cret"));
        assert!(!token_matches(&d, "s3cre"));
        assert!(!token_matches(&d, "s3cret2"));
        assert!(!token_matches(&d, ""));
    }
}
