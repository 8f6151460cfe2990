//! A service running in the test's own process: its future spawned on tokio with a telemetry
//! of its own and a shutdown signal, stopped (or awaited, or aborted) through one handle.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vigil_topology::Telemetry;

use crate::metrics::metric;
use crate::wait::{WAIT, eventually};

/// The shutdown signal handed to a service: resolves when [`RunningService::stop`] is called or
/// the handle is dropped.
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A service future running on tokio until stopped; `T` is what the service returns.
pub struct RunningService<T> {
    telemetry: Telemetry,
    stop: oneshot::Sender<()>,
    task: JoinHandle<T>,
}

impl<T: Send + 'static> RunningService<T> {
    /// Spawns `start(telemetry, shutdown)` with a fresh telemetry.
    pub fn spawn<F, Fut>(start: F) -> Self
    where
        F: FnOnce(Telemetry, Shutdown) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        Self::spawn_with(Telemetry::new(), start)
    }

    /// Spawns `start(telemetry, shutdown)` with `telemetry`, for a service built before it runs.
    pub fn spawn_with<F, Fut>(telemetry: Telemetry, start: F) -> Self
    where
        F: FnOnce(Telemetry, Shutdown) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(start(telemetry.clone(), Shutdown(stopped)));
        Self {
            telemetry,
            stop,
            task,
        }
    }

    /// Returns the service's metrics registry and health state.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Waits until the service reports ready (`/readyz`); panics after 60 s.
    pub async fn ready(&self) {
        eventually("service ready", WAIT, || self.telemetry.health.is_ready()).await;
    }

    /// Returns the value of one of the service's metrics (see [`metric`]).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.telemetry, name, labels)
    }

    /// Returns whether the service's future has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Signals shutdown and returns what the service returned; panics when it takes over 60 s.
    pub async fn stop(self) -> T {
        let _ = self.stop.send(());
        Self::join(self.task).await
    }

    /// Waits for the service to end by itself and returns what it returned; panics after 60 s.
    pub async fn finished(self) -> T {
        // Dropping the sender would be a shutdown signal: keep it until the service ended.
        let Self { stop, task, .. } = self;
        let out = Self::join(task).await;
        drop(stop);
        out
    }

    /// Drops the service's future wherever it is: no clean shutdown.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn join(task: JoinHandle<T>) -> T {
        match tokio::time::timeout(WAIT, task).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("the service task failed: {e}"),
            Err(_) => panic!("the service did not stop within {WAIT:?}"),
        }
    }
}
