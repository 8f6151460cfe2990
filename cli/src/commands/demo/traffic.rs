//! What the demo sends: each platform's normal traffic through its SDK, one trace across the
//! three languages, then the scripted attacks (bad-signature burst, replayed nonce, unknown
//! key, use after revocation, poison).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use vigil_consumer::key_plan::{KeyActivity, key_event};
use vigil_consumer::key_registry::KeyStatusWriter;
use vigil_pipeline::Pipeline;
use vigil_producer::{Emitter, EmitterConfig, FlushReport, child_span};
use vigil_schemas::model::{Platform, now_micros};
use vigil_schemas::signing::PublicKey;
use vigil_schemas::topics::value_subject;
use vigil_schemas::{
    AvroRecord, EventClass, EventSigner, KeyId, KeyState, KeyStatus, Producer, RecordSigner,
    SchemaId, SchemaRegistry, SignedRecord, Status, Subject, Trace, VerificationEvent,
};

use super::sdk::JobReport;
use super::{
    BRUTE_FORCE_EVENTS, Demo, FORGED_KEY_RECORDS, PLATFORMS, POISON_RECORDS, PlatformSpec,
    REVOKED_EVENTS, TRACE_HOPS, UNKNOWN_KEY_EVENTS,
};
use crate::commands::keys::KeyEvents;

