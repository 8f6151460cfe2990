//! Shared setup of the alerter tests: a local HTTP receiver that records deliveries and can be
//! told to fail, fresh topics, alert records, a running alerter and a DLQ reader.

#![allow(
    clippy::field_reassign_with_default,
    clippy::expect_used,
    clippy::unwrap_used,
    dead_code
)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use vigil_alerter::{AlerterConfig, AlerterService, ReceiverConfig, ReceiverKind, RouteConfig};
use vigil_consumer::RunSummary;
use vigil_schemas::model::now_micros;
use vigil_schemas::{Alert, Codec, SchemaId, Severity};
use vigil_test_support::{ChildProcess, RunningService};
use vigil_test_support::{kafka_bootstrap, schema_registry_url, unique_name};
use vigil_topology::{KafkaClientConfig, Telemetry};

#[allow(unused_imports)] // not every test binary waits
pub use vigil_test_support::eventually;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    pub status: u16,
}

impl Delivery {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct ReceiverState {
    log: Mutex<Vec<Delivery>>,
    fail_next: AtomicU32,
    down: AtomicBool,
}

/// Upper bound for any wait in the alerter tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// A local HTTP receiver on 127.0.0.1:0: answers 200 and records every request, or 503 while
/// told to fail.
#[derive(Clone)]
pub struct TestReceiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

async fn record(
    State(s): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let failing = s.down.load(Ordering::SeqCst)
        || s.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let status = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    s.log.lock().unwrap().push(Delivery {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
        status: status.as_u16(),
    });
    status
}

impl TestReceiver {
    pub async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestReceiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next `n` requests get 503.
    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Every request gets 503 while down.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Every request so far to `path`, failed ones included.
    pub fn requests(&self, path: &str) -> Vec<Delivery> {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.path == path)
            .cloned()
            .collect()
    }

    /// Requests to `path` answered 200.
    pub fn delivered(&self, path: &str) -> Vec<Delivery> {
        self.requests(path)
            .into_iter()
            .filter(|d| d.status == 200)
            .collect()
    }

