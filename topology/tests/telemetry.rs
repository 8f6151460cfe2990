#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! The telemetry server every service runs: `/metrics` renders the registry, `/healthz` is
//! always 200 while the process serves, `/readyz` follows the service's readiness.

use prometheus::{IntCounterVec, Opts};
use vigil_topology::Telemetry;

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("telemetry server answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

#[tokio::test]
async fn metrics_health_and_readiness_over_http() {
    let telemetry = Telemetry::new();
    let counter = IntCounterVec::new(
        Opts::new("vigil_test_records_total", "records seen by the test"),
        &["class"],
    )
    .expect("counter");
    telemetry
        .registry
        .register(Box::new(counter.clone()))
        .expect("register");
    counter.with_label_values(&["bad_data"]).inc_by(3);

    let (addr, task) = telemetry
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let base = format!("http://{addr}");

    let (status, body) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("vigil_test_records_total{class=\"bad_data\"} 3"),
        "{body}"
    );

    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(
        get(&format!("{base}/readyz")).await.0,
        503,
        "not ready before assignment"
    );
    telemetry.health.set_ready(true);
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
    telemetry.health.set_ready(false);
    assert_eq!(get(&format!("{base}/readyz")).await.0, 503);
    assert_eq!(get(&format!("{base}/nope")).await.0, 404);
    task.abort();
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("addr");
    let err = Telemetry::new().serve(addr).await.expect_err("port taken");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
