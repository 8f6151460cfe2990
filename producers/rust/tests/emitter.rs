#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! The emitter against the real broker and schema registry: an independent decode path, a broker
//! outage bridged by the spool, and a `kill -9` with events in the spool.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use tokio::net::{TcpListener, TcpStream};
use vigil_producer::{Emitter, EmitterConfig};
use vigil_schemas::codec::WriterSchema;
use vigil_schemas::{
    Codec, EventClass, EventSigner, Platform, Producer, PublicKey, RecordSigner, SchemaId,
    Signature, Status, Subject, VerificationEvent,
};
use vigil_test_support::ChildProcess;
use vigil_topology::KafkaClientConfig;

const CHILD_ENV: &str = "VIGIL_EMITTER_TEST_CHILD";

fn event(i: usize) -> VerificationEvent {
    VerificationEvent::new(
        EventClass::SignatureVerification,
        "verify",
        if i.is_multiple_of(7) {
            Status::Failure
        } else {
            Status::Success
        },
        Producer::new(Platform::Rust, "0.1.0", "emitter-test"),
    )
    .with_subject(
        Subject::principal(format!("user-{}", i % 5)).with_key_id(format!("key-{}", i % 3)),
    )
    .with_attribute("seq", i.to_string())
}

async fn schema_id(spool: &std::path::Path) -> SchemaId {
    let url = vigil_test_support::schema_registry_url();
    vigil_producer::schema_id::resolve(&url, spool)
        .await
        .expect("register the event schema")
}

fn config(dir: &std::path::Path, topic: &str) -> EmitterConfig {
    let mut c = EmitterConfig::new(dir.join("spool"));
    c.topic = topic.to_owned();
    c.delivery_timeout_ms = 1500;
    c.close_timeout_ms = 5000;
    c.spool_fsync = "always".into();
    c
}

/// Reads `n` records from `topic` with a fresh consumer group.
async fn read_all(topic: &str, n: usize, within: Duration) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: StreamConsumer = vigil_test_support::client_config()
        .set("group.id", vigil_test_support::unique_name("emitter-test"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => panic!("consume: {e}"),
            Err(_) => panic!(
                "only {} of {n} records arrived within {within:?}",
                out.len()
            ),
        }
    }
    // Anything beyond n would be a duplicate: give it a moment to show up.
    if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
        out.push(m.detach());
    }
    out
}

/// Waits until the emitter's spool is empty (the broker took every spooled record).
async fn wait_until_spool_drained(emitter: &Emitter, within: Duration) {
    let deadline = Instant::now() + within;
    while emitter.spooled_pending() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} still spooled",
            emitter.spooled_pending()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seq_of(event: &VerificationEvent) -> usize {
    event
        .attributes
        .get("seq")
        .and_then(|s| s.parse().ok())
        .expect("seq attribute")
}