    /// Waits until `path` has `n` successful deliveries.
    pub async fn wait_delivered(&self, path: &str, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.delivered(path);
            if d.len() >= n {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} deliveries to {path}, got {}",
                d.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Fresh topics (alerts, DLQ, a compacted state changelog) and a registered alert schema.
pub struct Topics {
    pub alerts: String,
    pub dlq: String,
    pub state: String,
    pub schema: SchemaId,
}

impl Topics {
    pub async fn create(partitions: i32) -> Self {
        let alerts = unique_name("at-alerts");
        let dlq = unique_name("at-dlq");
        let state = unique_name("at-state");
        vigil_test_support::create_topic(&alerts, partitions).await;
        vigil_test_support::create_topic(&dlq, 1).await;
        vigil_test_support::create_compacted_topic(&state).await;
        let schema = vigil_test_support::register_schema::<Alert>(&alerts).await;
        Topics {
            alerts,
            dlq,
            state,
            schema,
        }
    }
}

/// Secrets written to files, as the config demands.
pub struct Secrets {
    pub dir: tempfile::TempDir,
    pub api_token: String,
    pub webhook_secret: String,
}

impl Secrets {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = Secrets {
            dir,
            api_token: "test-token-123".into(),
            webhook_secret: "hook-secret".into(),
        };
        std::fs::write(s.path("api"), format!("{}\n", s.api_token)).unwrap();
        std::fs::write(s.path("hook"), &s.webhook_secret).unwrap();
        std::fs::write(s.path("pd"), "PDKEY").unwrap();
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn receiver(name: &str, kind: ReceiverKind, url: String, secrets: &Secrets) -> ReceiverConfig {
    ReceiverConfig {
        name: name.into(),
        kind,
        url: Some(url),
        url_file: None,
        secret_file: (kind == ReceiverKind::Webhook).then(|| secrets.path("hook")),
        secret_env: None,
        token_file: None,
        routing_key_file: (kind == ReceiverKind::Pagerduty).then(|| secrets.path("pd")),
        routing_key_env: None,
        rate_limit_per_minute: 60_000,
        rate_limit_burst: 1_000,
        timeout_ms: 2_000,
    }
}

/// A config with webhook receivers `hook`, `lead`, `lead2`, a Slack `slack` and a PagerDuty
/// `pd`, all on `r` under their own path, and the given route tree.
pub fn config(t: &Topics, r: &TestReceiver, secrets: &Secrets, route_yaml: &str) -> AlerterConfig {
    let mut c = AlerterConfig::default();
    c.consumer.kafka = KafkaClientConfig::new(kafka_bootstrap());
    c.consumer.kafka.linger_ms = 0;
    c.consumer.schema_registry_url = schema_registry_url();
    c.consumer.group_id = unique_name("at-group");
    c.alerts_topic = t.alerts.clone();
    c.consumer.dlq_topic = t.dlq.clone();
    c.state_topic = t.state.clone();
    c.consumer.commit_interval_ms = 200;
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.api.bearer_token_file = Some(secrets.path("api"));
    c.api.max_body_bytes = 1024;
    c.delivery.max_attempts = 4;
    c.delivery.initial_backoff_ms = 20;
    c.delivery.max_backoff_ms = 100;
    c.receivers = vec![
        receiver("hook", ReceiverKind::Webhook, r.url("/hook"), secrets),
        receiver("lead", ReceiverKind::Webhook, r.url("/lead"), secrets),
        receiver("lead2", ReceiverKind::Webhook, r.url("/lead2"), secrets),
        receiver("slack", ReceiverKind::Slack, r.url("/slack"), secrets),
        receiver("pd", ReceiverKind::Pagerduty, r.url("/pd"), secrets),
    ];
    c.route = serde_yaml::from_str::<RouteConfig>(route_yaml).unwrap();
    c.validate("test").unwrap();
    c
}

pub fn alert(fingerprint: &str, rule: &str, severity: Severity) -> Alert {
    let now = now_micros();
    Alert {
        alert_id: uuid::Uuid::new_v4(),
        fingerprint: fingerprint.into(),
        severity_id: severity,
        rule_id: rule.into(),
        rule_title: format!("rule {rule}"),
        group_key: BTreeMap::new(),
        window_start: now - 60_000_000,
        window_end: now,
        count: 7,
        evidence_event_ids: vec![uuid::Uuid::new_v4().to_string()],
        trace_ids: vec![],
        first_seen: now - 1_000_000,
        last_seen: now,
        labels: BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]),
        description: "seven bad signatures in a minute".into(),
    }
}

pub fn producer() -> FutureProducer {
    let mut c = vigil_test_support::client_config();
    c.set("linger.ms", "0").set("enable.idempotence", "true");
    c.create().unwrap()
}

pub async fn send_raw(p: &FutureProducer, topic: &str, key: &[u8], value: &[u8]) {
    p.send(
        FutureRecord::to(topic).key(key).payload(value),
        Duration::from_secs(30),
    )
    .await
    .map_err(|(e, _)| e)
    .unwrap();
}

pub async fn send(p: &FutureProducer, t: &Topics, a: &Alert) {
    let value = Codec::<Alert>::new()
        .unwrap()
        .encode_framed(t.schema, a)
        .unwrap();
    send_raw(p, &t.alerts, a.fingerprint.as_bytes(), &value).await;
}

/// An alerter running in this process: the one service handle plus what the tests reach past
/// it (the API address, the handler's metrics and book).
pub struct InProcessAlerter {
    pub service: RunningService<Result<RunSummary, vigil_alerter::AlerterError>>,
    pub api: SocketAddr,
    pub handler: Arc<vigil_alerter::Alerter>,
}

impl InProcessAlerter {
    /// Builds and starts an alerter with `config` and waits until it is ready.
    pub async fn start(config: AlerterConfig) -> Self {
        let telemetry = Telemetry::new();
        let built: AlerterService = vigil_alerter::build(&config, &telemetry).await.unwrap();
        let api = built.api_addr;
        let handler = built.handler.clone();
        let service =
            RunningService::spawn_with(telemetry, move |telemetry, shutdown| async move {
                built.run(&config, &telemetry, shutdown).await
            });
        service.ready().await;
        Self {
            service,
            api,
            handler,
        }
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// Stops the alerter; panics unless it stopped cleanly.
    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

/// A record read back from the DLQ.
#[derive(Debug, Clone)]
pub struct Read {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
}

/// Reads `n` records of `topic` from the beginning, or fewer after `timeout`.
pub async fn read(topic: &str, n: usize, timeout: Duration) -> Vec<Read> {
    let mut c: ClientConfig = vigil_test_support::client_config();
    c.set("group.id", unique_name("at-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let consumer: StreamConsumer = c.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        if let Ok(Ok(m)) = tokio::time::timeout(left, consumer.recv()).await {
            let mut headers = HashMap::new();
            if let Some(h) = m.headers() {
                for hh in h.iter() {
                    if let Some(v) = hh.value {
                        headers.insert(hh.key.to_owned(), String::from_utf8_lossy(v).into_owned());
                    }
                }
            }
            out.push(Read {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    out
}

/// The alerter's config as YAML, for an alerter in a child process and its in-process
/// successor: webhook receivers `hook`, `lead`, `lead2` on `r`, a fixed group, short session
/// timeout so a killed member leaves the group quickly, and `route_yaml` as the route tree.
pub fn config_yaml(
    t: &Topics,
    r: &TestReceiver,
    s: &Secrets,
    group: &str,
    route_yaml: &str,
    max_attempts: u32,
) -> String {
    let hook = |name: &str| {
        format!(
            "  - {{name: {name}, kind: webhook, url: {:?}, secret_file: {:?}, rate_limit_per_minute: 60000, rate_limit_burst: 1000, timeout_ms: 2000}}\n",
            r.url(&format!("/{name}")),
            s.path("hook").display().to_string(),
        )
    };
    let route: String = route_yaml.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "kafka:\n  bootstrap_servers: {bootstrap:?}\n  linger_ms: 0\n  librdkafka: {{session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\"}}\n\
         schema_registry_url: {registry:?}\ngroup_id: {group:?}\nalerts_topic: {alerts:?}\n\
         dlq_topic: {dlq:?}\nstate_topic: {state:?}\ncommit_interval_ms: 100\n\
         api: {{listen: \"127.0.0.1:0\", bearer_token_file: {token:?}}}\n\
         delivery: {{max_attempts: {max_attempts}, initial_backoff_ms: 200, max_backoff_ms: 1000}}\n\
         receivers:\n{hook}{lead}{lead2}route:\n{route}",
        bootstrap = kafka_bootstrap(),
        registry = schema_registry_url(),
        alerts = t.alerts,
        dlq = t.dlq,
        state = t.state,
        token = s.path("api").display().to_string(),
        hook = hook("hook"),
        lead = hook("lead"),
        lead2 = hook("lead2"),
    )
}

fn run_alerter_binary() -> PathBuf {
    // Cargo builds examples for `cargo test`; `cargo test --test restart` alone does not, so
    // build it here (a no-op when fresh).
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = std::process::Command::new(cargo)
        .args(["build", "-p", "vigil-alerter", "--example", "run_alerter"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "building the run_alerter example");
    dir.join("examples").join("run_alerter")
}

/// An alerter in a child process (`examples/run_alerter.rs`), so it can be killed with
/// SIGKILL: no graceful shutdown, no final commit, no flush.
pub struct ChildAlerter {
    process: ChildProcess,
    pub api: SocketAddr,
}

impl ChildAlerter {
    /// Starts the alerter with the config `yaml` and waits for its `ready <api address>` line.
    pub async fn start(yaml: &str) -> Self {
        use std::io::BufRead;
        let mut process = ChildProcess::spawn(
            "the run_alerter example",
            std::process::Command::new(run_alerter_binary())
                .env("ALERTER_CONFIG", yaml)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit()),
        );
        let stdout = process.take_stdout();
        let line = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || {
                let mut lines = std::io::BufReader::new(stdout).lines();
                let first = lines.find_map(|l| {
                    l.ok()
                        .and_then(|l| l.strip_prefix("ready ").map(str::to_owned))
                });
                // Keep draining so the child never blocks on a full pipe.
                std::thread::spawn(move || lines.for_each(drop));
                first
            }),
        )
        .await
        .expect("child alerter ready within 60 s")
        .unwrap()
        .expect("child alerter printed its api address");
        ChildAlerter {
            process,
            api: line.trim().parse().unwrap(),
        }
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        self.process.kill();
    }

    /// SIGTERM (a graceful shutdown: partitions revoked, offsets committed, the group left),
    /// then waits up to `timeout` for the process to exit; returns whether it exited cleanly.
    pub async fn terminate(mut self, timeout: Duration) -> bool {
        self.process.terminate(timeout).await.success()
    }
}

/// Waits until `group` has committed an offset of at least `at_least` on partition 0 of `topic`.
pub async fn wait_committed(group: &str, topic: &str, at_least: i64, timeout: Duration) {
    let mut c = vigil_test_support::client_config();
    c.set("group.id", group).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let deadline = Instant::now() + timeout;
    loop {
        let committed = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .ok()
            .and_then(|t| t.find_partition(topic, 0).map(|p| p.offset()));
        if let Some(Offset::Offset(o)) = committed
            && o >= at_least
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never committed {at_least} on {topic}: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The alert ids of `deliveries`, in arrival order.
pub fn alert_ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d.json()["alert"]["alert_id"].as_str().unwrap().to_owned())
        .collect()
}

/// GETs `url` with the bearer token and returns the JSON answer.
pub async fn get_json(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sends `alerts` in order, the last one a barrier that is always notified; waits until
/// `expected` have reached `/hook`, then 300 ms more for a wrong extra notification to show,
/// and asserts the notified alerts are exactly `expected`, in order.
pub async fn send_and_expect_hook(
    p: &FutureProducer,
    t: &Topics,
    r: &TestReceiver,
    alerts: &[&Alert],
    expected: &[&Alert],
    why: &str,
) {
    for a in alerts {
        send(p, t, a).await;
    }
    r.wait_delivered("/hook", expected.len(), WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let want: Vec<String> = expected.iter().map(|a| a.alert_id.to_string()).collect();
    assert_eq!(alert_ids(&r.delivered("/hook")), want, "{why}");
}

/// Creates a ten-minute silence of rule `rule` by `by` through the API at `url` (an
/// `api_url("/silences")`) and returns its JSON.
pub async fn create_silence(url: &str, token: &str, rule: &str, by: &str) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({"matchers": {"rule_id": [rule]}, "duration_ms": 600000, "created_by": by, "comment": "maintenance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    resp.json().await.unwrap()
}

/// Deletes a silence through the API (`url`: an `api_url("/silences/{id}")`).
pub async fn delete_silence(url: &str, token: &str) {
    let resp = reqwest::Client::new()
        .delete(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
}

/// Acknowledges an alert through the API (`url`: an `api_url("/alerts/{id}/ack")`).
pub async fn ack(url: &str, token: &str, by: &str, comment: &str) {
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({"by": by, "comment": comment}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
}
