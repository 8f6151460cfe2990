//! The signal that ends a service: SIGTERM (what orchestrators send) or SIGINT (Ctrl-C).

/// Resolves on the first SIGTERM or SIGINT. If a signal handler cannot be installed, that signal
/// is simply never awaited (a service must not stop because it could not listen for stops).
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("sigint received"),
        _ = terminate => tracing::info!("sigterm received"),
    }
}
