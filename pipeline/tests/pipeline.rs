#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly

//! A namespaced pipeline against the real stack (`VIGIL_*` addresses): topology applied, the
//! verifier, correlator and alerter started, ready, stopped with a summary each, and the
//! namespace torn down again.

use std::time::Duration;

use vigil_pipeline::{
    Endpoints, Namespace, Pipeline, PipelineConfig, ServiceKind, ServiceSummary, apply_topology,
    teardown,
};
use vigil_topology::ReplicationOverride;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_stops_and_tears_down_a_namespace() {
    let ns = Namespace::random("vigil-pipeline-test").unwrap();
    let endpoints = Endpoints::from_env();
    let topology = ns
        .topology(ReplicationOverride::from_env().unwrap(), Some(1))
        .unwrap();
    let topics: Vec<String> = topology.topics.iter().map(|t| t.name.clone()).collect();
    apply_topology(&endpoints.kafka, &topology).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n").unwrap();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let routing = "receivers:\n  - {name: hook, kind: webhook, url: \"http://127.0.0.1:9/hook\"}\n\
                   route: {receivers: [hook]}\n";
    let anchors = dir.path().join("admins.pem");
    let admin = vigil_schemas::EventSigner::generate();
    std::fs::write(&anchors, admin.public_key().to_spki_pem().unwrap()).unwrap();
    let config = PipelineConfig::new(ns.clone(), endpoints.clone())
        .with_verifier(&anchors)
        .with_correlator(rules)
        .with_alerter(routing, &token)
        .unwrap();
    let pipeline = Pipeline::start(&config).await.unwrap();
    pipeline.ready(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        pipeline
            .services()
            .iter()
            .map(|s| s.kind())
            .collect::<Vec<_>>(),
        config.services()
    );
    assert!(pipeline.key_registry().is_some());
    assert!(pipeline.alerter_api_addr().is_some());
    assert!(pipeline.telemetry(ServiceKind::Correlator).is_some());
    assert!(pipeline.telemetry(ServiceKind::AuditSink).is_none());

    let stops = pipeline.stop(Duration::from_secs(30)).await;
    assert_eq!(stops.len(), 3);
    for s in stops {
        match s.outcome {
            Ok(ServiceSummary::Consumer(_)) => {}
            other => panic!("{}: {other:?}", s.service),
        }
    }

    let report = teardown(&ns, &endpoints, &topics).await;
    assert_eq!(report.topics.unwrap().unwrap(), topics.len());
    report.subjects.unwrap();
    report.database.unwrap();
}