impl Demo {
    pub(super) fn add_sent(&mut self, platform: &str, n: u64) {
        *self
            .sent_by_platform
            .entry(platform.to_owned())
            .or_default() += n;
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Each platform sends its normal traffic (the python and js platforms from their own
    /// processes, at the same time); waits until the verifier judged it all.
    pub(super) async fn normal_traffic(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let schema = SchemaRegistry::new(&self.endpoints.schema_registry_url)?
            .register(
                &value_subject(&self.ns.raw_topic()),
                <VerificationEvent as AvroRecord>::SCHEMA_JSON,
            )
            .await
            .context("registering the raw event schema")?;
        self.schema = Some(schema);
        let emitter = self.start_rust_emitter(schema)?;
        let rust = &PLATFORMS[0];
        for i in 0..self.per_platform {
            emitter.emit(normal_event(rust, 0, i))?;
        }
        let count = self.per_platform;
        let (python, js) = tokio::try_join!(
            self.run_platform(1, json!({"kind": "traffic", "start": 0, "count": count})),
            self.run_platform(2, json!({"kind": "traffic", "start": 0, "count": count})),
        )?;
        let report = flush(&emitter).await?;
        let mut pending = report.in_flight + report.spooled;
        for (p, job) in [(&PLATFORMS[1], &python), (&PLATFORMS[2], &js)] {
            pending += job.in_flight + job.spooled;
            self.add_sent(p.name, job.emitted);
        }
        self.add_sent(rust.name, count);
        let expected = count * PLATFORMS.len() as u64;
        let ok = self
            .wait(
                "verifier judges the normal traffic",
                Duration::from_secs(30),
                |s| s.verdicts.len() as u64 >= expected,
            )
            .await;
        let detail = format!(
            "{expected} events: rust from this process, python from a Python process, js from a \
             Node.js process; {pending} left unacknowledged; {}",
            self.counts()
        );
        let all_sent = python.emitted == count && js.emitted == count;
        self.record("normal_traffic", ok && all_sent && pending == 0, detail, t0);
        Ok(())
    }

    /// One trace across the three languages: a Python service starts it with a failed login
    /// and hands the `traceparent` to a Node.js service, which fails a login in it and hands it
    /// to a Rust service, which does the same. The correlator's cross-platform rule must fire,
    /// and the trace timeline query shows the three hops in order (checked with the SOC
    /// queries).
    pub(super) async fn cross_platform_trace(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let hop = |traceparent: Option<&str>| {
            json!({
                "kind": "trace",
                "principal": "alice",
                "client_ip": "198.51.100.23",
                "traceparent": traceparent,
            })
        };
        let python = self.run_platform(1, hop(None)).await?;
        let from_python = python
            .traceparent
            .clone()
            .ok_or_else(|| anyhow!("the python platform handed on no traceparent"))?;
        let js = self.run_platform(2, hop(Some(&from_python))).await?;
        let from_js = js
            .traceparent
            .clone()
            .ok_or_else(|| anyhow!("the js platform handed on no traceparent"))?;
        let incoming = Trace::from_traceparent(&from_js)
            .ok_or_else(|| anyhow!("the js platform handed on {from_js:?}, not a traceparent"))?;
        let emitter = self
            .rust_emitter
            .clone()
            .ok_or_else(|| anyhow!("rust emitter missing"))?;
        let rust = &PLATFORMS[0];
        emitter.emit(failed_login(rust).with_trace(child_span(&incoming)))?;
        let report = flush(&emitter).await?;
        for (p, job) in [(&PLATFORMS[1], &python), (&PLATFORMS[2], &js)] {
            self.add_sent(p.name, job.emitted);
        }
        self.add_sent(rust.name, 1);
        let pending = python.in_flight
            + python.spooled
            + js.in_flight
            + js.spooled
            + report.in_flight
            + report.spooled;
        let same_trace = from_python.split('-').nth(1) == Some(incoming.trace_id.as_str());
        let detail = format!(
            "trace {}: failed login in python (fraud-scoring) → js (web-checkout) → rust \
             (payments-api), traceparent handed on between processes; {pending} left \
             unacknowledged",
            incoming.trace_id
        );
        self.trace_id = Some(incoming.trace_id);
        self.record(
            "cross_platform_trace",
            same_trace && python.emitted + js.emitted + 1 == TRACE_HOPS && pending == 0,
            detail,
            t0,
        );
        Ok(())
    }

    fn start_rust_emitter(&mut self, schema: SchemaId) -> anyhow::Result<Arc<Emitter>> {
        let rust = &PLATFORMS[0];
        let mut ec = EmitterConfig::new(self.workdir.path().join(format!("spool-{}", rust.name)));
        ec.topic = self.ns.raw_topic();
        ec.close_timeout_ms = 5_000;
        let signer = RecordSigner::new(self.signer(rust.key_id)?, schema)?;
        let emitter = Arc::new(Emitter::start(&ec, &self.endpoints.kafka, signer, None)?);
        self.rust_emitter = Some(emitter.clone());
        Ok(emitter)
    }

    /// Runs one job of platform `PLATFORMS[idx]` in its own process, through its SDK.
    async fn run_platform(&self, idx: usize, mut job: Value) -> anyhow::Result<JobReport> {
        let p = &PLATFORMS[idx];
        let fields = [
            ("service", json!(p.service)),
            ("key_id", json!(p.key_id)),
            ("host", json!(p.host)),
            ("platform_index", json!(idx)),
            ("topic", json!(self.ns.raw_topic())),
            (
                "spool_dir",
                json!(self.workdir.path().join(format!("spool-{}", p.name))),
            ),
        ];
        for (k, v) in fields {
            job[k] = v;
        }
        let pem = self.signer(p.key_id)?.to_pkcs8_pem()?;
        self.sdk
            .run(p.runtime, &job, &pem, &self.endpoints)
            .await
            .with_context(|| format!("the {} platform ({})", p.name, p.service))
    }

    /// Sends the scripted attacks: a bad-signature burst, a replayed nonce, unknown-key events,
    /// use of a key after its revocation, and one poison record.
    pub(super) async fn attacks(
        &mut self,
        writer: &KeyStatusWriter,
        events: &KeyEvents,
    ) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let schema = self
            .schema
            .ok_or_else(|| anyhow!("raw schema not registered"))?;
        let mut pc = ClientConfig::new();
        pc.set("bootstrap.servers", &self.endpoints.kafka.bootstrap_servers)
            .set("linger.ms", "1")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "20000");
        let producer: FutureProducer = pc.create()?;
        let raw = self.ns.raw_topic();

        // Brute force: someone without the python key signs under its key id.
        let python = &PLATFORMS[1];
        let forger = RecordSigner::new(
            EventSigner::generate().with_key_id(KeyId::new(python.key_id)?),
            schema,
        )?;
        for i in 0..BRUTE_FORCE_EVENTS {
            let e = VerificationEvent::new(
                EventClass::Authorization,
                "authorize",
                Status::Success,
                Producer::new(python.platform, "0.1.0", python.service).with_host(python.host),
            )
            .with_subject(
                Subject::principal(format!("svc-batch-{i}"))
                    .with_key_id(python.key_id)
                    .with_client_ip("203.0.113.66"),
            )
            .with_message("forged: signed with a key the registry does not hold");
            send_signed(&producer, &raw, &forger.sign(&e)?).await?;
        }
        self.add_sent(python.name, BRUTE_FORCE_EVENTS);

        // Replay: one correctly signed record sent twice (same nonce, same bytes).
        let rust = &PLATFORMS[0];
        let replayer = RecordSigner::new(self.signer(rust.key_id)?, schema)?;
        let record =
            replayer.sign(&normal_event(rust, 0, 0).with_message("captured and replayed"))?;
        send_signed(&producer, &raw, &record).await?;
        send_signed(&producer, &raw, &record).await?;
        self.add_sent(rust.name, 2);

        // Events signed by a key nobody registered, after the attacker wrote its status to the
        // keys topic with a plain Kafka client (unsigned): the registry refuses the record.
        let rogue = RecordSigner::new(
            EventSigner::generate().with_key_id(KeyId::new("demo-rogue")?),
            schema,
        )?;
        self.forge_key_record(&producer, rogue.signer().public_key())
            .await?;
        // The verifier reports the refused record as an `untrusted` verdict of its own.
        self.add_sent("other", FORGED_KEY_RECORDS);
        for i in 0..UNKNOWN_KEY_EVENTS {
            let e = VerificationEvent::new(
                EventClass::SignatureVerification,
                "verify",
                Status::Success,
                Producer::new(Platform::Other, "0.0.1", "unknown-tool").with_host("laptop-17"),
            )
            .with_subject(
                Subject::principal(format!("intruder-{i}"))
                    .with_key_id("demo-rogue")
                    .with_client_ip("198.51.100.9"),
            );
            send_signed(&producer, &raw, &rogue.sign(&e)?).await?;
        }
        self.add_sent("other", UNKNOWN_KEY_EVENTS);

        // Revocation of the js key, then the js platform keeps signing with it.
        let js = &PLATFORMS[2];
        let mut revoked = key_status(
            js.key_id,
            self.signer(js.key_id)?.public_key(),
            KeyState::Revoked,
        );
        revoked.revoked_at = Some(now_micros());
        revoked.reason = Some("key found in a public build log".to_owned());
        revoked.updated_by = writer.admin_id();
        revoked.version = 2;
        writer.write(&revoked).await?;
        events
            .send(&key_event(
                KeyActivity::Revoked,
                &revoked,
                &writer.admin_id(),
            ))
            .await?;
        self.add_sent("cli", 1);
        let registry = self
            .pipeline
            .as_ref()
            .and_then(Pipeline::key_registry)
            .cloned()
            .ok_or_else(|| anyhow!("verifier key registry missing"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !registry
            .get(js.key_id)
            .is_some_and(|k| k.status.state == KeyState::Revoked)
        {
            if Instant::now() > deadline {
                bail!(
                    "the verifier did not apply the revocation of {} within 15s",
                    js.key_id
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Events after the revocation instant (microsecond clock) are judged against it.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let job = self
            .run_platform(
                2,
                json!({"kind": "traffic", "start": 1_000, "count": REVOKED_EVENTS,
                       "message": "signed after revocation"}),
            )
            .await?;
        self.add_sent(js.name, job.emitted);

        // Poison: bytes that are neither framed Avro nor signed.
        producer
            .send(
                FutureRecord::to(&raw)
                    .key("poison")
                    .payload(&b"\x00\x00\x00\xff\xffnot avro, not signed"[..]),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| anyhow!("sending the poison record: {e}"))?;
        self.sent.fetch_add(POISON_RECORDS, Ordering::Relaxed);
        let detail = format!(
            "{BRUTE_FORCE_EVENTS} forged signatures for {}, 1 nonce replayed, {UNKNOWN_KEY_EVENTS} unknown-key events, \
             {REVOKED_EVENTS} events after revoking {}, {POISON_RECORDS} poison record",
            python.key_id, js.key_id
        );
        let ok = job.emitted == REVOKED_EVENTS && job.in_flight + job.spooled == 0;
        self.record("attacks", ok, detail, t0);
        Ok(())
    }
}

/// Sends a signed record to `topic`, waiting up to 20 s for the acknowledgement.
async fn send_signed(p: &FutureProducer, topic: &str, r: &SignedRecord) -> anyhow::Result<()> {
    crate::commands::send_signed(p, topic, r, Duration::from_secs(20)).await
}

/// A normal event of platform `p` (index `platform_idx`), the `i`-th of its traffic.
fn normal_event(p: &PlatformSpec, platform_idx: u64, i: u64) -> VerificationEvent {
    let (class, activity) = match i % 3 {
        0 => (EventClass::Authentication, "login"),
        1 => (EventClass::SignatureVerification, "verify"),
        _ => (EventClass::Authorization, "authorize"),
    };
    VerificationEvent::new(
        class,
        activity,
        Status::Success,
        Producer::new(p.platform, "0.1.0", p.service).with_host(p.host),
    )
    .with_subject(
        Subject::principal(format!("user-{:02}", i % 23))
            .with_key_id(p.key_id)
            .with_client_ip(format!("10.{}.0.{}", platform_idx + 1, i % 200 + 1))
            .with_tenant("acme-bank"),
    )
    .with_message(format!("{activity} ok"))
}

/// A failed login of platform `p`, the rust hop of the cross-platform trace.
fn failed_login(p: &PlatformSpec) -> VerificationEvent {
    VerificationEvent::new(
        EventClass::Authentication,
        "login",
        Status::Failure,
        Producer::new(p.platform, "0.1.0", p.service).with_host(p.host),
    )
    .with_subject(
        Subject::principal("alice")
            .with_key_id(p.key_id)
            .with_client_ip("198.51.100.23")
            .with_tenant("acme-bank"),
    )
    .with_message(format!("login failed at {}", p.service))
}

/// Flushes `emitter` off the async runtime.
async fn flush(emitter: &Arc<Emitter>) -> anyhow::Result<FlushReport> {
    let emitter = emitter.clone();
    Ok(tokio::task::spawn_blocking(move || emitter.flush(Duration::from_secs(20))).await?)
}

impl Demo {
    /// Writes an unsigned `active` status for `demo-rogue` straight to the keys topic, as any
    /// client able to write the topic could, and waits for the verifier to refuse it.
    async fn forge_key_record(
        &mut self,
        producer: &FutureProducer,
        public_key: &PublicKey,
    ) -> anyhow::Result<()> {
        let topic = self.ns.keys_topic();
        let schema = vigil_schemas::SchemaRegistry::new(&self.endpoints.schema_registry_url)?
            .register(
                &value_subject(&topic),
                vigil_schemas::schema::KEY_STATUS_AVSC,
            )
            .await?;
        let forged = KeyStatus {
            version: 1_000,
            ..key_status("demo-rogue", public_key, KeyState::Active)
        };
        let value = vigil_schemas::Codec::<KeyStatus>::new()?.encode_framed(schema, &forged)?;
        producer
            .send(
                FutureRecord::to(&topic).key("demo-rogue").payload(&value),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| e)?;
        let telemetry = self
            .pipeline
            .as_ref()
            .and_then(|p| p.telemetry(vigil_pipeline::ServiceKind::Verifier))
            .ok_or_else(|| anyhow!("verifier telemetry missing"))?;
        let refused = "vigil_key_registry_records_refused_total{reason=\"unsigned\"} 1";
        let deadline = Instant::now() + Duration::from_secs(15);
        while !telemetry.render().lines().any(|l| l == refused) {
            if Instant::now() > deadline {
                bail!("the verifier did not refuse the forged key record within 15s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// A key registry entry for `public_key`, valid from an hour ago.
pub(super) fn key_status(key_id: &str, public_key: &PublicKey, state: KeyState) -> KeyStatus {
    KeyStatus {
        state,
        ..KeyStatus::active(
            key_id,
            public_key,
            now_micros() - 3_600_000_000,
            "vigil demo",
        )
    }
}
