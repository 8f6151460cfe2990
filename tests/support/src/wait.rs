//! Waiting for a condition in a test: poll it until it holds, fail loudly when it never does.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Upper bound for a wait whose test has no tighter one (a service becoming ready, stopping).
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` every 10 ms until it holds; panics naming `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`eventually`], for a check that has to await (a query); polls every 100 ms.
pub async fn eventually_async<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
