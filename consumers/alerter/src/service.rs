//! The handler: decode → silences → routes → dedup / grouping → deliver → escalate, and the
//! DLQ path for alerts no receiver accepted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;
use tokio::sync::watch;
use vigil_consumer::dead_letter::{self, DeadLetterHeaders};
use vigil_consumer::{ErrorClass, HandleError, Handler, InboundRecord, Outcome, Turn};
use vigil_schemas::model::now_micros;
use vigil_schemas::wire::split_frame_with_limit;
use vigil_schemas::{Alert, Codec, SchemaRegistry};
use vigil_topology::InternalEvent;

use crate::changelog::{EscalationDoc, OriginDoc, Pending};
use crate::config::DeliveryConfig;
use crate::delivery::{DeliveryError, Receiver};
use crate::internal_events::{
    AlertDeadLettered, AlertHandled, AlertOutcome, AlertSilenced, AlerterMetrics, EscalationFired,
    EscalationUndeliverable, StateWriteFailed, TierDeadLetter,
};
use crate::payload::Reason;
use crate::route::{RouteTree, group_key};
use crate::state::{AlertBook, Rearm, TimerStep, dedup_key, group_mark_key};

/// Everything the handler and its escalation timers share.
pub(crate) struct Shared {
    pub(crate) codec: Codec<Alert>,
    pub(crate) schemas: SchemaRegistry,
    pub(crate) max_value_bytes: usize,
    pub(crate) tree: RouteTree,
    pub(crate) receivers: HashMap<String, Arc<Receiver>>,
    pub(crate) delivery: DeliveryConfig,
    pub(crate) book: Arc<AlertBook>,
    pub(crate) metrics: AlerterMetrics,
    pub(crate) producer: FutureProducer,
    pub(crate) dlq_topic: String,
    pub(crate) group_id: String,
    pub(crate) stop: watch::Receiver<bool>,
    /// The alerts topic: its partitions' owners run their alerts' escalation timers.
    pub(crate) alerts_topic: String,
    /// Bumped when partitions are revoked, so sleeping timers check whether they still own
    /// their alert.
    pub(crate) ownership: watch::Sender<u64>,
}

/// The alerter's [`Handler`].
pub struct Alerter {
    pub(crate) shared: Arc<Shared>,
}

impl Alerter {
    /// Returns the metrics (tests and benches read counters).
    pub fn metrics(&self) -> &AlerterMetrics {
        &self.shared.metrics
    }

    /// Returns the in-memory state.
    pub fn book(&self) -> &Arc<AlertBook> {
        &self.shared.book
    }
}

fn bad(kind: &str, e: impl std::fmt::Display) -> HandleError {
    HandleError::bad_data(format!("{kind}: {e}"))
}

impl Shared {
    async fn decode(&self, record: &InboundRecord) -> Result<Alert, HandleError> {
        let value = record
            .value
            .as_deref()
            .ok_or_else(|| HandleError::bad_data("tombstone: an alert record has no value"))?;
        let (schema_id, body) =
            split_frame_with_limit(value, self.max_value_bytes).map_err(|e| bad(e.kind(), &e))?;
        let writer = match self.schemas.schema_by_id(schema_id).await {
            Ok(w) => w,
            Err(e) if e.class() == vigil_schemas::ErrorClass::BadData => {
                return Err(bad("unknown_schema_id", &e));
            }
            Err(e) => return Err(HandleError::transient(e)),
        };
        self.codec
            .decode_with(&writer, body)
            .map_err(|e| bad(e.kind(), &e))
    }

    /// Notifies `names` concurrently; returns the failures.
    async fn notify(
        &self,
        alert: &Alert,
        names: &[String],
        reason: Reason,
    ) -> (usize, Vec<DeliveryError>) {
        let sends = names.iter().filter_map(|n| self.receivers.get(n)).map(|r| {
            let r = Arc::clone(r);
            async move {
                r.deliver(alert, reason, &self.delivery, &self.metrics)
                    .await
            }
        });
        let results = futures::future::join_all(sends).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        (ok, results.into_iter().filter_map(Result::err).collect())
    }