#[tokio::test(flavor = "multi_thread")]
async fn independent_decode_path_matches_what_was_emitted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = vigil_test_support::unique_name("emitter-decode");
    vigil_test_support::create_topic(&topic, 3).await;
    let id = schema_id(dir.path()).await;
    let signer = EventSigner::from_pkcs8_pem_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/testdata/vector_signing_key.pem"
    ))
    .expect("test key");
    let public = PublicKey::from_spki_pem_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/testdata/vector_public_key.pem"
    ))
    .expect("test public key");
    let key_id = signer.key_id().as_str().to_owned();
    let emitter = Emitter::start(
        &config(dir.path(), &topic),
        &KafkaClientConfig::new(vigil_test_support::kafka_bootstrap()),
        RecordSigner::new(signer, id).expect("record signer"),
        None,
    )
    .expect("emitter");
    let sent: Vec<VerificationEvent> = (0..200).map(event).collect();
    for e in &sent {
        emitter.emit(e.clone()).expect("emit");
    }
    let report = tokio::task::block_in_place(|| emitter.flush(Duration::from_secs(30)));
    assert_eq!(report.in_flight, 0);
    assert_eq!(report.spooled, 0, "healthy broker: nothing spooled");

    // Decode without the SDK's shortcuts: raw bytes, the registry's schema by id, signature.
    let http = reqwest::Client::new();
    let mut by_seq = BTreeMap::new();
    let codec = Codec::<VerificationEvent>::new().expect("codec");
    for m in read_all(&topic, sent.len(), Duration::from_secs(60)).await {
        let value = m.payload().expect("value");
        assert_eq!(value[0], 0, "Confluent magic byte");
        let wire_id = u32::from_be_bytes(value[1..5].try_into().expect("4 bytes"));
        assert_eq!(wire_id, id.0);
        let schema: serde_json::Value = http
            .get(format!(
                "{}/schemas/ids/{wire_id}",
                vigil_test_support::schema_registry_url()
            ))
            .send()
            .await
            .expect("registry")
            .json()
            .await
            .expect("json");
        let writer = WriterSchema::parse(
            SchemaId(wire_id),
            schema["schema"].as_str().expect("schema"),
        )
        .expect("registry schema parses");
        let decoded = codec
            .decode_with(&writer, &value[5..])
            .expect("decode with the registry's schema");

        let headers = m.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(<[u8]>::to_vec)
                .unwrap_or_else(|| panic!("header {name} missing"))
        };
        let sig = Signature::from_slice(&header("vigil-sig")).expect("64-byte signature");
        public
            .verify(value, &sig)
            .expect("signature over the exact value bytes");
        assert_eq!(header("vigil-key-id"), key_id.as_bytes());
        assert_eq!(header("vigil-alg"), b"ed25519");
        assert_eq!(
            header("ce_id"),
            decoded.event_id.hyphenated().to_string().as_bytes()
        );
        let trace = decoded.trace.clone().expect("trace filled in by emit");
        let traceparent = String::from_utf8(header("traceparent")).expect("utf8");
        assert_eq!(
            traceparent,
            format!("00-{}-{}-01", trace.trace_id, trace.span_id)
        );
        assert_eq!(m.key(), Some(decoded.record_key()));
        by_seq.insert(seq_of(&decoded), decoded);
    }
    assert_eq!(by_seq.len(), sent.len(), "each event exactly once");
    for e in &sent {
        let mut got = by_seq[&seq_of(e)].clone();
        got.trace = None; // filled in by emit from the (absent) span context
        assert_eq!(&got, e, "decoded event equals the emitted one");
    }
    let closed = tokio::task::block_in_place(|| emitter.close());
    assert_eq!(closed.spooled, 0);
    assert_eq!(emitter.metrics().delivered(), sent.len() as u64);
}

/// Forwards TCP connections from `listen` to `target` (a broker that "comes back").
async fn proxy(listener: TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], vigil_test_support::free_port()))
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_is_bridged_by_the_spool_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = vigil_test_support::unique_name("emitter-outage");
    vigil_test_support::create_topic(&topic, 3).await;
    let id = schema_id(dir.path()).await;
    // The emitter's only bootstrap address has no broker behind it yet.
    let down = free_port();
    let emitter = Emitter::start(
        &config(dir.path(), &topic),
        &KafkaClientConfig::new(down.to_string()),
        RecordSigner::new(EventSigner::generate(), id).expect("signer"),
        None,
    )
    .expect("emitter starts while the broker is unreachable");
    let n = 500;
    for i in 0..n {
        emitter
            .emit(event(i))
            .expect("emit never fails while the broker is down");
    }
    // Everything ends up in the spool once librdkafka gives up on the unreachable broker.
    let deadline = Instant::now() + Duration::from_secs(30);
    while emitter.spooled_pending() < n as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} spooled",
            emitter.spooled_pending()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(emitter.metrics().delivered(), 0);

    // The broker comes back at that address.
    let listener = TcpListener::bind(down)
        .await
        .expect("rebind the bootstrap port");
    let proxy = tokio::spawn(proxy(listener, vigil_test_support::kafka_bootstrap()));
    wait_until_spool_drained(&emitter, Duration::from_secs(60)).await;
    let codec = Codec::<VerificationEvent>::new().expect("codec");
    let records = read_all(&topic, n, Duration::from_secs(60)).await;
    let mut ids = BTreeSet::new();
    let mut seqs = BTreeSet::new();
    for m in &records {
        let e = codec
            .decode_framed(id, m.payload().expect("value"))
            .expect("decode");
        assert!(
            ids.insert(e.event_id),
            "event {} delivered twice",
            e.event_id
        );
        seqs.insert(seq_of(&e));
    }
    assert_eq!(records.len(), n, "no duplicates");
    assert_eq!(seqs, (0..n).collect(), "no loss");
    let closed = tokio::task::block_in_place(|| emitter.close());
    assert_eq!(closed.spooled, 0);
    proxy.abort();
}

