//! Escalation timers follow partition ownership: two alerters in child processes form one
//! consumer group on a two-partition alerts topic (one partition each) and share one state
//! topic. One alert with an escalation tier goes to each partition, so each instance runs one
//! timer. When one instance dies (SIGKILL) or stops (SIGTERM) before the tier is due, the
//! survivor, once its partition moves over, notifies that tier, and every tier is notified
//! exactly once.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use vigil_schemas::{Alert, Codec, Severity};
use vigil_test_support::unique_name;

/// The tier's delay: long enough to stop an instance before it is due.
const TIER_MS: u64 = 6_000;

fn route() -> String {
    format!(
        "receivers: [hook]\nescalation:\n  tiers:\n    - {{receivers: [lead], after_ms: {TIER_MS}}}\n"
    )
}

/// Sends `a` to partition `partition` of the alerts topic.
async fn send_to(t: &Topics, a: &Alert, partition: i32) {
    let value = Codec::<Alert>::new()
        .unwrap()
        .encode_framed(t.schema, a)
        .unwrap();
    producer()
        .send(
            FutureRecord::to(&t.alerts)
                .partition(partition)
                .key(a.fingerprint.as_bytes())
                .payload(&value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Reads a big-endian integer of `N` bytes at `*at`.
fn take<const N: usize>(b: &[u8], at: &mut usize) -> Option<[u8; N]> {
    let v = b.get(*at..*at + N)?.try_into().ok()?;
    *at += N;
    Some(v)
}

/// Partitions of `topic` in a consumer-protocol member assignment (version, then topics with
/// their partitions).
fn assigned_partitions(assignment: &[u8], topic: &str) -> Option<Vec<i32>> {
    let mut at = 0;
    take::<2>(assignment, &mut at)?;
    let topics = i32::from_be_bytes(take::<4>(assignment, &mut at)?);
    let mut out = Vec::new();
    for _ in 0..topics {
        let len = usize::try_from(i16::from_be_bytes(take::<2>(assignment, &mut at)?)).ok()?;
        let name = assignment.get(at..at + len)?;
        at += len;
        let n = i32::from_be_bytes(take::<4>(assignment, &mut at)?);
        for _ in 0..n {
            let p = i32::from_be_bytes(take::<4>(assignment, &mut at)?);
            if name == topic.as_bytes() {
                out.push(p);
            }
        }
    }
    Some(out)
}

/// Waits until `group` is stable with two members holding one partition of `topic` each.
async fn wait_split(group: &str, topic: &str) {
    let consumer: BaseConsumer = vigil_test_support::client_config().create().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let split = consumer
            .fetch_group_list(Some(group), Duration::from_secs(5))
            .ok()
            .and_then(|list| {
                let g = list.groups().first()?;
                if g.state() != "Stable" {
                    return None;
                }
                let mut held: Vec<Vec<i32>> = g
                    .members()
                    .iter()
                    .map(|m| assigned_partitions(m.assignment()?, topic))
                    .collect::<Option<_>>()?;
                held.sort();
                Some(held)
            });
        if split == Some(vec![vec![0], vec![1]]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never split {topic} between two members: {split:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `group` committed offset 1 on both partitions of `topic` (each alert is done).
async fn wait_both_committed(group: &str, topic: &str) {
    let mut c = vigil_test_support::client_config();
    c.set("group.id", group).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    tpl.add_partition(topic, 1);
    let deadline = Instant::now() + WAIT;
    loop {
        let committed: Vec<Offset> = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .map(|t| t.elements().iter().map(|e| e.offset()).collect())
            .unwrap_or_default();
        if committed == vec![Offset::Offset(1), Offset::Offset(1)] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never committed both alerts: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two instances split the partitions; one alert is delivered on each. Returns the instances,
/// the alerts and when each was delivered.
async fn two_instances_two_alerts(
    t: &Topics,
    r: &TestReceiver,
    yaml: &str,
    group: &str,
) -> (
    ChildAlerter,
    ChildAlerter,
    Vec<Alert>,
    BTreeMap<String, Instant>,
) {
    let a = ChildAlerter::start(yaml).await;
    let b = ChildAlerter::start(yaml).await;
    wait_split(group, &t.alerts).await;
    let alerts = vec![
        alert("fp-failover-0", "r0", Severity::Critical),
        alert("fp-failover-1", "r1", Severity::Critical),
    ];
    for (p, a) in alerts.iter().enumerate() {
        send_to(t, a, i32::try_from(p).unwrap()).await;
    }
    let delivered = r.wait_delivered("/hook", 2, WAIT).await;
    let at: BTreeMap<String, Instant> = delivered
        .iter()
        .map(|d| {
            (
                d.json()["alert"]["alert_id"].as_str().unwrap().to_owned(),
                d.at,
            )
        })
        .collect();
    assert_eq!(at.len(), 2, "each alert delivered once");
    wait_both_committed(group, &t.alerts).await;
    assert!(r.requests("/lead").is_empty(), "no tier due yet");
    (a, b, alerts, at)
}

/// Waits for both tiers, then checks each alert's tier came once, not before it was due, and
/// nothing else was notified.
async fn assert_each_tier_once(r: &TestReceiver, alerts: &[Alert], at: &BTreeMap<String, Instant>) {
    let tiers = r.wait_delivered("/lead", 2, WAIT).await;
    // Any duplicate of a tier would come within a rebalance or a follow round trip.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lead = r.requests("/lead");
    let mut ids = alert_ids(&lead);
    ids.sort();
    let mut want: Vec<String> = alerts.iter().map(|a| a.alert_id.to_string()).collect();
    want.sort();
    assert_eq!(ids, want, "each alert's tier exactly once");
    for d in &tiers {
        let id = d.json()["alert"]["alert_id"].as_str().unwrap().to_owned();
        let waited = d.at.duration_since(at[&id]);
        assert!(
            waited >= Duration::from_millis(TIER_MS - 100),
            "tier of {id} fired early: {waited:?}"
        );
        assert_eq!(d.json()["escalation_tier"], 1);
    }
    assert_eq!(
        r.requests("/hook").len(),
        2,
        "the alerts themselves once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owners_escalation_is_notified_once_by_the_survivor() {
    let t = Topics::create(2).await;
    let r = TestReceiver::start().await;
    let s = Secrets::new();
    let group = unique_name("at-failover-group");
    let yaml = config_yaml(&t, &r, &s, &group, &route(), 4);
    let (a, b, alerts, at) = two_instances_two_alerts(&t, &r, &yaml, &group).await;
    let started = Instant::now();

    // A dies without a word: its partition moves to B after the session timeout (6 s).
    a.kill();
    assert!(
        at.values()
            .all(|t| t.elapsed() < Duration::from_millis(TIER_MS - 1_000)),
        "killed well before the tiers were due"
    );
    assert_each_tier_once(&r, &alerts, &at).await;
    assert!(started.elapsed() < WAIT);
    let listed = get_json(&b.api_url("/alerts"), &s.api_token).await;
    let listed = listed["alerts"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|a| a["escalation_tier"] == 1),
        "the survivor knows both tiers were notified: {listed:?}"
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_owner_hands_its_escalation_over_and_it_is_notified_once() {
    let t = Topics::create(2).await;
    let r = TestReceiver::start().await;
    let s = Secrets::new();
    let group = unique_name("at-handover-group");
    let yaml = config_yaml(&t, &r, &s, &group, &route(), 4);
    let (a, b, alerts, at) = two_instances_two_alerts(&t, &r, &yaml, &group).await;

    // A stops cleanly: it revokes its partition (stopping its timer) and leaves the group, so
    // B takes the partition over at once rather than after the session timeout.
    assert!(a.terminate(WAIT).await, "A stopped cleanly");
    assert!(
        at.values()
            .all(|t| t.elapsed() < Duration::from_millis(TIER_MS - 1_000)),
        "stopped well before the tiers were due"
    );
    assert!(
        r.requests("/lead").is_empty(),
        "no tier notified on the way out"
    );
    assert_each_tier_once(&r, &alerts, &at).await;
    assert!(b.terminate(WAIT).await, "B stopped cleanly");
}