    /// Parks the original record in the DLQ as `transient` with the reason, broker-acknowledged.
    async fn dead_letter(
        &self,
        record: &InboundRecord,
        errors: &[DeliveryError],
        first_failed_ms: i64,
    ) -> Result<(), HandleError> {
        let error = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let attempts = errors.iter().map(|e| e.attempts).max().unwrap_or(1);
        let dl = DeadLetterHeaders {
            error_class: ErrorClass::Transient,
            error: format!("undeliverable: {error}"),
            origin_topic: record.topic.clone(),
            origin_partition: record.partition,
            origin_offset: record.offset,
            origin_timestamp_ms: record.timestamp_ms,
            consumer_group: self.group_id.clone(),
            attempts,
            first_failed_at_ms: first_failed_ms,
            last_failed_at_ms: now_micros() / 1_000,
            retry_not_before_ms: None,
        };
        let original = dead_letter::Original {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
            timestamp_ms: record.timestamp_ms,
        };
        dead_letter::write(
            &self.producer,
            &self.dlq_topic,
            &original,
            &dl,
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| HandleError::transient(format!("dlq write failed: {e}")))?;
        AlertDeadLettered {
            error: &error,
            topic: &record.topic,
            partition: record.partition,
            offset: record.offset,
        }
        .emit();
        Ok(())
    }
}

impl Alerter {
    /// Keeps the alerts topic's partitions (retry topics are assigned too).
    fn alerts_partitions(&self, topic_partitions: &[(String, i32)]) -> Vec<(String, i32)> {
        topic_partitions
            .iter()
            .filter(|(t, _)| *t == self.shared.alerts_topic)
            .cloned()
            .collect()
    }
}

impl Handler for Alerter {
    async fn handle(&self, record: &InboundRecord) -> Result<Outcome, HandleError> {
        self.handle_in_turn(record, &mut Turn::solo()).await
    }

    /// Starts the escalation timers of the assigned partitions' unacknowledged alerts that
    /// have no timer here (after a restart: every one of them; after a rebalance: those the
    /// previous owner was running), from the tier already notified.
    fn partitions_assigned(&self, topic_partitions: &[(String, i32)]) {
        let partitions = self.alerts_partitions(topic_partitions);
        if partitions.is_empty() {
            return;
        }
        let timers = self.shared.book.assign(&partitions);
        tracing::info!(
            ?partitions,
            timers = timers.len(),
            "alerts partitions assigned; escalation timers armed"
        );
        rearm(&self.shared, timers);
    }

    /// Stops the escalation timers of the revoked partitions' alerts before their next tier:
    /// the partitions' new owner runs them.
    fn partitions_revoked(&self, topic_partitions: &[(String, i32)]) {
        let partitions = self.alerts_partitions(topic_partitions);
        if partitions.is_empty() {
            return;
        }
        self.shared.book.revoke(&partitions);
        self.shared
            .ownership
            .send_modify(|n| *n = n.wrapping_add(1));
        tracing::info!(
            ?partitions,
            "alerts partitions revoked; their escalation timers stop"
        );
    }

