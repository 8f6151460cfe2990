//! The correlator proper: pure and synchronous, so the service, the restart replay and
//! `vigil rules test` run exactly the same code.
//!
//! Event time is `occurred_at`, capped at the verifier's `verified_at` ([`event_time`]). The
//! watermark is the newest event time seen; an event older than `watermark - allowed_lateness`
//! is dropped (and counted). Sigma correlations run in
//! `rsigma-eval` (sliding windows keyed by the group-by values, state reset after a window
//! fires so one burst gives one alert); absence windows are kept here and fire when the
//! watermark passes their deadline plus the allowed lateness.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use rsigma_eval::event::JsonEvent;
use rsigma_eval::{CorrelationAction, CorrelationConfig, CorrelationEngine, CorrelationEventMode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use vigil_schemas::VerifiedEvent;
use vigil_schemas::model::{Alert, Severity};

use crate::fields::event_fields;
use crate::rules::{RuleError, RulePack};

/// The event time of a verified event: its `occurred_at`, but never later than `verified_at`.
///
/// `occurred_at` is the producer's clock and arrives unchecked: one event stamped a year ahead
/// (a skewed host, or an attacker who needs no valid key, since rejected events are correlated
/// too) would move the watermark a year and make every later event "late", blinding every rule.
/// The verifier's own clock bounds it: nothing is verified before it happened. Events without
/// a `verified_at` (0, e.g. hand-written backtest files) keep their `occurred_at`.
pub fn event_time(event: &VerifiedEvent) -> i64 {
    let occurred = event.event.occurred_at;
    if event.verified_at > 0 {
        occurred.min(event.verified_at)
    } else {
        occurred
    }
}

/// Bounds and time settings of a correlator.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// How far behind the watermark an event may arrive and still count, microseconds.
    pub allowed_lateness_us: i64,
    /// Most correlation state entries (group keys over all rules) kept; beyond, the stalest go.
    pub max_state_keys: usize,
    /// Most evidence event ids (and trace ids) carried by one alert.
    pub max_evidence: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            allowed_lateness_us: 30_000_000,
            max_state_keys: 100_000,
            max_evidence: 20,
        }
    }
}

/// Counters the service turns into metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Events evaluated.
    pub events: u64,
    /// Events dropped for arriving later than the allowed lateness.
    pub late: u64,
    /// Events whose `occurred_at` was after their `verified_at`, evaluated at `verified_at`.
    pub future_stamped: u64,
    /// State entries evicted because the state bound was reached.
    pub evictions: u64,
    /// Alerts produced.
    pub alerts: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    start_us: i64,
    last_us: i64,
    count: i64,
    evidence: Vec<String>,
    traces: Vec<String>,
    group: Vec<(String, String)>,
}

/// What an alert needs of an evidence event that the Sigma engine does not keep: its trace id
/// and its exact `occurred_at` (Sigma event refs carry whole seconds only).
#[derive(Debug, Clone)]
struct Remembered {
    trace_id: Option<String>,
    occurred_at_us: i64,
}

/// Remembers recent rule-matching events so alerts can name their traces and exact times;
/// bounded FIFO.
#[derive(Debug, Default)]
struct TraceMemory {
    map: HashMap<String, Remembered>,
    order: VecDeque<String>,
    cap: usize,
}