/// The child half of the kill test: spools events against an unreachable broker, reports how
/// many the spool acknowledged, then waits to be killed.
fn kill_test_child(spool_dir: &str, topic: &str, schema_id: u32) {
    let mut c = EmitterConfig::new(spool_dir);
    c.topic = topic.to_owned();
    c.delivery_timeout_ms = 1000;
    c.spool_fsync = "always".into();
    let emitter = Emitter::start(
        &c,
        &KafkaClientConfig::new(free_port().to_string()),
        RecordSigner::new(EventSigner::generate(), SchemaId(schema_id)).expect("signer"),
        None,
    )
    .expect("child emitter");
    for i in 0..300 {
        emitter.emit(event(i)).expect("emit");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while emitter.spooled_pending() < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("SPOOLED {}", emitter.spooled_pending());
    std::thread::sleep(Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_with_spooled_events_loses_nothing_after_restart() {
    if let Ok(args) = std::env::var(CHILD_ENV) {
        let parts: Vec<&str> = args.split('|').collect();
        kill_test_child(parts[0], parts[1], parts[2].parse().expect("schema id"));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = vigil_test_support::unique_name("emitter-kill");
    vigil_test_support::create_topic(&topic, 3).await;
    let id = schema_id(dir.path()).await;
    let spool_dir = dir.path().join("spool");
    let mut child = ChildProcess::spawn(
        "the producing child",
        Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "kill_9_with_spooled_events_loses_nothing_after_restart",
                "--nocapture",
            ])
            .env(
                CHILD_ENV,
                format!("{}|{topic}|{}", spool_dir.display(), id.0),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let stdout = child.take_stdout();
    let spooled = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("SPOOLED ")
                    .and_then(|n| n.parse::<u64>().ok())
            })
    })
    .await
    .expect("reader")
    .expect("child reported its spool");
    child.kill(); // SIGKILL: no destructor, no flush
    assert_eq!(
        spooled, 300,
        "the child spooled every event before it was killed"
    );

    // Restart on the same spool with a reachable broker: the spool drains by itself.
    let emitter = Emitter::start(
        &config(dir.path(), &topic),
        &KafkaClientConfig::new(vigil_test_support::kafka_bootstrap()),
        RecordSigner::new(EventSigner::generate(), id).expect("signer"),
        None,
    )
    .expect("restarted emitter");
    wait_until_spool_drained(&emitter, Duration::from_secs(60)).await;
    let codec = Codec::<VerificationEvent>::new().expect("codec");
    let records = read_all(&topic, 300, Duration::from_secs(60)).await;
    let seqs: BTreeSet<usize> = records
        .iter()
        .map(|m| {
            seq_of(
                &codec
                    .decode_framed(id, m.payload().expect("value"))
                    .expect("decode"),
            )
        })
        .collect();
    assert_eq!(
        seqs,
        (0..300).collect(),
        "every spooled event delivered after the restart"
    );
    assert_eq!(records.len(), 300, "none twice");
    tokio::task::block_in_place(|| emitter.close());
}
