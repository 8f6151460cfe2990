//! What each stage saw: readers of the verified, DLQ and alerts topics, the webhook receiver
//! standing in for a real one, and the waits on what they collected.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::task::JoinHandle;
use vigil_schemas::{Alert, Codec, VerifiedEvent};

use super::report::count_by;
use super::{
    BRUTE_FORCE_EVENTS, DEMO_PARTITIONS, Demo, EXPECTED_RULES, FORGED_KEY_RECORDS, KEY_EVENTS,
    PLATFORMS, POISON_RECORDS, REVOKED_EVENTS, TRACE_HOPS, UNKNOWN_KEY_EVENTS,
};

/// One verdict read back from the verified topic.
#[derive(Debug, Clone)]
pub(super) struct Verdict {
    pub(super) platform: String,
    pub(super) state: String,
    pub(super) reason: String,
}

/// One alert read back from the alerts topic.
#[derive(Debug, Clone)]
pub(super) struct SeenAlert {
    pub(super) rule_id: String,
    pub(super) title: String,
    pub(super) severity: String,
    pub(super) fingerprint: String,
    pub(super) count: i64,
}

/// One request the demo's webhook receiver got.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    pub(super) rule_id: String,
    pub(super) fingerprint: String,
    pub(super) signature_ok: bool,
}

/// What the demo's readers and receiver have seen so far.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) verdicts: Vec<Verdict>,
    pub(super) undecodable_verdicts: u64,
    pub(super) dlq: Vec<(String, String)>,
    pub(super) alerts: Vec<SeenAlert>,
    pub(super) deliveries: Vec<Delivery>,
}

/// What the readers, the receiver and the waits share.
pub(super) type Shared = Arc<Mutex<Seen>>;

