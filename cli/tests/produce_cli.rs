#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! `vigil produce --jsonl` as a user runs it, against the real broker and registry.

use std::process::Command;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use vigil_schemas::{Codec, PublicKey, Signature, VerificationEvent};

const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../schemas/testdata/vector_signing_key.pem"
);
const PUB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../schemas/testdata/vector_public_key.pem"
);

#[tokio::test(flavor = "multi_thread")]
async fn bad_lines_are_reported_with_line_numbers_and_the_rest_is_sent() {
    let topic = vigil_test_support::unique_name("cli-produce");
    vigil_test_support::create_topic(&topic, 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.jsonl");
    let good = r#"{"class_uid":"authentication","activity_name":"login","status_id":"failure","subject":{"principal":"alice","client_ip":"10.0.0.7"},"producer":{"platform":"cli","sdk_version":"1.0","service":"sshd"}}"#;
    let lines = [
        good.to_owned(),
        "{not json".to_owned(),
        good.replace("alice", "bob").replace("\"failure\"", "\"success\""),
        String::new(),
        r#"{"class_uid":"no_such_class","activity_name":"x","status_id":"success","producer":{"platform":"cli","sdk_version":"1","service":"s"}}"#.to_owned(),
        good.replace("\"login\"", "\"logout\"").replace("}}", "},\"occurred_at\":\"2026-11-23T08:00:00Z\"}"),
    ];
    std::fs::write(&file, lines.join("\n")).expect("write jsonl");

    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["produce", "--jsonl"])
        .arg(&file)
        .args([
            "--signing-key",
            KEY,
            "--key-id",
            "cli-test-key",
            "--topic",
            &topic,
            "--spool-dir",
        ])
        .arg(dir.path().join("spool"))
        .output()
        .expect("run vigil produce");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed line makes the exit code non-zero\n{stdout}{stderr}"
    );
    assert!(stderr.contains("events.jsonl:2: invalid JSON"), "{stderr}");
    assert!(
        stderr.contains("events.jsonl:5: not a VerificationEvent"),
        "{stderr}"
    );
    assert!(
        stdout.contains("3 sent (3 delivered, 0 spooled), 2 failed"),
        "{stdout}"
    );

    let consumer: StreamConsumer = vigil_test_support::client_config()
        .set("group.id", vigil_test_support::unique_name("cli"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let public = PublicKey::from_spki_pem_file(PUB).expect("public key");
    let codec = Codec::<VerificationEvent>::new().expect("codec");
    let mut principals = Vec::new();
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("record within 30 s")
            .expect("record");
        let value = m.payload().expect("value");
        let sig = rdkafka::message::Headers::iter(m.headers().expect("headers"))
            .find(|h| h.key == "vigil-sig")
            .and_then(|h| h.value)
            .expect("signature header");
        public
            .verify(value, &Signature::from_slice(sig).expect("sig"))
            .expect("valid signature");
        let id = u32::from_be_bytes(value[1..5].try_into().expect("id"));
        let event = codec
            .decode_framed(vigil_schemas::SchemaId(id), value)
            .expect("decode");
        let principal = event.subject.principal.clone().expect("principal");
        // Without a key id in the subject, the record key is the principal.
        assert_eq!(m.key(), Some(principal.as_bytes()));
        principals.push(principal);
    }
    principals.sort();
    assert_eq!(principals, ["alice", "alice", "bob"]);
}
