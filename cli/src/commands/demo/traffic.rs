//! What the demo sends: each platform's normal traffic through its emitter, then the scripted
//! attacks (bad-signature burst, replayed nonce, unknown key, use after revocation, poison).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_consumer::key_registry::KeyStatusWriter;
use vigil_pipeline::Pipeline;
use vigil_producer::{Emitter, EmitterConfig};
use vigil_schemas::model::{Platform, now_micros};
use vigil_schemas::signing::PublicKey;
use vigil_schemas::topics::value_subject;
use vigil_schemas::{
    AvroRecord, EventClass, EventSigner, KeyId, KeyState, KeyStatus, Producer, RecordSigner,
    SchemaRegistry, SignedRecord, Status, Subject, VerificationEvent,
};

use super::{
    BRUTE_FORCE_EVENTS, Demo, PLATFORMS, POISON_RECORDS, PlatformSpec, REVOKED_EVENTS,
    UNKNOWN_KEY_EVENTS,
};

impl Demo {
    fn add_sent(&mut self, platform: &str, n: u64) {
        *self
            .sent_by_platform
            .entry(platform.to_owned())
            .or_default() += n;
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Each platform's emitter sends its normal traffic; waits until the verifier judged it all.
    pub(super) async fn normal_traffic(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let schema = SchemaRegistry::new(&self.endpoints.schema_registry_url)?
            .register(
                &value_subject(&self.ns.raw_topic()),
                <VerificationEvent as AvroRecord>::SCHEMA_JSON,
            )
            .await
            .context("registering the raw event schema")?;
        for (idx, p) in PLATFORMS.iter().enumerate() {
            let mut ec = EmitterConfig::new(self.workdir.path().join(format!("spool-{}", p.name)));
            ec.topic = self.ns.raw_topic();
            ec.close_timeout_ms = 5_000;
            let signer = RecordSigner::new(self.signer(p.key_id)?, schema)?;
            let emitter = Arc::new(Emitter::start(&ec, &self.endpoints.kafka, signer, None)?);
            for i in 0..self.per_platform {
                emitter.emit(normal_event(p, idx as u64, i))?;
            }
            self.emitters.push(emitter);
            self.add_sent(p.name, self.per_platform);
        }
        let emitters = self.emitters.clone();
        let reports = tokio::task::spawn_blocking(move || {
            emitters
                .iter()
                .map(|e| e.flush(Duration::from_secs(20)))
                .collect::<Vec<_>>()
        })
        .await?;
        let pending: u64 = reports.iter().map(|r| r.in_flight + r.spooled).sum();
        let expected = self.per_platform * PLATFORMS.len() as u64;
        let ok = self
            .wait(
                "verifier judges the normal traffic",
                Duration::from_secs(30),
                |s| s.verdicts.len() as u64 >= expected,
            )
            .await;
        let detail = format!(
            "{expected} events from 3 emitters (rust, python, js); {pending} left unacknowledged; {}",
            self.counts()
        );
        self.record("normal_traffic", ok && pending == 0, detail, t0);
        self.schema = Some(schema);
        Ok(())
    }

    /// Sends the scripted attacks: a bad-signature burst, a replayed nonce, unknown-key events,
    /// use of a key after its revocation, and one poison record.
    pub(super) async fn attacks(&mut self, writer: &KeyStatusWriter) -> anyhow::Result<()> {
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

        // Events signed by a key nobody registered.
        let rogue = RecordSigner::new(
            EventSigner::generate().with_key_id(KeyId::new("demo-rogue")?),
            schema,
        )?;
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
        revoked.updated_by = "vigil demo".to_owned();
        writer.write(&revoked).await?;
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
        let emitter = self
            .emitters
            .get(2)
            .cloned()
            .ok_or_else(|| anyhow!("js emitter missing"))?;
        for i in 0..REVOKED_EVENTS {
            emitter.emit(normal_event(js, 2, 1_000 + i).with_message("signed after revocation"))?;
        }
        let report =
            tokio::task::spawn_blocking(move || emitter.flush(Duration::from_secs(15))).await?;
        self.add_sent(js.name, REVOKED_EVENTS);

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
        self.record(
            "attacks",
            report.in_flight + report.spooled == 0,
            detail,
            t0,
        );
        Ok(())
    }
}

async fn send_signed(p: &FutureProducer, topic: &str, r: &SignedRecord) -> anyhow::Result<()> {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k.as_str(),
            value: Some(v.as_slice()),
        });
    }
    p.send(
        FutureRecord::to(topic)
            .key(&r.key)
            .payload(&r.value)
            .headers(headers),
        Duration::from_secs(20),
    )
    .await
    .map_err(|(e, _)| anyhow!("sending to {topic}: {e}"))?;
    Ok(())
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