impl TraceMemory {
    fn insert(&mut self, event_id: &str, remembered: Remembered) {
        if self.cap == 0 || self.map.contains_key(event_id) {
            return;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.map.insert(event_id.to_owned(), remembered);
        self.order.push_back(event_id.to_owned());
    }
}

/// Evaluates a rule pack over events and returns the alerts they complete.
pub struct Correlator {
    pack: Arc<RulePack>,
    settings: EngineSettings,
    sigma: CorrelationEngine,
    /// Open absence windows by (rule index, group key values).
    absence: HashMap<(usize, Vec<String>), Pending>,
    next_deadline_us: i64,
    watermark_us: i64,
    traces: TraceMemory,
    stats: EngineStats,
}

fn sigma_engine(
    pack: &RulePack,
    settings: &EngineSettings,
) -> Result<CorrelationEngine, RuleError> {
    let config = CorrelationConfig {
        max_state_entries: settings.max_state_keys.max(1),
        max_group_entries: Some(10_000),
        action_on_match: CorrelationAction::Reset,
        emit_detections: true,
        correlation_event_mode: CorrelationEventMode::Refs,
        max_correlation_events: settings.max_evidence.max(1),
        ..CorrelationConfig::default()
    };
    let mut engine = CorrelationEngine::new(config);
    engine.add_collection(&pack.sigma).map_err(|e| RuleError {
        file: pack.files.first().cloned().unwrap_or_default(),
        line: 0,
        reason: e.to_string(),
    })?;
    Ok(engine)
}

/// Returns the alert fingerprint: rule id plus a hash of the group key.
pub fn fingerprint(rule_id: &str, group: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    for (k, v) in group {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    format!("{rule_id}:{}", hex::encode(&digest[..12]))
}

fn severity_of(level: Option<rsigma_parser::Level>) -> Severity {
    use rsigma_parser::Level;
    match level {
        Some(Level::Informational) => Severity::Informational,
        Some(Level::Low) => Severity::Low,
        Some(Level::Medium) | None => Severity::Medium,
        Some(Level::High) => Severity::High,
        Some(Level::Critical) => Severity::Critical,
    }
}

fn field_string(fields: &Value, name: &str) -> String {
    match fields.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl Correlator {
    /// Builds a correlator over `pack`.
    pub fn new(pack: Arc<RulePack>, settings: EngineSettings) -> Result<Self, RuleError> {
        let sigma = sigma_engine(&pack, &settings)?;
        Ok(Correlator {
            pack,
            settings,
            sigma,
            absence: HashMap::new(),
            next_deadline_us: i64::MAX,
            watermark_us: i64::MIN,
            traces: TraceMemory {
                cap: settings.max_state_keys.saturating_mul(2).min(1_000_000),
                ..TraceMemory::default()
            },
            stats: EngineStats::default(),
        })
    }

    /// Returns the rule pack in force.
    pub fn pack(&self) -> &Arc<RulePack> {
        &self.pack
    }

    /// Returns the counters so far.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Returns the number of live state entries (Sigma groups plus open absence windows).
    pub fn state_keys(&self) -> usize {
        self.sigma.state_count() + self.absence.len()
    }

    /// Returns the event-time watermark (newest `occurred_at` seen), if any event was seen.
    pub fn watermark_us(&self) -> Option<i64> {
        (self.watermark_us != i64::MIN).then_some(self.watermark_us)
    }

    /// Swaps in a new rule pack, keeping the window state of rules that still exist.
    pub fn reload(&mut self, pack: Arc<RulePack>) -> Result<(), RuleError> {
        let mut sigma = sigma_engine(&pack, &self.settings)?;
        // The snapshot is keyed by correlation id, so surviving rules keep half-filled windows.
        sigma.import_state(self.sigma.export_state());
        let old_ids: Vec<String> = self.pack.absence.iter().map(|a| a.id.clone()).collect();
        let mut absence = HashMap::new();
        for ((idx, key), p) in self.absence.drain() {
            let Some(id) = old_ids.get(idx) else { continue };
            if let Some(new_idx) = pack.absence.iter().position(|a| &a.id == id) {
                absence.insert((new_idx, key), p);
            }
        }
        self.absence = absence;
        self.next_deadline_us = self.min_deadline();
        self.sigma = sigma;
        self.pack = pack;
        Ok(())
    }

    /// Evaluates one verified event at its [`event_time`].
    pub fn process(&mut self, event: &VerifiedEvent) -> Vec<Alert> {
        let fields = event_fields(event);
        let at = event_time(event);
        if at != event.event.occurred_at {
            self.stats.future_stamped += 1;
        }
        self.process_fields(&fields, at)
    }

    /// Evaluates one event given as a field map (see [`crate::fields`]) at `occurred_at_us`.
    pub fn process_fields(&mut self, fields: &Value, occurred_at_us: i64) -> Vec<Alert> {
        if self.watermark_us != i64::MIN
            && occurred_at_us
                < self
                    .watermark_us
                    .saturating_sub(self.settings.allowed_lateness_us)
        {
            self.stats.late += 1;
            return Vec::new();
        }
        self.stats.events += 1;
        self.watermark_us = self.watermark_us.max(occurred_at_us);
        let event_id = field_string(fields, "event_id");
        let trace_id = field_string(fields, "trace_id");
        let before = self.sigma.state_count();
        let results = self.sigma.process_event_at(
            &JsonEvent::borrow(fields),
            occurred_at_us.div_euclid(1_000_000),
        );
        let after = self.sigma.state_count();
        if before >= self.settings.max_state_keys && after < before {
            self.stats.evictions += (before - after) as u64;
        }
        // Only events some rule matched can become evidence: remembering just those keeps the
        // bounded memory on the events alerts will ask about.
        if !results.is_empty() && !event_id.is_empty() {
            let trace = (!trace_id.is_empty()).then(|| trace_id.clone());
            self.traces.insert(
                &event_id,
                Remembered {
                    trace_id: trace,
                    occurred_at_us,
                },
            );
        }
        let mut alerts = Vec::new();
        let mut matched: Vec<&str> = Vec::new();
        for r in &results {
            let rule_id = r.header.rule_id.as_deref().unwrap_or(&r.header.rule_title);
            if let Some(c) = r.as_correlation() {
                // rsigma groups events lacking a group-by field under "absent" and drops that
                // field from the key; "no client_ip" is no group, so such windows never alert.
                let grouped_by = self
                    .pack
                    .sigma
                    .correlations
                    .iter()
                    .find(|k| k.id.as_deref().unwrap_or(&k.title) == rule_id)
                    .map_or(0, |k| k.group_by.len());
                if c.group_key.len() < grouped_by {
                    continue;
                }
                let mut evidence: Vec<String> = Vec::new();
                let mut first_us = occurred_at_us;
                for e in c.event_refs.iter().flatten() {
                    let exact =
                        e.id.as_ref()
                            .and_then(|id| self.traces.map.get(id))
                            .map(|m| m.occurred_at_us);
                    first_us = first_us
                        .min(exact.unwrap_or_else(|| e.timestamp.saturating_mul(1_000_000)));
                    if let Some(id) = &e.id {
                        evidence.push(id.clone());
                    }
                }
                if evidence.is_empty() && !event_id.is_empty() {
                    evidence.push(event_id.clone());
                }
                let span_us = i64::try_from(c.timespan_secs)
                    .unwrap_or(i64::MAX / 2_000_000)
                    .saturating_mul(1_000_000);
                let description = format!(
                    "{} {} reached {} within {}s",
                    c.correlation_type.as_str(),
                    group_text(&c.group_key),
                    c.aggregated_value,
                    c.timespan_secs
                );
                alerts.push(self.alert(AlertParts {
                    rule_id,
                    title: &r.header.rule_title,
                    severity: severity_of(r.header.level),
                    group: &c.group_key,
                    window: (occurred_at_us.saturating_sub(span_us), occurred_at_us),
                    count: c.aggregated_value as i64,
                    evidence,
                    traces: Vec::new(),
                    seen: (first_us, occurred_at_us),
                    description,
                }));
            } else if r.is_detection() {
                matched.push(rule_id);
                if !self.pack.silent.contains(rule_id) {
                    let group = self.detection_group(rule_id, fields);
                    alerts.push(self.alert(AlertParts {
                        rule_id,
                        title: &r.header.rule_title,
                        severity: severity_of(r.header.level),
                        group: &group,
                        window: (occurred_at_us, occurred_at_us),
                        count: 1,
                        evidence: vec![event_id.clone()],
                        traces: Vec::new(),
                        seen: (occurred_at_us, occurred_at_us),
                        description: format!(
                            "detection {} matched for {}",
                            r.header.rule_title,
                            group_text(&group)
                        ),
                    }));
                }
            }
        }
        if !self.pack.absence.is_empty() && !matched.is_empty() {
            let matched: Vec<String> = matched.into_iter().map(str::to_owned).collect();
            self.update_absence(&matched, fields, occurred_at_us, &event_id, &trace_id);
        }
        alerts.extend(self.expire_absence());
        self.stats.alerts += alerts.len() as u64;
        alerts
    }

    /// Returns the group key of a detection rule's standalone alert: its `group-by` fields, or
    /// else the event's subject (`key_id`, else `principal`), so the fingerprint is rule plus
    /// subject and the alerter's dedup never hides one key's alert behind another's.
    fn detection_group(&self, rule_id: &str, fields: &Value) -> Vec<(String, String)> {
        if let Some(by) = self.pack.detection_group_by.get(rule_id) {
            return by
                .iter()
                .map(|f| (f.clone(), field_string(fields, f)))
                .collect();
        }
        ["key_id", "principal"]
            .iter()
            .map(|f| ((*f).to_owned(), field_string(fields, f)))
            .find(|(_, v)| !v.is_empty())
            .into_iter()
            .collect()
    }

    fn update_absence(
        &mut self,
        matched: &[String],
        fields: &Value,
        ts: i64,
        event_id: &str,
        trace_id: &str,
    ) {
        let pack = Arc::clone(&self.pack);
        for (idx, rule) in pack.absence.iter().enumerate() {
            let group: Vec<(String, String)> = rule
                .group_by
                .iter()
                .map(|f| (f.clone(), field_string(fields, f)))
                .collect();
            let key: Vec<String> = group.iter().map(|g| g.1.clone()).collect();
            if matched.iter().any(|m| rule.closed_by.contains(m)) {
                // B closes only a window A opened at or before it.
                if self
                    .absence
                    .get(&(idx, key.clone()))
                    .is_some_and(|p| p.start_us <= ts)
                {
                    self.absence.remove(&(idx, key.clone()));
                }
            }
            if matched.iter().any(|m| rule.opened_by.contains(m)) {
                let max_evidence = self.settings.max_evidence;
                if let Some(p) = self.absence.get_mut(&(idx, key.clone())) {
                    p.count += 1;
                    p.last_us = p.last_us.max(ts);
                    if p.evidence.len() < max_evidence && !event_id.is_empty() {
                        p.evidence.push(event_id.to_owned());
                    }
                    if !trace_id.is_empty()
                        && p.traces.len() < max_evidence
                        && !p.traces.iter().any(|t| t == trace_id)
                    {
                        p.traces.push(trace_id.to_owned());
                    }
                    continue;
                }
                if self.absence.len() >= self.settings.max_state_keys.max(1) {
                    self.evict_oldest_absence();
                }
                self.absence.insert(
                    (idx, key),
                    Pending {
                        start_us: ts,
                        last_us: ts,
                        count: 1,
                        evidence: if event_id.is_empty() {
                            vec![]
                        } else {
                            vec![event_id.to_owned()]
                        },
                        traces: if trace_id.is_empty() {
                            vec![]
                        } else {
                            vec![trace_id.to_owned()]
                        },
                        group,
                    },
                );
                self.next_deadline_us = self
                    .next_deadline_us
                    .min(ts.saturating_add(rule.timespan_us));
            }
        }
    }

    fn evict_oldest_absence(&mut self) {
        let oldest = self
            .absence
            .iter()
            .min_by_key(|(_, p)| p.start_us)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.absence.remove(&k);
            self.stats.evictions += 1;
        }
    }

    fn min_deadline(&self) -> i64 {
        self.absence
            .iter()
            .filter_map(|((idx, _), p)| {
                self.pack
                    .absence
                    .get(*idx)
                    .map(|r| p.start_us.saturating_add(r.timespan_us))
            })
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Fires absence windows whose deadline plus the allowed lateness the watermark passed.
    fn expire_absence(&mut self) -> Vec<Alert> {
        let horizon = self
            .watermark_us
            .saturating_sub(self.settings.allowed_lateness_us);
        if self.next_deadline_us >= horizon {
            return Vec::new();
        }
        let pack = Arc::clone(&self.pack);
        let due: Vec<(usize, Vec<String>)> = self
            .absence
            .iter()
            .filter(|((idx, _), p)| {
                pack.absence
                    .get(*idx)
                    .is_none_or(|r| p.start_us.saturating_add(r.timespan_us) < horizon)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut alerts = Vec::new();
        for key in due {
            let Some(p) = self.absence.remove(&key) else {
                continue;
            };
            let Some(rule) = pack.absence.get(key.0) else {
                continue;
            };
            let end = p.start_us.saturating_add(rule.timespan_us);
            alerts.push(self.alert(AlertParts {
                rule_id: &rule.id,
                title: &rule.title,
                severity: rule.severity,
                group: &p.group,
                window: (p.start_us, end),
                count: p.count,
                evidence: p.evidence.clone(),
                traces: p.traces.clone(),
                seen: (p.start_us, p.last_us),
                description: format!(
                    "absence {}: not followed by {:?} within {}s",
                    group_text(&p.group),
                    rule.closed_by,
                    rule.timespan_us / 1_000_000
                ),
            }));
        }
        self.next_deadline_us = self.min_deadline();
        alerts
    }

    fn alert(&self, parts: AlertParts<'_>) -> Alert {
        let mut evidence = parts.evidence;
        evidence.truncate(self.settings.max_evidence);
        let mut traces = parts.traces;
        for id in &evidence {
            if traces.len() >= self.settings.max_evidence {
                break;
            }
            if let Some(t) = self.traces.map.get(id).and_then(|m| m.trace_id.as_ref())
                && !traces.contains(t)
            {
                traces.push(t.clone());
            }
        }
        Alert {
            alert_id: Uuid::new_v4(),
            fingerprint: fingerprint(parts.rule_id, parts.group),
            severity_id: parts.severity,
            rule_id: parts.rule_id.to_owned(),
            rule_title: parts.title.to_owned(),
            group_key: parts.group.iter().cloned().collect::<BTreeMap<_, _>>(),
            window_start: parts.window.0,
            window_end: parts.window.1,
            count: parts.count,
            evidence_event_ids: evidence,
            trace_ids: traces,
            first_seen: parts.seen.0,
            last_seen: parts.seen.1,
            labels: BTreeMap::new(),
            description: parts.description,
        }
    }
}

struct AlertParts<'a> {
    rule_id: &'a str,
    title: &'a str,
    severity: Severity,
    group: &'a [(String, String)],
    window: (i64, i64),
    count: i64,
    evidence: Vec<String>,
    traces: Vec<String>,
    seen: (i64, i64),
    description: String,
}

fn group_text(group: &[(String, String)]) -> String {
    if group.is_empty() {
        return "(all events)".to_owned();
    }
    group
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
