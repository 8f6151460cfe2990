#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! The real broker behaves as Vigil relies on: idempotent producer, consumer groups, headers kept
//! byte for byte, and transactional writes invisible to `read_committed` readers until commit.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use vigil_test_support::{client_config, create_topic, unique_name};

fn consumer(group: &str, isolation: &str) -> StreamConsumer {
    let mut c: ClientConfig = client_config();
    c.set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", isolation);
    c.create().expect("consumer")
}

#[tokio::test]
async fn idempotent_producer_consumer_group_and_headers_round_trip() {
    let topic = unique_name("e2e-roundtrip");
    create_topic(&topic, 3).await;
    let producer: FutureProducer = client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    let sig = [0xA5u8; 64];
    for i in 0..30u32 {
        let key = format!("key-{}", i % 5);
        let value = i.to_be_bytes();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "vigil-sig",
                value: Some(&sig[..]),
            })
            .insert(Header {
                key: "vigil-seq",
                value: Some(&value[..]),
            });
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&value[..])
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("delivery {i}: {e}"));
    }

    let c = consumer(&unique_name("g"), "read_committed");
    c.subscribe(&[&topic]).expect("subscribe");
    let mut seen = Vec::new();
    while seen.len() < 30 {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("30 records within 30 s")
            .expect("record");
        let value: [u8; 4] = m.payload().expect("payload").try_into().expect("4 bytes");
        let headers = m.headers().expect("headers kept");
        assert_eq!(headers.count(), 2);
        assert_eq!(headers.get(0).key, "vigil-sig");
        assert_eq!(headers.get(0).value, Some(&sig[..]));
        assert_eq!(headers.get(1).value, Some(&value[..]));
        let i = u32::from_be_bytes(value);
        assert_eq!(m.key(), Some(format!("key-{}", i % 5).as_bytes()));
        c.store_offset_from_message(&m).expect("store offset");
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..30).collect::<Vec<_>>(),
        "every record exactly once"
    );
}

#[tokio::test]
async fn transactional_write_is_invisible_to_read_committed_until_commit() {
    let topic = unique_name("e2e-txn");
    create_topic(&topic, 1).await;
    let producer: FutureProducer = client_config()
        .set("transactional.id", unique_name("txn"))
        .set("enable.idempotence", "true")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init transactions");
    producer.begin_transaction().expect("begin");
    for i in 0..5u8 {
        producer
            .send(
                FutureRecord::<(), _>::to(&topic).payload(&[i][..]),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("send {i}: {e}"));
    }

    let committed = consumer(&unique_name("g-rc"), "read_committed");
    committed.subscribe(&[&topic]).expect("subscribe");
    let uncommitted = consumer(&unique_name("g-ru"), "read_uncommitted");
    uncommitted.subscribe(&[&topic]).expect("subscribe");

    // The records are in the log (a read_uncommitted reader sees them) ...
    let m = tokio::time::timeout(Duration::from_secs(30), uncommitted.recv())
        .await
        .expect("read_uncommitted sees the open transaction")
        .expect("record");
    assert_eq!(m.payload(), Some(&[0u8][..]));
    // ... but a read_committed reader sees nothing while the transaction is open.
    let early = tokio::time::timeout(Duration::from_secs(5), committed.recv()).await;
    assert!(
        early.is_err(),
        "read_committed saw an uncommitted record: {early:?}"
    );

    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    let mut got = Vec::new();
    while got.len() < 5 {
        let m = tokio::time::timeout(Duration::from_secs(30), committed.recv())
            .await
            .expect("committed records arrive")
            .expect("record");
        got.push(m.payload().expect("payload")[0]);
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
}
