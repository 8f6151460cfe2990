//! Telemetry every Vigil service shares: tracing initialisation (text or JSON), one Prometheus
//! registry, and an HTTP server for `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

/// Something that happened inside a service: `emit` writes its log line and bumps its metric in
/// one place, so logs and metrics never disagree.
pub trait InternalEvent {
    /// Logs and counts the event.
    fn emit(self);
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Errors while starting telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The metrics address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Installs the global tracing subscriber. `RUST_LOG` overrides `default_filter`. Calling it twice
/// is harmless (the second call keeps the first subscriber).
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Liveness and readiness of a service.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the service ready (connected and assigned) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Returns whether the service is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// The metrics registry and health state of one service.
#[derive(Clone)]
pub struct Telemetry {
    /// Every metric of the service is registered here.
    pub registry: Registry,
    /// Liveness and readiness.
    pub health: Arc<Health>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Returns an empty registry and a not-ready health state.
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
            health: Arc::new(Health::default()),
        }
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding only fails on a broken metric family, which registration already refused.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the task is aborted; returns
    /// the bound address (useful with port 0) and the server task.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, JoinHandle<()>), TelemetryError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TelemetryError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| TelemetryError::Bind { addr, source })?;
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "telemetry server stopped");
            }
        });
        Ok((bound, task))
    }
}

async fn metrics(State(t): State<Telemetry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        t.render(),
    )
}

async fn readyz(State(t): State<Telemetry>) -> impl IntoResponse {
    if t.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
