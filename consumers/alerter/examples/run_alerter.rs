//! Runs the alerter in its own process until SIGTERM/SIGINT (or `kill -9`); the restart tests
//! start and kill it. The configuration is YAML in `ALERTER_CONFIG`. Prints `ready <api addr>`
//! on stdout once the state is restored and partitions are assigned.
//!
//! Delivery guarantee: at-least-once per receiver after dedup (see the crate docs).

use std::time::Duration;

use vigil_alerter::AlerterConfig;
use vigil_topology::Telemetry;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::env::var("ALERTER_CONFIG")?;
    let config = AlerterConfig::from_yaml(&text, "ALERTER_CONFIG")?;
    config.validate("ALERTER_CONFIG")?;
    let telemetry = Telemetry::new();
    let service = vigil_alerter::build(&config, &telemetry).await?;
    let api = service.api_addr;
    let health = telemetry.health.clone();
    tokio::spawn(async move {
        while !health.is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("ready {api}");
    });
    let summary = service
        .run(&config, &telemetry, vigil_consumer::shutdown_signal())
        .await?;
    eprintln!("alerter stopped: {summary:?}");
    Ok(())
}