    /// Decodes concurrently with the partition's other records in flight. In the record's turn:
    /// silences, routing, dedup and group marks and the notifications, since the order of marks
    /// decides which of two alerts with one fingerprint is suppressed. After the turn: the wait
    /// for the broker to acknowledge the record's state writes (and a DLQ write), so that round
    /// trip does not hold up the next record. The offset is still stored only after it.
    async fn handle_in_turn(
        &self,
        record: &InboundRecord,
        turn: &mut Turn,
    ) -> Result<Outcome, HandleError> {
        let s = &self.shared;
        let alert = s.decode(record).await?;
        turn.wait().await;
        let now = Instant::now();
        if let Some(silence) = s.book.silenced_by(&alert) {
            AlertSilenced {
                metrics: &s.metrics,
                silence,
                fingerprint: &alert.fingerprint,
                rule_id: &alert.rule_id,
            }
            .emit();
            return Ok(Outcome::Handled);
        }
        let routes = s.tree.resolve(&alert);
        if routes.is_empty() {
            AlertHandled {
                metrics: &s.metrics,
                outcome: AlertOutcome::Unrouted,
                fingerprint: &alert.fingerprint,
                rule_id: &alert.rule_id,
            }
            .emit();
            return Ok(Outcome::Handled);
        }
        let first_failed_ms = now_micros() / 1_000;
        let (mut notified, mut grouped) = (false, false);
        let mut failures = Vec::new();
        // State writes of this record; the offset is stored only once the broker has them all.
        let mut pending = Pending::new();
        for route in routes {
            let dedup_key = dedup_key(&route.id, &alert.fingerprint);
            let dedup = Duration::from_millis(route.dedup_window_ms);
            if s.book
                .mark(&dedup_key, dedup, alert.alert_id, now, &mut pending)
                .is_some()
            {
                continue;
            }
            let group_mark = if route.group_by.is_empty() {
                None
            } else {
                let key = group_mark_key(&route.id, &group_key(&alert, &route.group_by));
                let interval = Duration::from_millis(route.group_interval_ms);
                if let Some(leader) = s
                    .book
                    .mark(&key, interval, alert.alert_id, now, &mut pending)
                {
                    s.book.fold(leader, &mut pending);
                    grouped = true;
                    continue;
                }
                Some(key)
            };
            let (ok, errors) = s.notify(&alert, &route.receivers, Reason::Firing).await;
            if ok == 0 {
                // Nobody was told: forget the marks so a replay from the DLQ is not suppressed.
                s.book.unmark(&dedup_key, &mut pending);
                if let Some(k) = &group_mark {
                    s.book.unmark(k, &mut pending);
                }
            } else {
                notified = true;
                let fresh = s.book.activate(
                    &alert,
                    &route.id,
                    now,
                    &route.escalation,
                    Some(record),
                    &mut pending,
                );
                // A redelivered alert already has its timer (running, or armed on assignment),
                // unless another instance activated it: then this one takes the timer over.
                if fresh && !route.escalation.is_empty() {
                    spawn_escalation(
                        Arc::clone(&self.shared),
                        alert.clone(),
                        Some(record.clone()),
                        EscalationDoc {
                            route: route.id.clone(),
                            started_at_ms: first_failed_ms,
                            fired: 0,
                            tiers: route.escalation.clone(),
                        },
                    );
                } else if !fresh
                    && !route.escalation.is_empty()
                    && let Some(policy) = s.book.adopt_escalation(alert.alert_id, &route.id)
                {
                    spawn_escalation(
                        Arc::clone(&self.shared),
                        alert.clone(),
                        Some(record.clone()),
                        policy,
                    );
                }
            }
            failures.extend(errors);
        }
        turn.pass().await;
        if let Err(e) = pending.acked().await {
            StateWriteFailed {
                metrics: &s.metrics,
                caller: "record",
                error: &e.to_string(),
            }
            .emit();
            return Err(HandleError::transient(e));
        }
        if notified && let Some(ts) = record.timestamp_ms {
            let age_ms = (now_micros() / 1_000).saturating_sub(ts).max(0);
            s.metrics.alert_age_seconds.observe(age_ms as f64 / 1_000.0);
        }
        let outcome = if !failures.is_empty() {
            s.dead_letter(record, &failures, first_failed_ms).await?;
            AlertOutcome::DeadLettered
        } else if notified {
            AlertOutcome::Delivered
        } else if grouped {
            AlertOutcome::Grouped
        } else {
            AlertOutcome::Suppressed
        };
        AlertHandled {
            metrics: &s.metrics,
            outcome,
            fingerprint: &alert.fingerprint,
            rule_id: &alert.rule_id,
        }
        .emit();
        Ok(Outcome::Handled)
    }
}