/// Locks what was seen.
pub(super) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    // A reader that panicked mid-push leaves consistent data behind: keep using it.
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Demo {
    /// Starts the demo's webhook receiver; returns its address.
    pub(super) async fn start_receiver(&mut self, secret: Vec<u8>) -> anyhow::Result<SocketAddr> {
        let state = Arc::new((self.seen.clone(), secret));
        let app = axum::Router::new().fallback(receive).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        self.background.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "demo webhook receiver stopped");
            }
        }));
        Ok(addr)
    }

    /// Reads the verified, DLQ and alerts topics from the beginning into `seen`.
    pub(super) fn start_readers(&mut self) -> anyhow::Result<()> {
        let verified_codec = Arc::new(Codec::<VerifiedEvent>::new()?);
        let seen = self.seen.clone();
        let h = self.reader(&self.ns.verified_topic(), move |m| {
            let decoded = m
                .payload()
                .and_then(|v| vigil_schemas::wire::split_frame(v).ok())
                .and_then(|(_, body)| verified_codec.decode(body).ok());
            let mut s = lock(&seen);
            match decoded {
                Some(v) => s.verdicts.push(Verdict {
                    platform: v.event.producer.platform.as_str().to_owned(),
                    state: v.state.as_str().to_owned(),
                    reason: v.reason.unwrap_or_default(),
                }),
                None => s.undecodable_verdicts += 1,
            }
        })?;
        self.background.push(h);
        let seen = self.seen.clone();
        let h = self.reader(&self.ns.dlq_topic(), move |m| {
            let header = |name: &str| {
                m.headers()
                    .and_then(|hs| hs.iter().find(|h| h.key == name).and_then(|h| h.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            let entry = (
                header(vigil_consumer::dead_letter::ERROR_CLASS),
                header(vigil_consumer::dead_letter::ERROR),
            );
            lock(&seen).dlq.push(entry);
        })?;
        self.background.push(h);
        let alert_codec = Arc::new(Codec::<Alert>::new()?);
        let seen = self.seen.clone();
        let h = self.reader(&self.ns.alerts_topic(), move |m| {
            let decoded = m
                .payload()
                .and_then(|v| vigil_schemas::wire::split_frame(v).ok())
                .and_then(|(_, body)| alert_codec.decode(body).ok());
            if let Some(a) = decoded {
                lock(&seen).alerts.push(SeenAlert {
                    rule_id: a.rule_id,
                    title: a.rule_title,
                    severity: a.severity_id.as_str().to_owned(),
                    fingerprint: a.fingerprint,
                    count: a.count,
                });
            }
        })?;
        self.background.push(h);
        Ok(())
    }

    fn reader(
        &self,
        topic: &str,
        on: impl Fn(&BorrowedMessage<'_>) + Send + Sync + 'static,
    ) -> anyhow::Result<JoinHandle<()>> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.endpoints.kafka.bootstrap_servers)
            .set("group.id", format!("{}-reader-{topic}", self.ns.name()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50");
        let consumer: StreamConsumer = c.create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..DEMO_PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut stop = self.stop.subscribe();
        Ok(tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    m = consumer.recv() => m,
                    _ = stop.changed() => break,
                };
                match m {
                    Ok(m) => on(&m),
                    Err(e) => {
                        tracing::warn!(error = %e, "demo reader");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }))
    }

    pub(super) async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Seen) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut last = Instant::now();
        loop {
            if done(&lock(&self.seen)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            if last.elapsed() >= Duration::from_secs(2) {
                self.progress(&format!("{what}: {}", self.counts()));
                last = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn expected_verdicts(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(POISON_RECORDS)
    }

    /// Waits for every verdict, the DLQ entry, the expected alerts and their deliveries.
    pub(super) async fn observe(&mut self) {
        let t0 = Instant::now();
        let expected = self.expected_verdicts();
        let complete = |s: &Seen| {
            let rules: BTreeSet<&str> = s.alerts.iter().map(|a| a.rule_id.as_str()).collect();
            s.verdicts.len() as u64 >= expected
                && s.dlq.len() as u64 >= POISON_RECORDS
                && EXPECTED_RULES.iter().all(|(_, r)| rules.contains(r))
                && undelivered(s).is_empty()
        };
        self.wait("pipeline", Duration::from_secs(40), complete)
            .await;
        // A short quiet period catches anything extra (a second DLQ entry, a late alert).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let s = lock(&self.seen);
        let n = self.per_platform * PLATFORMS.len() as u64;
        let by_state = count_by(s.verdicts.iter().map(|v| v.state.as_str()));
        let want: BTreeMap<&str, u64> = [
            // The platforms' events, the replayed record's first copy, the trace hops, and the
            // administrators' key operation events (registrations, the approval, a revocation).
            ("valid", n + 1 + TRACE_HOPS + KEY_EVENTS),
            ("bad", BRUTE_FORCE_EVENTS + 1),
            ("revoked", REVOKED_EVENTS),
            ("untrusted", UNKNOWN_KEY_EVENTS + FORGED_KEY_RECORDS),
        ]
        .into_iter()
        .collect();
        let replays = s
            .verdicts
            .iter()
            .filter(|v| v.reason == "nonce replayed")
            .count();
        let verifier_ok = s.verdicts.len() as u64 == expected
            && s.undecodable_verdicts == 0
            && replays == 1
            && want
                .iter()
                .all(|(k, v)| by_state.get(*k).copied().unwrap_or(0) == *v);
        let verifier_detail = format!(
            "{} verdicts (expected {expected}): {by_state:?}, replays {replays}",
            s.verdicts.len()
        );
        let rules: BTreeSet<&str> = s.alerts.iter().map(|a| a.rule_id.as_str()).collect();
        let missing: Vec<&str> = EXPECTED_RULES
            .iter()
            .filter(|(_, r)| !rules.contains(r))
            .map(|(_, r)| *r)
            .collect();
        let alerts_detail = if missing.is_empty() {
            format!(
                "{} alerts, rules {}",
                s.alerts.len(),
                rules.iter().copied().collect::<Vec<_>>().join(", ")
            )
        } else {
            format!("missing alerts of {}", missing.join(", "))
        };
        let undelivered = undelivered(&s);
        let fingerprints: BTreeSet<&str> =
            s.alerts.iter().map(|a| a.fingerprint.as_str()).collect();
        let bad_sigs = s.deliveries.iter().filter(|d| !d.signature_ok).count();
        let webhook_ok = undelivered.is_empty() && bad_sigs == 0 && !fingerprints.is_empty();
        let webhook_detail = format!(
            "{} deliveries for {} distinct alerts, {} undelivered, {bad_sigs} with a bad HMAC",
            s.deliveries.len(),
            fingerprints.len(),
            undelivered.len()
        );
        let dlq_classes = count_by(s.dlq.iter().map(|(c, _)| c.as_str()));
        let dlq_ok = s.dlq.len() as u64 == POISON_RECORDS
            && dlq_classes.get("bad_data").copied() == Some(POISON_RECORDS);
        let dlq_detail = format!(
            "{} entries {dlq_classes:?} (expected {POISON_RECORDS} bad_data)",
            s.dlq.len()
        );
        drop(s);
        self.record("verifier", verifier_ok, verifier_detail, t0);
        self.record("alerts", missing.is_empty(), alerts_detail, t0);
        self.record("webhook", webhook_ok, webhook_detail, t0);
        self.record("dlq", dlq_ok, dlq_detail, t0);
    }
}

/// Alert fingerprints not yet delivered to the webhook with a valid HMAC.
pub(super) fn undelivered(s: &Seen) -> BTreeSet<String> {
    let delivered: BTreeSet<&str> = s
        .deliveries
        .iter()
        .filter(|d| d.signature_ok)
        .map(|d| d.fingerprint.as_str())
        .collect();
    s.alerts
        .iter()
        .filter(|a| !delivered.contains(a.fingerprint.as_str()))
        .map(|a| a.fingerprint.clone())
        .collect()
}

/// The webhook receiver: records each delivery, checking its HMAC like a real receiver would.
async fn receive(
    State(state): State<Arc<(Shared, Vec<u8>)>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp =
        header(vigil_alerter::payload::TIMESTAMP_HEADER).and_then(|t| t.parse::<i64>().ok());
    let signature_ok = match (timestamp, header(vigil_alerter::payload::SIGNATURE_HEADER)) {
        (Some(t), Some(sig)) => vigil_alerter::payload::verify(&state.1, t, &body, sig),
        _ => false,
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |field: &str| v["alert"][field].as_str().unwrap_or_default().to_owned();
    lock(&state.0).deliveries.push(Delivery {
        rule_id: text("rule_id"),
        fingerprint: text("fingerprint"),
        signature_ok,
    });
    StatusCode::OK
}
