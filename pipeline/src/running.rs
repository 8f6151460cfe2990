//! The running pipeline: one tokio task per service, one stop switch, start / ready / stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_audit_sink::metrics::SinkMetrics;
use vigil_audit_sink::sink::SinkSummary;
use vigil_audit_sink::{AuditSink, AuditStore};
use vigil_consumer::key_registry::KeyRegistry;
use vigil_consumer::{ConsumerRuntime, RunSummary};
use vigil_topology::Telemetry;

use crate::config::{ALERTER_CONFIG_PATH, PipelineConfig};
use crate::error::{PipelineError, ServiceError, StopError};

/// How often [`Pipeline::ready`] looks at the services' readiness.
const READY_POLL: Duration = Duration::from_millis(50);

/// One of the services a pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    /// `vigil run verifier`.
    Verifier,
    /// `vigil run correlator`.
    Correlator,
    /// `vigil run alerter`.
    Alerter,
    /// `vigil run audit-sink`.
    AuditSink,
}

impl ServiceKind {
    /// Returns the service's name as `vigil run` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Verifier => "verifier",
            ServiceKind::Correlator => "correlator",
            ServiceKind::Alerter => "alerter",
            ServiceKind::AuditSink => "audit-sink",
        }
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a service did before it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceSummary {
    /// A consumer-runtime service (verifier, correlator, alerter).
    Consumer(RunSummary),
    /// The audit sink.
    AuditSink(SinkSummary),
}

/// How one service stopped.
#[derive(Debug)]
pub struct ServiceStop {
    /// The service.
    pub service: ServiceKind,
    /// Its summary, or why there is none.
    pub outcome: Result<ServiceSummary, StopError>,
}

type ServiceTask = JoinHandle<Result<ServiceSummary, ServiceError>>;

/// One service running as a task of the pipeline.
pub struct RunningService {
    kind: ServiceKind,
    telemetry: Telemetry,
    task: ServiceTask,
}

impl RunningService {
    /// Returns which service this is.
    pub fn kind(&self) -> ServiceKind {
        self.kind
    }

    /// Returns the service's metrics registry and health.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Returns whether the service reports ready (connected and assigned).
    pub fn is_ready(&self) -> bool {
        self.telemetry.health.is_ready()
    }

    /// Returns whether the service's task has ended (it stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Aborts a background task when the service task owning it ends or is aborted.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The services of one [`PipelineConfig`], running in this process until stopped.
///
/// Dropping the handle without [`Pipeline::stop`] throws the switch and aborts every task.
pub struct Pipeline {
    services: Vec<RunningService>,
    stop: watch::Sender<bool>,
    key_registry: Option<Arc<KeyRegistry>>,
    alerter: Option<(Arc<vigil_alerter::Alerter>, SocketAddr)>,
}

impl Pipeline {
    /// Builds and spawns the configured services in data-flow order: the verifier (once its
    /// key registry is loaded), the correlator, the alerter (API listening), the audit sink.
    /// Returns before they are ready: see [`Pipeline::ready`]. On an error the services
    /// already spawned are aborted.
    pub async fn start(config: &PipelineConfig) -> Result<Pipeline, PipelineError> {
        let mut pipeline = Pipeline {
            services: Vec::new(),
            stop: watch::channel(false).0,
            key_registry: None,
            alerter: None,
        };
        if let Some(vc) = &config.verifier {
            let vc = vc.clone();
            let telemetry = Telemetry::new();
            let (verifier, registry_task) = vigil_verifier::build(&vc, &telemetry)
                .await
                .map_err(PipelineError::Verifier)?;
            let registry_task = AbortOnDrop(registry_task);
            pipeline.key_registry = Some(Arc::clone(verifier.key_registry()));
            let runtime = ConsumerRuntime::new(vc.runtime_config(), &vc.consumer.kafka, &telemetry)
                .map_err(|e| PipelineError::Verifier(e.into()))?;
            let shutdown = pipeline.shutdown();
            pipeline.spawn(ServiceKind::Verifier, telemetry, async move {
                let result = runtime.run(verifier, shutdown).await;
                drop(registry_task);
                result
                    .map(ServiceSummary::Consumer)
                    .map_err(|e| ServiceError::Verifier(e.into()))
            });
        }
        if let Some(cc) = &config.correlator {
            cc.validate().map_err(PipelineError::Correlator)?;
            let cc = cc.clone();
            let telemetry = Telemetry::new();
            let t = telemetry.clone();
            let shutdown = pipeline.shutdown();
            pipeline.spawn(ServiceKind::Correlator, telemetry, async move {
                vigil_correlator::run(&cc, &t, shutdown)
                    .await
                    .map(ServiceSummary::Consumer)
                    .map_err(ServiceError::Correlator)
            });
        }
        if let Some(ac) = &config.alerter {
            ac.validate(ALERTER_CONFIG_PATH)
                .map_err(PipelineError::AlerterConfig)?;
            let ac = ac.clone();
            let telemetry = Telemetry::new();
            let alerter = vigil_alerter::build(&ac, &telemetry)
                .await
                .map_err(PipelineError::Alerter)?;
            pipeline.alerter = Some((Arc::clone(&alerter.handler), alerter.api_addr));
            let t = telemetry.clone();
            let shutdown = pipeline.shutdown();
            pipeline.spawn(ServiceKind::Alerter, telemetry, async move {
                alerter
                    .run(&ac, &t, shutdown)
                    .await
                    .map(ServiceSummary::Consumer)
                    .map_err(ServiceError::Alerter)
            });
        }
        if let Some(setup) = &config.audit_sink {
            let telemetry = Telemetry::new();
            let metrics = SinkMetrics::register(&telemetry.registry).map_err(|source| {
                PipelineError::Metrics {
                    service: ServiceKind::AuditSink,
                    source,
                }
            })?;
            let store =
                AuditStore::connect(&config.endpoints.clickhouse_url, &setup.config.database)
                    .map_err(PipelineError::AuditSink)?;
            let sink = AuditSink::new(
                setup.config.clone(),
                config.endpoints.kafka.clone(),
                store,
                setup.signer.clone(),
                metrics,
                telemetry.health.clone(),
            )
            .map_err(PipelineError::AuditSink)?;
            let shutdown = pipeline.shutdown();
            pipeline.spawn(ServiceKind::AuditSink, telemetry, async move {
                sink.run(shutdown)
                    .await
                    .map(ServiceSummary::AuditSink)
                    .map_err(ServiceError::AuditSink)
            });
        }
        Ok(pipeline)
    }

    fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    fn spawn(
        &mut self,
        kind: ServiceKind,
        telemetry: Telemetry,
        run: impl Future<Output = Result<ServiceSummary, ServiceError>> + Send + 'static,
    ) {
        self.services.push(RunningService {
            kind,
            telemetry,
            task: tokio::spawn(run),
        });
    }

    /// Waits until every service reports ready; fails naming the first service whose task
    /// ended meanwhile, or the services still not ready after `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), PipelineError> {
        let deadline = Instant::now() + timeout;
        loop {
            let waiting: Vec<&str> = self
                .services
                .iter()
                .filter(|s| !s.is_ready())
                .map(|s| s.kind.as_str())
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if let Some(dead) = self.services.iter().find(|s| s.is_finished()) {
                return Err(PipelineError::StoppedDuringStartup { service: dead.kind });
            }
            if Instant::now() > deadline {
                return Err(PipelineError::NotReady {
                    secs: timeout.as_secs(),
                    waiting: waiting.join(", "),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Returns the running services in start order.
    pub fn services(&self) -> &[RunningService] {
        &self.services
    }

    /// Returns the telemetry (metrics, health) of `kind`, when it runs.
    pub fn telemetry(&self, kind: ServiceKind) -> Option<&Telemetry> {
        self.services
            .iter()
            .find(|s| s.kind == kind)
            .map(RunningService::telemetry)
    }

    /// Returns the verifier's key registry (to watch it apply a key change), when it runs.
    pub fn key_registry(&self) -> Option<&Arc<KeyRegistry>> {
        self.key_registry.as_ref()
    }

    /// Returns the alerter's handler (metrics, state), when it runs.
    pub fn alerter(&self) -> Option<&Arc<vigil_alerter::Alerter>> {
        self.alerter.as_ref().map(|(handler, _)| handler)
    }

    /// Returns where the alerter's HTTP API listens, when it runs.
    pub fn alerter_api_addr(&self) -> Option<SocketAddr> {
        self.alerter.as_ref().map(|(_, addr)| *addr)
    }

    /// Throws the stop switch and waits for each service in start order, up to `timeout` each
    /// (consumers drain and commit, the audit sink writes its final digest); a service still
    /// running after its timeout is aborted.
    pub async fn stop(mut self, timeout: Duration) -> Vec<ServiceStop> {
        self.stop.send_replace(true);
        let mut stops = Vec::new();
        for s in std::mem::take(&mut self.services) {
            let abort = s.task.abort_handle();
            let outcome = match tokio::time::timeout(timeout, s.task).await {
                Ok(Ok(Ok(summary))) => Ok(summary),
                Ok(Ok(Err(e))) => Err(StopError::Failed(e)),
                Ok(Err(e)) => Err(StopError::Panicked(e)),
                Err(_) => {
                    abort.abort();
                    Err(StopError::TimedOut {
                        secs: timeout.as_secs(),
                    })
                }
            };
            stops.push(ServiceStop {
                service: s.kind,
                outcome,
            });
        }
        stops
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for s in &self.services {
            s.task.abort();
        }
    }
}