/// Starts the escalation timers of unacknowledged alerts taken over (a partition assigned, or a
/// followed write for an owned partition); tiers already overdue fire at once.
pub(crate) fn rearm(shared: &Arc<Shared>, rearm: Vec<Rearm>) {
    for r in rearm {
        let record = r.origin.as_ref().and_then(OriginDoc::to_record);
        spawn_escalation(Arc::clone(shared), r.alert, record, r.escalation);
    }
}

/// Waits for each remaining tier's wall-clock due time (`started_at_ms + after_ms`) and
/// notifies it unless the alert was acknowledged (or forgotten) meanwhile, another instance
/// notified it already, or the alert's partition is no longer owned here (revoked: the new
/// owner continues); stops when the service stops. A tier counts as done (and is written to
/// the changelog) only after its notification was attempted, so a crash in between notifies
/// it again rather than never.
fn spawn_escalation(
    shared: Arc<Shared>,
    alert: Alert,
    record: Option<InboundRecord>,
    policy: EscalationDoc,
) {
    shared.metrics.pending_escalations.inc();
    tokio::spawn(async move {
        run_escalation(&shared, &alert, record.as_ref(), &policy).await;
        shared.metrics.pending_escalations.dec();
    });
}

async fn run_escalation(
    shared: &Shared,
    alert: &Alert,
    record: Option<&InboundRecord>,
    policy: &EscalationDoc,
) {
    let id = alert.alert_id;
    let mut stop = shared.stop.clone();
    let mut ownership = shared.ownership.subscribe();
    for (i, tier) in policy.tiers.iter().enumerate().skip(policy.fired) {
        let n = i + 1;
        let due_ms = policy
            .started_at_ms
            .saturating_add(i64::try_from(tier.after_ms).unwrap_or(i64::MAX));
        loop {
            let wait_ms = due_ms.saturating_sub(now_micros() / 1_000).max(0);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms.unsigned_abs())) => break,
                _ = stop.changed() => return,
                changed = ownership.changed() => {
                    if changed.is_err() || shared.book.release_if_unowned(id, &policy.route) {
                        tracing::debug!(alert_id = %id, "escalation stopped: partition revoked");
                        return;
                    }
                }
            }
        }
        if *shared.stop.borrow() {
            return;
        }
        match shared.book.timer_step(id, &policy.route, n) {
            TimerStep::Fire => {}
            TimerStep::Skip => continue,
            TimerStep::Stop => {
                tracing::debug!(alert_id = %id, "escalation stopped: acknowledged, expired or revoked");
                return;
            }
        }
        EscalationFired {
            metrics: &shared.metrics,
            alert_id: id,
            tier: n,
        }
        .emit();
        let first_failed_ms = now_micros() / 1_000;
        let (_, errors) = shared
            .notify(alert, &tier.receivers, Reason::Escalation(n))
            .await;
        if !errors.is_empty() {
            let dlq_error = match record {
                Some(record) => shared
                    .dead_letter(record, &errors, first_failed_ms)
                    .await
                    .err()
                    .map(|e| e.to_string()),
                None => None,
            };
            EscalationUndeliverable {
                metrics: &shared.metrics,
                alert_id: id,
                tier: n,
                dead_letter: match (record, &dlq_error) {
                    (None, _) => TierDeadLetter::RecordNotKept,
                    (Some(_), Some(e)) => TierDeadLetter::WriteFailed(e),
                    (Some(_), None) => TierDeadLetter::Written,
                },
            }
            .emit();
        }
        let mut pending = Pending::new();
        shared.book.escalated(id, &policy.route, n, &mut pending);
        if let Err(e) = pending.acked().await {
            StateWriteFailed {
                metrics: &shared.metrics,
                caller: "escalation",
                error: &e.to_string(),
            }
            .emit();
        }
    }
    shared.book.timer_done(id, &policy.route);
}
