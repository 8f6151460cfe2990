//! The alerter's state: dedup and group marks, active (notified) alerts with their
//! acknowledgement and escalation progress, and silences. Every table is bounded.
//!
//! The tables live in memory and every mutation is also written to the state changelog
//! ([`crate::changelog`], a compacted topic): at start the alerter reads it back
//! ([`AlertBook::restore`]), so dedup windows, acknowledgements, silences and escalation timers
//! survive a restart. Times inside are wall-clock ms since the epoch; `Instant`s are derived
//! from them when the book is rebuilt.
//!
//! Other instances' writes, read by the changelog follower, enter through
//! [`AlertBook::apply_remote`]: same decoding, expiry and bounds as the restore, memory only
//! (an applied write is never written again, so instances do not echo each other). The last
//! write of a key in topic order wins; an active alert merges instead (acknowledgement,
//! escalation progress, routes and group count only grow), because its owner may write it
//! again (a folded alert, a notified tier) before it has read another instance's ack. One
//! race remains: two instances writing the same key within one follow round trip (only around
//! a rebalance, or for an alert's owner and an ack elsewhere) each keep the other's value in
//! memory (for alerts, the merge of both) until the next write of that key, while the topic,
//! and so a restart, keeps the later one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;
use vigil_consumer::InboundRecord;
use vigil_schemas::Alert;
use vigil_schemas::model::now_micros;

use crate::changelog::{
    AlertDoc, Changelog, EscalationDoc, MarkDoc, OriginDoc, Pending, SilenceDoc, StateKey,
    StateValue, VERSION, encode,
};
use crate::config::{EscalationTier, MatchConfig, StateConfig};
use crate::internal_events::AlerterMetrics;
use crate::payload::alert_json;
use crate::route::Matcher;

#[derive(Debug, Clone, Copy)]
struct Mark {
    expires: Instant,
    alert_id: Uuid,
    /// Set here or restored (not learnt from another instance): this instance writes its
    /// tombstone when it expires or is evicted. A mark learnt from another instance is dropped
    /// from memory only, so a late tombstone from here cannot erase that instance's newer mark.
    local: bool,
}

/// Who acknowledged an alert and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Name given by the caller (`api` when none).
    pub by: String,
    /// Free text.
    pub comment: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// A notified alert, kept for listing, acknowledgement and escalation.
#[derive(Debug, Clone)]
struct ActiveAlert {
    alert: Alert,
    notified_at_ms: i64,
    expires: Instant,
    expires_at_ms: i64,
    routes: Vec<String>,
    grouped: u64,
    escalation_tier: usize,
    ack: Option<Ack>,
    escalations: Vec<EscalationDoc>,
    origin: Option<OriginDoc>,
    /// Routes whose escalation timer runs in this instance (not in the changelog: another
    /// instance's alert, learnt from the follower, has none here). A timer takes its route
    /// out when it ends, under the book's lock, so arming and ending never race.
    timers_here: Vec<String>,
}

impl ActiveAlert {
    /// Rebuilds an alert from its changelog document (restore and remote writes).
    fn from_doc(a: AlertDoc, inst_now: Instant, wall_now: i64) -> Self {
        let AlertDoc {
            alert,
            notified_at_ms,
            expires_at_ms,
            routes,
            grouped,
            escalation_tier,
            ack,
            escalations,
            origin,
            ..
        } = a;
        ActiveAlert {
            alert,
            notified_at_ms,
            expires: instant_of(expires_at_ms, inst_now, wall_now),
            expires_at_ms,
            routes,
            grouped,
            escalation_tier,
            ack,
            escalations,
            origin,
            timers_here: Vec::new(),
        }
    }

    /// Returns whether this instance owns the partition of the alert's record (its escalation
    /// timers run on that partition's owner). An alert without a kept record (activated
    /// without one: unit tests) counts as partition 0's, so it still has exactly one owner.
    fn owned_in(&self, owned: &HashSet<(String, i32)>) -> bool {
        match &self.origin {
            Some(o) => owned.contains(&(o.topic.clone(), o.partition)),
            None => owned.iter().any(|(_, p)| *p == 0),
        }
    }

    /// Returns the policies with tiers left that have no timer here yet, and counts them as
    /// running here: the caller starts their timers.
    fn claim_timers(&mut self) -> Vec<Rearm> {
        let claimed: Vec<Rearm> = self
            .unfinished_escalations()
            .into_iter()
            .filter(|r| !self.timers_here.contains(&r.escalation.route))
            .collect();
        for r in &claimed {
            self.timers_here.push(r.escalation.route.clone());
        }
        claimed
    }

    /// Returns the escalation policies with tiers left to notify, none once acknowledged.
    fn unfinished_escalations(&self) -> Vec<Rearm> {
        if self.ack.is_some() {
            return Vec::new();
        }
        self.escalations
            .iter()
            .filter(|e| e.fired < e.tiers.len())
            .map(|e| Rearm {
                alert: self.alert.clone(),
                escalation: e.clone(),
                origin: self.origin.clone(),
            })
            .collect()
    }

    /// Folds in `local`, the version this instance held before a remote write replaced it.
    /// Acknowledgement, escalation progress, routes and the group count only grow, so a write
    /// of the alert's owner that had not seen another instance's ack yet cannot undo it here.
    fn merge_from(&mut self, local: &ActiveAlert) {
        if self.ack.is_none() {
            self.ack = local.ack.clone();
        }
        self.escalation_tier = self.escalation_tier.max(local.escalation_tier);
        self.grouped = self.grouped.max(local.grouped);
        for r in &local.routes {
            if !self.routes.contains(r) {
                self.routes.push(r.clone());
            }
        }
        for e in &local.escalations {
            match self.escalations.iter_mut().find(|x| x.route == e.route) {
                Some(x) => x.fired = x.fired.max(e.fired),
                None => self.escalations.push(e.clone()),
            }
        }
        if self.origin.is_none() {
            self.origin = local.origin.clone();
        }
        self.timers_here = local.timers_here.clone();
    }

    fn doc(&self) -> AlertDoc {
        AlertDoc {
            v: VERSION,
            alert: self.alert.clone(),
            notified_at_ms: self.notified_at_ms,
            expires_at_ms: self.expires_at_ms,
            routes: self.routes.clone(),
            grouped: self.grouped,
            escalation_tier: self.escalation_tier,
            ack: self.ack.clone(),
            escalations: self.escalations.clone(),
            origin: self.origin.clone(),
        }
    }
}

/// A silence: alerts matching it are not notified until it ends.
#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    /// Id returned at creation.
    pub id: Uuid,
    /// What it matches.
    pub matchers: MatchConfig,
    /// End, ms since the epoch.
    pub ends_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
    #[serde(skip)]
    matcher: Matcher,
}

impl Silence {
    /// Rebuilds a silence from its changelog document; `None` when its matchers no longer
    /// compile.
    fn from_doc(s: SilenceDoc) -> Option<Self> {
        let matcher = Matcher::compile(&s.matchers).ok()?;
        Some(Silence {
            id: s.id,
            matchers: s.matchers,
            ends_at_ms: s.ends_at_ms,
            created_by: s.created_by,
            comment: s.comment,
            created_at_ms: s.created_at_ms,
            matcher,
        })
    }

    fn doc(&self) -> SilenceDoc {
        SilenceDoc {
            v: VERSION,
            id: self.id,
            matchers: self.matchers.clone(),
            ends_at_ms: self.ends_at_ms,
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
            created_at_ms: self.created_at_ms,
        }
    }
}

/// Why a silence cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// The matchers are invalid or empty.
    #[error("{0}")]
    Invalid(String),
    /// `state.max_silences` silences exist already.
    #[error("too many silences (limit {0})")]
    Full(usize),
}

/// An escalation policy to arm: restored, or taken over with a partition's ownership.
#[derive(Debug, Clone)]
pub struct Rearm {
    /// The alert.
    pub alert: Alert,
    /// Its policy and progress.
    pub escalation: EscalationDoc,
    /// The record it came from, when kept.
    pub origin: Option<OriginDoc>,
}

/// What [`AlertBook::restore`] rebuilt and dropped.
#[derive(Debug, Default)]
pub struct Restored {
    /// Marks kept.
    pub marks: usize,
    /// Active alerts kept.
    pub alerts: usize,
    /// Silences kept.
    pub silences: usize,
    /// Entries dropped because their wall-clock end had passed.
    pub expired: usize,
    /// Unexpired entries dropped to honour the table bounds.
    pub evicted: usize,
    /// Silences whose matchers no longer compile.
    pub invalid: usize,
    /// Escalation policies of unacknowledged alerts that still have tiers to notify; their
    /// timers start when their record's partition is assigned ([`AlertBook::assign`]).
    pub rearm: Vec<Rearm>,
}

/// What an escalation timer does with its next tier ([`AlertBook::timer_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerStep {
    /// Notify the tier.
    Fire,
    /// Another instance notified it already (learnt from the changelog): go on to the next.
    Skip,
    /// Stop: the alert was acknowledged or is gone, or its partition is not owned here any
    /// more. The timer no longer counts as running here.
    Stop,
}

/// What [`AlertBook::apply_remote`] did with one write of another instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteApplied {
    /// The entry was inserted, or replaced by the write (an active alert merged: see
    /// [`AlertBook::apply_remote`]).
    Upserted,
    /// A tombstone: the entry is gone (if it was held).
    Removed,
    /// The value had already ended by wall clock: the entry is gone instead.
    Expired,
    /// A silence older than every held one while `max_silences` are held: not kept.
    Evicted,
    /// A silence whose matchers do not compile here: ignored.
    Invalid,
}

impl RemoteApplied {
    /// Returns the label: `upserted`, `removed`, or why the write was not kept.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteApplied::Upserted => "upserted",
            RemoteApplied::Removed => "removed",
            RemoteApplied::Expired => "expired",
            RemoteApplied::Evicted => "evicted",
            RemoteApplied::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    marks: HashMap<String, Mark>,
    mark_order: VecDeque<(Instant, String)>,
    active: HashMap<Uuid, ActiveAlert>,
    active_order: VecDeque<Uuid>,
    silences: BTreeMap<Uuid, Silence>,
    /// Partitions of the alerts topic assigned to this instance: escalation timers of alerts
    /// whose record is in one of them run here.
    owned: HashSet<(String, i32)>,
}

/// The alerter's memory, written through to the state changelog.
pub struct AlertBook {
    inner: Mutex<Inner>,
    limits: StateConfig,
    metrics: AlerterMetrics,
    log: Option<Changelog>,
    /// Where escalations taken over from a followed write go to get their timer started.
    armer: OnceLock<mpsc::UnboundedSender<Rearm>>,
}

fn now_ms() -> i64 {
    now_micros() / 1_000
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Returns the wall-clock time (ms) of `at`, given one `(Instant, wall ms)` pair.
fn wall_of(at: Instant, now: Instant, now_ms: i64) -> i64 {
    if at >= now {
        now_ms.saturating_add(millis(at - now))
    } else {
        now_ms.saturating_sub(millis(now - at))
    }
}

/// Returns the `Instant` of wall-clock `at_ms`, given one `(Instant, wall ms)` pair.
fn instant_of(at_ms: i64, now: Instant, now_ms: i64) -> Instant {
    // Ten years bounds absurd values so the arithmetic cannot overflow.
    const CAP: u64 = 10 * 365 * 24 * 3_600_000;
    let d = at_ms.saturating_sub(now_ms);
    let span = Duration::from_millis(d.unsigned_abs().min(CAP));
    if d >= 0 {
        now.checked_add(span).unwrap_or(now)
    } else {
        now.checked_sub(span).unwrap_or(now)
    }
}

/// Inserts or replaces a mark read from the changelog (restore and remote writes).
/// What [`AlertBook::restore`] keeps of one table, and what it drops (to be tombstoned).
struct Kept<T> {
    kept: Vec<T>,
    dropped: Vec<T>,
}

/// Splits restored entries, oldest first, into the ones kept and the ones dropped: those whose
/// wall-clock end (`end_ms`) has passed (counted in `out.expired`), then the oldest live ones
/// beyond `limit` (counted in `out.evicted`).
fn keep_live_within<T>(
    items: Vec<T>,
    end_ms: impl Fn(&T) -> i64,
    limit: usize,
    wall_now: i64,
    out: &mut Restored,
) -> Kept<T> {
    let (live, expired): (Vec<T>, Vec<T>) = items.into_iter().partition(|t| end_ms(t) > wall_now);
    let excess = live.len().saturating_sub(limit);
    out.expired += expired.len();
    out.evicted += excess;
    let mut dropped = expired;
    let mut live = live.into_iter();
    dropped.extend(live.by_ref().take(excess));
    Kept {
        kept: live.collect(),
        dropped,
    }
}

fn put_mark(
    g: &mut Inner,
    key: String,
    m: &MarkDoc,
    local: bool,
    inst_now: Instant,
    wall_now: i64,
) {
    let expires = instant_of(m.expires_at_ms, inst_now, wall_now);
    g.mark_order.push_back((expires, key.clone()));
    g.marks.insert(
        key,
        Mark {
            expires,
            alert_id: m.alert_id,
            local,
        },
    );
}

/// Returns the dedup key of `fingerprint` on route `route_id` (also the changelog key suffix).
pub fn dedup_key(route_id: &str, fingerprint: &str) -> String {
    format!("d\u{1f}{route_id}\u{1f}{fingerprint}")
}

/// Returns the group key of `group` on route `route_id`.
pub fn group_mark_key(route_id: &str, group: &str) -> String {
    format!("g\u{1f}{route_id}\u{1f}{group}")
}

impl AlertBook {
    /// Returns an empty book that writes nothing (unit tests, benches).
    pub fn new(limits: StateConfig, metrics: AlerterMetrics) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
            metrics,
            log: None,
            armer: OnceLock::new(),
        }
    }

    /// Returns an empty book that writes every mutation to `log`.
    pub fn with_changelog(limits: StateConfig, metrics: AlerterMetrics, log: Changelog) -> Self {
        Self {
            log: Some(log),
            ..Self::new(limits, metrics)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind, still usable.
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Enqueues one changelog write; called with the lock held so the topic sees mutations in
    /// the order they happened. Counted in `vigil_alerter_state_writes_total` even by a book
    /// without a changelog (unit tests, benches), so what would be written stays observable.
    fn write(&self, p: &mut Pending, key: StateKey, value: Option<Vec<u8>>) {
        let kind = if value.is_some() {
            key.kind()
        } else {
            "tombstone"
        };
        self.metrics.state_writes.with_label_values(&[kind]).inc();
        if let Some(log) = &self.log {
            p.push(log.enqueue(&key, value.as_deref()));
        }
    }

    /// [`AlertBook::write`] when there is somewhere to write to: remote writes applied by the
    /// follower pass `None` and change memory only, so nothing echoes back to the topic.
    fn write_opt(&self, p: Option<&mut Pending>, key: StateKey, value: Option<Vec<u8>>) {
        if let Some(p) = p {
            self.write(p, key, value);
        }
    }

    fn write_alert(&self, p: &mut Pending, a: &ActiveAlert) {
        self.write(p, StateKey::Alert(a.alert.alert_id), Some(encode(&a.doc())));
    }

    /// Sets the mark `key` for `window` unless an unexpired one exists; returns the alert id of
    /// the existing mark (the caller suppresses) or `None` (the caller notifies).
    ///
    /// A mark set by the same `alert_id` does not suppress: that is the same alert consumed
    /// again (a crash after the mark was written but before the offset was stored), and it must
    /// still reach its receivers.
    pub fn mark(
        &self,
        key: &str,
        window: Duration,
        alert_id: Uuid,
        now: Instant,
        p: &mut Pending,
    ) -> Option<Uuid> {
        let mut g = self.lock();
        if let Some(m) = g.marks.get(key)
            && m.expires > now
        {
            if m.alert_id == alert_id {
                return None;
            }
            return Some(m.alert_id);
        }
        let expires = now + window;
        let expires_at_ms = wall_of(expires, Instant::now(), now_ms());
        g.marks.insert(
            key.to_owned(),
            Mark {
                expires,
                alert_id,
                local: true,
            },
        );
        g.mark_order.push_back((expires, key.to_owned()));
        self.write(
            p,
            StateKey::Mark(key.to_owned()),
            Some(encode(&MarkDoc {
                v: VERSION,
                alert_id,
                expires_at_ms,
            })),
        );
        self.trim_marks(&mut g, now, Some(p));
        None
    }

    /// Drops expired marks and, beyond `max_dedup_entries`, the oldest; with `p` each removal
    /// is written as a tombstone, without (a remote write applied) memory only.
    fn trim_marks(&self, g: &mut Inner, now: Instant, mut p: Option<&mut Pending>) {
        // Drop queue entries that are stale (re-marked or removed) or expired, oldest first.
        while let Some((exp, k)) = g.mark_order.front().cloned() {
            let current = g.marks.get(&k).map(|m| m.expires);
            if current != Some(exp) {
                g.mark_order.pop_front();
            } else if exp <= now {
                g.mark_order.pop_front();
                if g.marks.remove(&k).is_some_and(|m| m.local) {
                    self.write_opt(p.as_deref_mut(), StateKey::Mark(k), None);
                }
            } else {
                break;
            }
        }
        while g.marks.len() > self.limits.max_dedup_entries {
            let Some((exp, k)) = g.mark_order.pop_front() else {
                break;
            };
            if g.marks.get(&k).map(|m| m.expires) == Some(exp) {
                self.metrics.state_evictions.inc();
                if g.marks.remove(&k).is_some_and(|m| m.local) {
                    self.write_opt(p.as_deref_mut(), StateKey::Mark(k), None);
                }
            }
        }
        self.metrics.dedup_entries.set(g.marks.len() as i64);
    }

    /// Removes a mark set by [`AlertBook::mark`] (the notification failed, so a retry or replay
    /// must not be suppressed).
    pub fn unmark(&self, key: &str, p: &mut Pending) {
        let mut g = self.lock();
        if g.marks.remove(key).is_some() {
            self.write(p, StateKey::Mark(key.to_owned()), None);
        }
        self.metrics.dedup_entries.set(g.marks.len() as i64);
    }

    /// Records a notified alert, or adds a route to it. `escalation` is the route's policy
    /// (empty: none) and `origin` the consumed record, kept for a later dead letter.
    ///
    /// Returns true when the route is new for this alert: only then does the caller start the
    /// route's escalation timer (a redelivered alert keeps the timer it has).
    pub fn activate(
        &self,
        alert: &Alert,
        route_id: &str,
        now: Instant,
        escalation: &[EscalationTier],
        origin: Option<&InboundRecord>,
        p: &mut Pending,
    ) -> bool {
        let ttl = Duration::from_millis(self.limits.active_ttl_ms);
        let (wall_now, inst_now) = (now_ms(), Instant::now());
        let started_at_ms = wall_of(now, inst_now, wall_now);
        let policy = (!escalation.is_empty()).then(|| EscalationDoc {
            route: route_id.to_owned(),
            started_at_ms,
            fired: 0,
            tiers: escalation.to_vec(),
        });
        // Only a policy's tiers can need the record again (a dead letter after a restart).
        let kept_origin = policy.as_ref().and(origin).map(OriginDoc::from_record);
        let mut g = self.lock();
        if let Some(a) = g.active.get_mut(&alert.alert_id) {
            if a.routes.iter().any(|r| r == route_id) {
                return false;
            }
            a.routes.push(route_id.to_owned());
            if let Some(e) = policy {
                a.escalations.push(e);
                a.timers_here.push(route_id.to_owned());
                if a.origin.is_none() {
                    a.origin = kept_origin;
                }
            }
            let a = a.clone();
            self.write_alert(p, &a);
            return true;
        }
        let expires = now + ttl;
        let a = ActiveAlert {
            alert: alert.clone(),
            notified_at_ms: started_at_ms,
            expires,
            expires_at_ms: wall_of(expires, inst_now, wall_now),
            routes: vec![route_id.to_owned()],
            grouped: 0,
            escalation_tier: 0,
            ack: None,
            origin: kept_origin,
            timers_here: policy.iter().map(|e| e.route.clone()).collect(),
            escalations: policy.into_iter().collect(),
        };
        self.write_alert(p, &a);
        g.active.insert(alert.alert_id, a);
        g.active_order.push_back(alert.alert_id);
        self.trim_active(&mut g, now, Some(p));
        true
    }

    /// Drops expired active alerts and, beyond `max_active_alerts`, the oldest; with `p` each
    /// removal is written as a tombstone, without (a remote write applied) memory only.
    fn trim_active(&self, g: &mut Inner, now: Instant, mut p: Option<&mut Pending>) {
        while let Some(front) = g.active_order.front().copied() {
            let over = g.active.len() > self.limits.max_active_alerts;
            match g.active.get(&front) {
                Some(a) if a.expires <= now || over => {
                    if a.expires > now {
                        self.metrics.state_evictions.inc();
                    }
                    g.active.remove(&front);
                    g.active_order.pop_front();
                    self.write_opt(p.as_deref_mut(), StateKey::Alert(front), None);
                }
                Some(_) => break,
                None => {
                    g.active_order.pop_front();
                }
            }
        }
        self.metrics.active_alerts.set(g.active.len() as i64);
    }

    /// Returns the escalation policy of route `route_id` of an alert activated by another
    /// instance (learnt from the changelog) when it still has tiers to notify, the alert is
    /// unacknowledged and no timer for it runs here; the caller starts that timer, continuing
    /// from the tiers already notified. Used when this instance consumes such an alert again
    /// (its partition moved here before the record's offset was stored, e.g. the instance that
    /// activated it died), so its escalation is not lost.
    pub fn adopt_escalation(&self, alert_id: Uuid, route_id: &str) -> Option<EscalationDoc> {
        let mut g = self.lock();
        let a = g.active.get_mut(&alert_id)?;
        if a.ack.is_some() || a.timers_here.iter().any(|r| r == route_id) {
            return None;
        }
        let e = a
            .escalations
            .iter()
            .find(|e| e.route == route_id && e.fired < e.tiers.len())?
            .clone();
        a.timers_here.push(route_id.to_owned());
        Some(e)
    }

    /// Counts an alert folded into the group notified as `alert_id`.
    pub fn fold(&self, alert_id: Uuid, p: &mut Pending) {
        let mut g = self.lock();
        if let Some(a) = g.active.get_mut(&alert_id) {
            a.grouped += 1;
            let a = a.clone();
            self.write_alert(p, &a);
        }
    }

    /// Returns `Some(acked)` for an active alert, `None` once it is gone (expired or evicted).
    pub fn acked(&self, alert_id: Uuid) -> Option<bool> {
        self.lock().active.get(&alert_id).map(|a| a.ack.is_some())
    }

    /// Records that escalation tier `tier` (1-based) of route `route_id` was notified.
    pub fn escalated(&self, alert_id: Uuid, route_id: &str, tier: usize, p: &mut Pending) {
        let mut g = self.lock();
        if let Some(a) = g.active.get_mut(&alert_id) {
            a.escalation_tier = a.escalation_tier.max(tier);
            if let Some(e) = a.escalations.iter_mut().find(|e| e.route == route_id) {
                e.fired = e.fired.max(tier);
            }
            let a = a.clone();
            self.write_alert(p, &a);
        }
    }

    /// Acknowledges the active alert with id `id`, or every active alert whose fingerprint is
    /// `id`; returns the acknowledged alert ids (empty: nothing matched). An alert acknowledged
    /// before keeps its first acknowledgement, and is written again so a retried call after a
    /// failed write persists it.
    pub fn ack(&self, id: &str, by: &str, comment: &str, p: &mut Pending) -> Vec<Uuid> {
        let ack = Ack {
            by: if by.is_empty() {
                "api".into()
            } else {
                by.to_owned()
            },
            comment: comment.to_owned(),
            at_ms: now_ms(),
        };
        let mut g = self.lock();
        let now = Instant::now();
        let ids: Vec<Uuid> = match Uuid::parse_str(id) {
            Ok(u) if g.active.contains_key(&u) => vec![u],
            _ => g
                .active
                .iter()
                .filter(|(_, a)| a.alert.fingerprint == id)
                .map(|(u, _)| *u)
                .collect(),
        };
        let mut done = Vec::new();
        for u in ids {
            if let Some(a) = g.active.get_mut(&u)
                && a.expires > now
            {
                if a.ack.is_none() {
                    a.ack = Some(ack.clone());
                }
                let a = a.clone();
                self.write_alert(p, &a);
                done.push(u);
            }
        }
        done
    }

    /// Returns the active alerts as JSON, newest first.
    pub fn list_active(&self) -> Vec<serde_json::Value> {
        let g = self.lock();
        let now = Instant::now();
        let mut v: Vec<&ActiveAlert> = g.active.values().filter(|a| a.expires > now).collect();
        v.sort_by_key(|a| std::cmp::Reverse(a.notified_at_ms));
        v.into_iter()
            .map(|a| {
                serde_json::json!({
                    "alert": alert_json(&a.alert),
                    "notified_at_ms": a.notified_at_ms,
                    "routes": a.routes,
                    "grouped_alerts": a.grouped,
                    "escalation_tier": a.escalation_tier,
                    "acknowledged": a.ack,
                })
            })
            .collect()
    }

    /// Creates a silence.
    pub fn add_silence(
        &self,
        matchers: MatchConfig,
        ends_at_ms: i64,
        created_by: String,
        comment: String,
        p: &mut Pending,
    ) -> Result<Silence, SilenceError> {
        let matcher = Matcher::compile(&matchers).map_err(SilenceError::Invalid)?;
        if matcher.is_empty() {
            return Err(SilenceError::Invalid(
                "matchers must not be empty (a silence would hide every alert)".into(),
            ));
        }
        let now = now_ms();
        if ends_at_ms <= now {
            return Err(SilenceError::Invalid("ends in the past".into()));
        }
        let mut g = self.lock();
        let ended: Vec<Uuid> = g
            .silences
            .values()
            .filter(|s| s.ends_at_ms <= now)
            .map(|s| s.id)
            .collect();
        for id in ended {
            g.silences.remove(&id);
            self.write(p, StateKey::Silence(id), None);
        }
        if g.silences.len() >= self.limits.max_silences {
            self.metrics.silences.set(g.silences.len() as i64);
            return Err(SilenceError::Full(self.limits.max_silences));
        }
        let s = Silence {
            id: Uuid::new_v4(),
            matchers,
            ends_at_ms,
            created_by,
            comment,
            created_at_ms: now,
            matcher,
        };
        self.write(p, StateKey::Silence(s.id), Some(encode(&s.doc())));
        g.silences.insert(s.id, s.clone());
        self.metrics.silences.set(g.silences.len() as i64);
        Ok(s)
    }

    /// Lists unexpired silences.
    pub fn silences(&self) -> Vec<Silence> {
        let now = now_ms();
        self.lock()
            .silences
            .values()
            .filter(|s| s.ends_at_ms > now)
            .cloned()
            .collect()
    }

    /// Deletes a silence; returns whether it existed.
    pub fn remove_silence(&self, id: Uuid, p: &mut Pending) -> bool {
        let mut g = self.lock();
        let existed = g.silences.remove(&id).is_some();
        if existed {
            self.write(p, StateKey::Silence(id), None);
        }
        self.metrics.silences.set(g.silences.len() as i64);
        existed
    }

    /// Returns the id of an unexpired silence matching `alert`.
    pub fn silenced_by(&self, alert: &Alert) -> Option<Uuid> {
        let now = now_ms();
        self.lock()
            .silences
            .values()
            .find(|s| s.ends_at_ms > now && s.matcher.matches(alert))
            .map(|s| s.id)
    }

    /// Sets where escalations taken over from followed writes are sent to get their timers
    /// started (once; later calls are ignored).
    pub fn set_armer(&self, armer: mpsc::UnboundedSender<Rearm>) {
        let _ = self.armer.set(armer);
    }

    fn arm(&self, rearm: Vec<Rearm>) {
        if rearm.is_empty() {
            return;
        }
        match self.armer.get() {
            Some(tx) => {
                for r in rearm {
                    let _ = tx.send(r);
                }
            }
            None => tracing::debug!(
                timers = rearm.len(),
                "escalations taken over but nothing arms timers"
            ),
        }
    }

    /// Records that alerts-topic partitions `partitions` (topic, partition) are now owned here
    /// and returns the escalations to start: unacknowledged alerts of owned partitions with
    /// tiers left and no timer here, continuing from the tiers already notified.
    pub fn assign(&self, partitions: &[(String, i32)]) -> Vec<Rearm> {
        let mut g = self.lock();
        let g = &mut *g;
        g.owned.extend(partitions.iter().cloned());
        let now = Instant::now();
        let mut out = Vec::new();
        for a in g.active.values_mut() {
            if a.expires > now && a.owned_in(&g.owned) {
                out.extend(a.claim_timers());
            }
        }
        out
    }

    /// Records that alerts-topic partitions `partitions` are no longer owned here: timers of
    /// their alerts stop before their next tier ([`AlertBook::timer_step`]).
    pub fn revoke(&self, partitions: &[(String, i32)]) {
        let mut g = self.lock();
        for p in partitions {
            g.owned.remove(p);
        }
    }

    /// Decides, when tier `tier` (1-based) of route `route_id` is due, whether the timer
    /// notifies it. On [`TimerStep::Stop`] the timer no longer counts as running here, in the
    /// same critical section, so an assignment right after arms a fresh one.
    pub fn timer_step(&self, alert_id: Uuid, route_id: &str, tier: usize) -> TimerStep {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(a) = g.active.get_mut(&alert_id) else {
            return TimerStep::Stop;
        };
        if a.ack.is_some() || !a.owned_in(&g.owned) {
            a.timers_here.retain(|r| r != route_id);
            return TimerStep::Stop;
        }
        let fired = a
            .escalations
            .iter()
            .find(|e| e.route == route_id)
            .map_or(0, |e| e.fired);
        if fired >= tier {
            TimerStep::Skip
        } else {
            TimerStep::Fire
        }
    }

    /// Stops counting the timer of route `route_id` as running here when the alert's
    /// partition is no longer owned; returns whether it was stopped (the timer then ends).
    pub fn release_if_unowned(&self, alert_id: Uuid, route_id: &str) -> bool {
        let mut g = self.lock();
        let g = &mut *g;
        match g.active.get_mut(&alert_id) {
            Some(a) if a.owned_in(&g.owned) => false,
            Some(a) => {
                a.timers_here.retain(|r| r != route_id);
                true
            }
            None => true,
        }
    }

    /// Records that the timer of route `route_id` ended (all tiers done, or the service stops).
    pub fn timer_done(&self, alert_id: Uuid, route_id: &str) {
        if let Some(a) = self.lock().active.get_mut(&alert_id) {
            a.timers_here.retain(|r| r != route_id);
        }
    }

    /// Replaces the book's content with the changelog's latest values, honouring the table
    /// bounds: entries whose wall-clock end has passed are dropped, and beyond a bound the
    /// oldest go; both get a tombstone so compaction forgets them.
    pub fn restore(&self, values: Vec<(StateKey, StateValue)>, p: &mut Pending) -> Restored {
        let (inst_now, wall_now) = (Instant::now(), now_ms());
        let mut out = Restored::default();
        let mut marks = Vec::new();
        let mut alerts = Vec::new();
        let mut silences = Vec::new();
        for (key, value) in values {
            match (key, value) {
                (StateKey::Mark(k), StateValue::Mark(m)) => marks.push((k, m)),
                (StateKey::Alert(_), StateValue::Alert(a)) => alerts.push(a),
                (StateKey::Silence(_), StateValue::Silence(s)) => silences.push(s),
                // `changelog::decode` pairs values with their keys; nothing else reaches here.
                _ => out.invalid += 1,
            }
        }
        let mut g = self.lock();
        let owned = std::mem::take(&mut g.owned);
        *g = Inner {
            owned,
            ..Inner::default()
        };

        marks.sort_by_key(|(_, m)| m.expires_at_ms);
        let marks = keep_live_within(
            marks,
            |(_, m)| m.expires_at_ms,
            self.limits.max_dedup_entries,
            wall_now,
            &mut out,
        );
        for (k, _) in marks.dropped {
            self.write(p, StateKey::Mark(k), None);
        }
        for (k, m) in marks.kept {
            put_mark(&mut g, k, &m, true, inst_now, wall_now);
        }

        alerts.sort_by_key(|a| a.notified_at_ms);
        let alerts = keep_live_within(
            alerts,
            |a| a.expires_at_ms,
            self.limits.max_active_alerts,
            wall_now,
            &mut out,
        );
        for a in alerts.dropped {
            self.write(p, StateKey::Alert(a.alert.alert_id), None);
        }
        for a in alerts.kept {
            let id = a.alert.alert_id;
            let active = ActiveAlert::from_doc(*a, inst_now, wall_now);
            // Not armed here: the owner of the record's partition arms it on assignment.
            out.rearm.extend(active.unfinished_escalations());
            g.active_order.push_back(id);
            g.active.insert(id, active);
        }

        silences.sort_by_key(|s| std::cmp::Reverse(s.created_at_ms));
        for s in silences {
            if s.ends_at_ms <= wall_now {
                out.expired += 1;
                self.write(p, StateKey::Silence(s.id), None);
                continue;
            }
            let Some(silence) = Silence::from_doc(s) else {
                out.invalid += 1;
                continue;
            };
            if g.silences.len() >= self.limits.max_silences {
                // Newest first: the oldest silences are the ones dropped.
                out.evicted += 1;
                self.write(p, StateKey::Silence(silence.id), None);
                continue;
            }
            g.silences.insert(silence.id, silence);
        }
        out.marks = g.marks.len();
        out.alerts = g.active.len();
        out.silences = g.silences.len();
        self.metrics.state_evictions.inc_by(out.evicted as u64);
        self.metrics.dedup_entries.set(g.marks.len() as i64);
        self.metrics.active_alerts.set(g.active.len() as i64);
        self.metrics.silences.set(g.silences.len() as i64);
        out
    }

    /// Applies one write of another alerter instance, read from the changelog by the follower
    /// (`None`: tombstone). Memory only: nothing is written back, so instances never echo each
    /// other. Wall-clock expiry and the table bounds apply as in [`AlertBook::restore`], except
    /// that what does not fit is dropped from memory only (the writer owns the topic entry).
    ///
    /// The last write of a key in topic order wins, with one exception: an active alert keeps
    /// an acknowledgement, escalation progress, routes and group count it already had (see
    /// [`RemoteApplied`]). A remote acknowledgement stops a local escalation timer: the timer
    /// checks [`AlertBook::acked`] before every tier.
    pub fn apply_remote(&self, key: StateKey, value: Option<StateValue>) -> RemoteApplied {
        let (inst_now, wall_now) = (Instant::now(), now_ms());
        let mut g = self.lock();
        let out = match (key, value) {
            (StateKey::Mark(k), None) => {
                g.marks.remove(&k);
                RemoteApplied::Removed
            }
            (StateKey::Alert(id), None) => {
                g.active.remove(&id);
                RemoteApplied::Removed
            }
            (StateKey::Silence(id), None) => {
                g.silences.remove(&id);
                RemoteApplied::Removed
            }
            (StateKey::Mark(k), Some(StateValue::Mark(m))) => {
                if m.expires_at_ms <= wall_now {
                    g.marks.remove(&k);
                    RemoteApplied::Expired
                } else {
                    put_mark(&mut g, k, &m, false, inst_now, wall_now);
                    self.trim_marks(&mut g, inst_now, None);
                    RemoteApplied::Upserted
                }
            }
            (StateKey::Alert(id), Some(StateValue::Alert(a))) => {
                if a.expires_at_ms <= wall_now {
                    g.active.remove(&id);
                    RemoteApplied::Expired
                } else {
                    let mut active = ActiveAlert::from_doc(*a, inst_now, wall_now);
                    match g.active.get(&id) {
                        Some(local) => active.merge_from(local),
                        None => g.active_order.push_back(id),
                    }
                    // The write may come after this instance took the partition over (the
                    // previous owner's last write was still in flight at the rebalance):
                    // its escalation then continues here.
                    let take_over = if active.owned_in(&g.owned) {
                        active.claim_timers()
                    } else {
                        Vec::new()
                    };
                    g.active.insert(id, active);
                    self.trim_active(&mut g, inst_now, None);
                    self.arm(take_over);
                    RemoteApplied::Upserted
                }
            }
            (StateKey::Silence(id), Some(StateValue::Silence(s))) => {
                if s.ends_at_ms <= wall_now {
                    g.silences.remove(&id);
                    RemoteApplied::Expired
                } else {
                    match Silence::from_doc(s) {
                        None => RemoteApplied::Invalid,
                        Some(silence) => self.put_remote_silence(&mut g, silence),
                    }
                }
            }
            // `changelog::decode` pairs values with their keys; nothing else reaches here.
            _ => RemoteApplied::Invalid,
        };
        self.metrics.dedup_entries.set(g.marks.len() as i64);
        self.metrics.active_alerts.set(g.active.len() as i64);
        self.metrics.silences.set(g.silences.len() as i64);
        out
    }

    /// Inserts a remote silence; at `max_silences` the oldest goes, as at restore (newest kept).
    fn put_remote_silence(&self, g: &mut Inner, silence: Silence) -> RemoteApplied {
        if !g.silences.contains_key(&silence.id) && g.silences.len() >= self.limits.max_silences {
            let oldest = g
                .silences
                .values()
                .min_by_key(|s| s.created_at_ms)
                .map(|s| (s.id, s.created_at_ms));
            match oldest {
                Some((old, at)) if at < silence.created_at_ms => {
                    g.silences.remove(&old);
                    self.metrics.state_evictions.inc();
                }
                _ => {
                    self.metrics.state_evictions.inc();
                    return RemoteApplied::Evicted;
                }
            }
        }
        g.silences.insert(silence.id, silence);
        RemoteApplied::Upserted
    }
}
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::route::tests::alert;
    use vigil_schemas::Severity;

    fn book(max_marks: usize, max_active: usize) -> AlertBook {
        let metrics = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
        AlertBook::new(
            StateConfig {
                max_dedup_entries: max_marks,
                max_active_alerts: max_active,
                active_ttl_ms: 60_000,
                max_silences: 2,
            },
            metrics,
        )
    }

    fn p() -> Pending {
        Pending::new()
    }

    #[test]
    fn restore_keeps_the_newest_live_entries_within_the_bound() {
        let mut out = Restored::default();
        // (end, id), oldest first; now = 10: 1 and 2 have ended.
        let items = vec![(1, 'a'), (20, 'b'), (2, 'c'), (30, 'd'), (40, 'e')];
        let k = keep_live_within(items.clone(), |t| t.0, 2, 10, &mut out);
        let ids = |v: &[(i64, char)]| v.iter().map(|t| t.1).collect::<String>();
        assert_eq!(ids(&k.kept), "de", "the two newest live ones");
        assert_eq!(
            ids(&k.dropped),
            "acb",
            "expired first, then the oldest live"
        );
        assert_eq!((out.expired, out.evicted), (2, 1));

        let mut out = Restored::default();
        let k = keep_live_within(items.clone(), |t| t.0, 0, 10, &mut out);
        assert!(k.kept.is_empty());
        assert_eq!((k.dropped.len(), out.expired, out.evicted), (5, 2, 3));

        let mut out = Restored::default();
        let k = keep_live_within(items, |t| t.0, 10, 100, &mut out);
        assert!(k.kept.is_empty(), "all ended");
        assert_eq!((out.expired, out.evicted), (5, 0));
    }

    #[test]
    fn marks_suppress_within_the_window_and_expire_after_it() {
        let b = book(10, 10);
        let t0 = Instant::now();
        let (a1, a2) = (Uuid::new_v4(), Uuid::new_v4());
        let w = Duration::from_millis(100);
        assert_eq!(b.mark("k", w, a1, t0, &mut p()), None);
        assert_eq!(
            b.mark("k", w, a2, t0 + Duration::from_millis(99), &mut p()),
            Some(a1)
        );
        assert_eq!(
            b.mark("k", w, a2, t0 + Duration::from_millis(100), &mut p()),
            None
        );
        b.unmark("k", &mut p());
        assert_eq!(
            b.mark("k", w, a1, t0 + Duration::from_millis(101), &mut p()),
            None
        );
    }

    #[test]
    fn the_same_alert_id_is_a_redelivery_and_is_not_suppressed() {
        let b = book(10, 10);
        let t0 = Instant::now();
        let (a1, a2) = (Uuid::new_v4(), Uuid::new_v4());
        let w = Duration::from_secs(60);
        assert_eq!(b.mark("k", w, a1, t0, &mut p()), None);
        assert_eq!(b.mark("k", w, a1, t0, &mut p()), None, "same id: deliver");
        assert_eq!(b.mark("k", w, a2, t0, &mut p()), Some(a1), "other id");
    }

    #[test]
    fn marks_are_bounded_and_evict_the_oldest() {
        let b = book(3, 10);
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        for k in ["a", "b", "c", "d"] {
            assert_eq!(b.mark(k, w, Uuid::new_v4(), t0, &mut p()), None);
        }
        assert_eq!(b.metrics.state_evictions.get(), 1);
        assert_eq!(b.metrics.dedup_entries.get(), 3);
        assert_eq!(
            b.mark("a", w, Uuid::new_v4(), t0, &mut p()),
            None,
            "a was evicted"
        );
        assert!(b.mark("d", w, Uuid::new_v4(), t0, &mut p()).is_some());
    }

    #[test]
    fn ack_by_id_or_fingerprint_and_active_bound() {
        let b = book(10, 2);
        let now = Instant::now();
        let a1 = alert("r1", Severity::High, &[]);
        let a2 = alert("r2", Severity::High, &[]);
        let a3 = alert("r3", Severity::High, &[]);
        assert!(b.activate(&a1, "route", now, &[], None, &mut p()));
        assert!(
            !b.activate(&a1, "route", now, &[], None, &mut p()),
            "known route"
        );
        b.activate(&a2, "route", now, &[], None, &mut p());
        assert_eq!(b.acked(a1.alert_id), Some(false));
        assert_eq!(
            b.ack(&a1.alert_id.to_string(), "", "", &mut p()),
            vec![a1.alert_id]
        );
        assert_eq!(b.acked(a1.alert_id), Some(true));
        assert_eq!(
            b.ack(&a2.fingerprint, "bob", "mine", &mut p()),
            vec![a2.alert_id]
        );
        assert!(b.ack("nope", "", "", &mut p()).is_empty());
        b.activate(&a3, "route", now, &[], None, &mut p());
        assert_eq!(b.acked(a1.alert_id), None, "oldest evicted at the bound");
        assert_eq!(b.list_active().len(), 2);
    }

    #[test]
    fn silences_match_refuse_empty_and_are_bounded() {
        let b = book(10, 10);
        let future = now_ms() + 60_000;
        let empty = b.add_silence(
            MatchConfig::default(),
            future,
            "x".into(),
            String::new(),
            &mut p(),
        );
        assert!(matches!(empty, Err(SilenceError::Invalid(_))));
        let m = MatchConfig {
            rule_id: vec!["r1".into()],
            ..MatchConfig::default()
        };
        let past = b.add_silence(m.clone(), now_ms() - 1, "x".into(), String::new(), &mut p());
        assert!(matches!(past, Err(SilenceError::Invalid(_))));
        let s = b
            .add_silence(m.clone(), future, "x".into(), String::new(), &mut p())
            .unwrap();
        assert_eq!(b.silenced_by(&alert("r1", Severity::Low, &[])), Some(s.id));
        assert_eq!(b.silenced_by(&alert("r2", Severity::Low, &[])), None);
        b.add_silence(m.clone(), future, "x".into(), String::new(), &mut p())
            .unwrap();
        assert_eq!(
            b.add_silence(m, future, "x".into(), String::new(), &mut p())
                .unwrap_err(),
            SilenceError::Full(2)
        );
        assert!(b.remove_silence(s.id, &mut p()));
        assert!(!b.remove_silence(s.id, &mut p()));
        assert_eq!(b.silences().len(), 1);
    }

    #[test]
    fn wall_clock_and_instants_convert_both_ways() {
        let now = Instant::now();
        let wall = 1_700_000_000_000;
        let later = instant_of(wall + 1_500, now, wall);
        assert_eq!(later - now, Duration::from_millis(1_500));
        assert_eq!(wall_of(later, now, wall), wall + 1_500);
        let earlier = instant_of(wall - 200, now, wall);
        assert_eq!(wall_of(earlier, now, wall), wall - 200);
        // Absurd values are capped, never a panic.
        let _ = instant_of(i64::MAX, now, wall);
        let _ = instant_of(i64::MIN, now, wall);
    }

    /// A silence of rule `rule` by bob, created at and ending at the given wall-clock times.
    fn silence_doc(rule: &str, created_at_ms: i64, ends_at_ms: i64) -> SilenceDoc {
        SilenceDoc {
            v: VERSION,
            id: Uuid::new_v4(),
            matchers: MatchConfig {
                rule_id: vec![rule.into()],
                ..MatchConfig::default()
            },
            ends_at_ms,
            created_by: "bob".into(),
            comment: String::new(),
            created_at_ms,
        }
    }

    fn alert_doc(a: &Alert, notified_at_ms: i64, ttl_ms: i64, fired: usize) -> AlertDoc {
        AlertDoc {
            v: VERSION,
            alert: a.clone(),
            notified_at_ms,
            expires_at_ms: notified_at_ms + ttl_ms,
            routes: vec!["route".into()],
            grouped: 1,
            escalation_tier: fired,
            ack: None,
            escalations: vec![EscalationDoc {
                route: "route".into(),
                started_at_ms: notified_at_ms,
                fired,
                tiers: vec![
                    EscalationTier {
                        receivers: vec!["lead".into()],
                        after_ms: 1_000,
                    },
                    EscalationTier {
                        receivers: vec!["lead2".into()],
                        after_ms: 2_000,
                    },
                ],
            }],
            origin: None,
        }
    }

    #[test]
    fn restore_drops_expired_entries_honours_bounds_and_lists_timers_to_rearm() {
        let b = book(2, 2);
        let now = now_ms();
        let id = |_: u8| Uuid::new_v4();
        let mark = |k: &str, exp: i64| {
            (
                StateKey::Mark(k.into()),
                StateValue::Mark(MarkDoc {
                    v: VERSION,
                    alert_id: id(0),
                    expires_at_ms: exp,
                }),
            )
        };
        let (old, mid, new, gone) = (
            alert("r1", Severity::High, &[]),
            alert("r2", Severity::High, &[]),
            alert("r3", Severity::High, &[]),
            alert("r4", Severity::High, &[]),
        );
        let mut acked = alert_doc(&mid, now - 3_000, 60_000, 0);
        acked.ack = Some(Ack {
            by: "alice".into(),
            comment: String::new(),
            at_ms: now - 100,
        });
        let live_silence = silence_doc("r3", now - 10, now + 60_000);
        let ended_silence = SilenceDoc {
            id: Uuid::new_v4(),
            ends_at_ms: now - 1,
            ..live_silence.clone()
        };
        let values = vec![
            mark("expired", now - 1),
            mark("m1", now + 10_000),
            mark("m2", now + 20_000),
            mark("m3", now + 30_000),
            (
                StateKey::Alert(old.alert_id),
                StateValue::Alert(Box::new(alert_doc(&old, now - 5_000, 60_000, 0))),
            ),
            (
                StateKey::Alert(mid.alert_id),
                StateValue::Alert(Box::new(acked)),
            ),
            (
                StateKey::Alert(new.alert_id),
                StateValue::Alert(Box::new(alert_doc(&new, now - 1_000, 60_000, 1))),
            ),
            (
                StateKey::Alert(gone.alert_id),
                StateValue::Alert(Box::new(alert_doc(&gone, now - 90_000, 60_000, 0))),
            ),
            (
                StateKey::Silence(live_silence.id),
                StateValue::Silence(live_silence.clone()),
            ),
            (
                StateKey::Silence(ended_silence.id),
                StateValue::Silence(ended_silence),
            ),
        ];
        let r = b.restore(values, &mut p());
        assert_eq!((r.marks, r.alerts, r.silences), (2, 2, 1));
        assert_eq!(r.expired, 3, "a mark, an alert and a silence had ended");
        assert_eq!(r.evicted, 2, "the oldest mark and the oldest alert");
        assert_eq!(b.metrics.dedup_entries.get(), 2);
        // m1 (earliest end) was evicted; m2 and m3 still suppress other alert ids.
        let t = Instant::now();
        let w = Duration::from_secs(1);
        assert_eq!(b.mark("m1", w, id(0), t, &mut p()), None);
        assert!(b.mark("m3", w, id(0), t, &mut p()).is_some());
        assert_eq!(b.acked(old.alert_id), None, "evicted at the bound");
        assert_eq!(b.acked(mid.alert_id), Some(true));
        assert_eq!(b.acked(new.alert_id), Some(false));
        assert_eq!(b.acked(gone.alert_id), None);
        // Only the unacknowledged alert with a tier left is listed (armed once its partition is
        // assigned), from its next tier.
        assert_eq!(r.rearm.len(), 1);
        assert_eq!(r.rearm[0].alert.alert_id, new.alert_id);
        assert_eq!(r.rearm[0].escalation.fired, 1);
        assert_eq!(
            b.silenced_by(&alert("r3", Severity::Low, &[])),
            Some(live_silence.id)
        );
        let listed = b.list_active();
        assert_eq!(listed[0]["alert"]["alert_id"], new.alert_id.to_string());
        assert_eq!(listed[0]["escalation_tier"], 1);
        assert_eq!(listed[0]["grouped_alerts"], 1);
        assert_eq!(listed[1]["acknowledged"]["by"], "alice");
    }

    fn writes(b: &AlertBook) -> u64 {
        ["mark", "alert", "silence", "tombstone"]
            .iter()
            .map(|k| b.metrics.state_writes(k))
            .sum()
    }

    #[test]
    fn remote_writes_change_memory_only_and_honour_expiry_and_bounds() {
        let b = book(2, 10);
        let now = now_ms();
        let (other, mine) = (Uuid::new_v4(), Uuid::new_v4());
        let mark = |exp: i64| {
            Some(StateValue::Mark(MarkDoc {
                v: VERSION,
                alert_id: other,
                expires_at_ms: exp,
            }))
        };
        let key = |k: &str| StateKey::Mark(k.into());
        assert_eq!(
            b.apply_remote(key("k"), mark(now + 60_000)),
            RemoteApplied::Upserted
        );
        let t = Instant::now();
        let w = Duration::from_secs(60);
        assert_eq!(
            b.mark("k", w, mine, t, &mut p()),
            Some(other),
            "another instance's mark suppresses here"
        );
        assert_eq!(writes(&b), 0, "applying wrote nothing");
        // Bounds: the oldest goes from memory, still without a write.
        b.apply_remote(key("k2"), mark(now + 70_000));
        b.apply_remote(key("k3"), mark(now + 80_000));
        assert_eq!(b.metrics.dedup_entries.get(), 2);
        assert_eq!(b.metrics.state_evictions.get(), 1);
        assert_eq!(b.mark("k", w, mine, t, &mut p()), None, "k was evicted");
        assert_eq!(
            writes(&b),
            1,
            "the local mark wrote; the remote mark it evicted left memory only"
        );
        // Expired by wall clock: removes what was held. Tombstone: removes.
        assert_eq!(
            b.apply_remote(key("k2"), mark(now - 1)),
            RemoteApplied::Expired
        );
        assert_eq!(b.apply_remote(key("k3"), None), RemoteApplied::Removed);
        assert_eq!(b.mark("k3", w, mine, t, &mut p()), None);

        let a = alert("r1", Severity::High, &[]);
        let doc = alert_doc(&a, now - 1_000, 60_000, 0);
        let akey = StateKey::Alert(a.alert_id);
        b.apply_remote(akey.clone(), Some(StateValue::Alert(Box::new(doc.clone()))));
        assert_eq!(b.acked(a.alert_id), Some(false));
        let mut acked = doc.clone();
        acked.ack = Some(Ack {
            by: "alice".into(),
            comment: String::new(),
            at_ms: now,
        });
        b.apply_remote(akey.clone(), Some(StateValue::Alert(Box::new(acked))));
        assert_eq!(b.acked(a.alert_id), Some(true), "a remote ack stops timers");
        // The owner's later write that had not seen the ack does not undo it here.
        let mut stale = doc;
        stale.grouped = 5;
        b.apply_remote(akey.clone(), Some(StateValue::Alert(Box::new(stale))));
        assert_eq!(b.acked(a.alert_id), Some(true));
        assert_eq!(b.list_active()[0]["grouped_alerts"], 5);

        let silence = silence_doc("r9", now, now + 60_000);
        let skey = StateKey::Silence(silence.id);
        b.apply_remote(skey.clone(), Some(StateValue::Silence(silence.clone())));
        assert_eq!(
            b.silenced_by(&alert("r9", Severity::Low, &[])),
            Some(silence.id)
        );
        b.apply_remote(skey.clone(), None);
        assert_eq!(b.silenced_by(&alert("r9", Severity::Low, &[])), None);
        assert_eq!(
            writes(&b),
            2,
            "nothing applied remotely wrote, only local marks"
        );
    }

    #[test]
    fn an_escalation_learnt_from_another_instance_is_adopted_once() {
        let b = book(10, 10);
        let now = now_ms();
        let theirs = alert("r1", Severity::High, &[]);
        b.apply_remote(
            StateKey::Alert(theirs.alert_id),
            Some(StateValue::Alert(Box::new(alert_doc(
                &theirs,
                now - 500,
                60_000,
                1,
            )))),
        );
        // Consumed again here: the known route starts no fresh timer, but the policy is taken
        // over from the tier already notified.
        assert!(!b.activate(&theirs, "route", Instant::now(), &[], None, &mut p()));
        let e = b.adopt_escalation(theirs.alert_id, "route").unwrap();
        assert_eq!((e.fired, e.tiers.len()), (1, 2));
        assert!(b.adopt_escalation(theirs.alert_id, "route").is_none());
        // An alert activated here already has its timer.
        let mine = alert("r2", Severity::High, &[]);
        let tiers = [EscalationTier {
            receivers: vec!["lead".into()],
            after_ms: 1_000,
        }];
        assert!(b.activate(&mine, "route", Instant::now(), &tiers, None, &mut p()));
        assert!(b.adopt_escalation(mine.alert_id, "route").is_none());
    }
    /// An alert doc whose record came from `topic`/`partition`.
    fn doc_on(a: &Alert, topic: &str, partition: i32, fired: usize) -> AlertDoc {
        let mut d = alert_doc(a, now_ms() - 500, 60_000, fired);
        d.origin = Some(OriginDoc {
            topic: topic.into(),
            partition,
            offset: 7,
            timestamp_ms: None,
            key_hex: None,
            value_hex: None,
            headers: Vec::new(),
        });
        d
    }

    fn tp(topic: &str, partition: i32) -> (String, i32) {
        (topic.to_owned(), partition)
    }

    #[test]
    fn timers_are_armed_on_assignment_of_their_partition_only_and_once() {
        let b = book(10, 10);
        let (on0, on1, other_topic) = (
            alert("r1", Severity::High, &[]),
            alert("r2", Severity::High, &[]),
            alert("r3", Severity::High, &[]),
        );
        let mut acked = doc_on(&alert("r4", Severity::High, &[]), "alerts", 0, 0);
        acked.ack = Some(Ack {
            by: "a".into(),
            comment: String::new(),
            at_ms: now_ms(),
        });
        let values = vec![
            (
                StateKey::Alert(on0.alert_id),
                StateValue::Alert(Box::new(doc_on(&on0, "alerts", 0, 1))),
            ),
            (
                StateKey::Alert(on1.alert_id),
                StateValue::Alert(Box::new(doc_on(&on1, "alerts", 1, 0))),
            ),
            (
                StateKey::Alert(other_topic.alert_id),
                StateValue::Alert(Box::new(doc_on(&other_topic, "elsewhere", 0, 0))),
            ),
            (
                StateKey::Alert(acked.alert.alert_id),
                StateValue::Alert(Box::new(acked)),
            ),
        ];
        let restored = b.restore(values, &mut p());
        assert_eq!(restored.rearm.len(), 3, "listed, not armed");
        let armed = b.assign(&[tp("alerts", 0)]);
        assert_eq!(
            armed.len(),
            1,
            "only the unacked alert of the assigned partition"
        );
        assert_eq!(armed[0].alert.alert_id, on0.alert_id);
        assert_eq!(
            armed[0].escalation.fired, 1,
            "from the tier already notified"
        );
        assert!(b.assign(&[tp("alerts", 0)]).is_empty(), "its timer runs");
        let armed = b.assign(&[tp("alerts", 1)]);
        assert_eq!(armed.len(), 1);
        assert_eq!(armed[0].alert.alert_id, on1.alert_id);
    }

    #[test]
    fn a_revoked_partition_stops_its_timers_and_a_reassignment_arms_them_again() {
        let b = book(10, 10);
        let a = alert("r1", Severity::High, &[]);
        b.apply_remote(
            StateKey::Alert(a.alert_id),
            Some(StateValue::Alert(Box::new(doc_on(&a, "alerts", 1, 0)))),
        );
        assert_eq!(b.assign(&[tp("alerts", 1)]).len(), 1);
        assert_eq!(b.timer_step(a.alert_id, "route", 1), TimerStep::Fire);
        assert!(!b.release_if_unowned(a.alert_id, "route"), "still owned");
        b.revoke(&[tp("alerts", 1)]);
        // Revoked and assigned again before the timer looked: the running timer continues.
        assert!(b.assign(&[tp("alerts", 1)]).is_empty());
        assert_eq!(b.timer_step(a.alert_id, "route", 1), TimerStep::Fire);
        b.revoke(&[tp("alerts", 1)]);
        assert_eq!(
            b.timer_step(a.alert_id, "route", 1),
            TimerStep::Stop,
            "no tier after a revoke"
        );
        assert!(b.release_if_unowned(a.alert_id, "route"));
        // The timer stopped: the next assignment arms a fresh one.
        assert_eq!(b.assign(&[tp("alerts", 1)]).len(), 1);
        // A tier notified by another instance meanwhile is skipped, not notified again.
        b.escalated(a.alert_id, "route", 1, &mut p());
        assert_eq!(b.timer_step(a.alert_id, "route", 1), TimerStep::Skip);
        assert_eq!(b.timer_step(a.alert_id, "route", 2), TimerStep::Fire);
        b.timer_done(a.alert_id, "route");
        b.ack(&a.alert_id.to_string(), "", "", &mut p());
        assert!(b.assign(&[tp("alerts", 1)]).is_empty(), "acknowledged");
    }

    #[test]
    fn a_followed_write_for_an_owned_partition_is_taken_over_once() {
        let b = book(10, 10);
        let (tx, mut rx) = mpsc::unbounded_channel();
        b.set_armer(tx);
        b.assign(&[tp("alerts", 0)]);
        let (mine, theirs) = (
            alert("r1", Severity::High, &[]),
            alert("r2", Severity::High, &[]),
        );
        // The previous owner's write arrives after the rebalance: armed here.
        let doc = doc_on(&mine, "alerts", 0, 0);
        b.apply_remote(
            StateKey::Alert(mine.alert_id),
            Some(StateValue::Alert(Box::new(doc.clone()))),
        );
        let r = rx.try_recv().expect("taken over");
        assert_eq!(r.alert.alert_id, mine.alert_id);
        // Its next write (a tier notified before it stopped) arms nothing more.
        let mut next = doc;
        next.escalations[0].fired = 1;
        b.apply_remote(
            StateKey::Alert(mine.alert_id),
            Some(StateValue::Alert(Box::new(next))),
        );
        assert!(rx.try_recv().is_err(), "one timer per route");
        assert_eq!(b.timer_step(mine.alert_id, "route", 1), TimerStep::Skip);
        // An alert of a partition owned elsewhere is not armed here.
        b.apply_remote(
            StateKey::Alert(theirs.alert_id),
            Some(StateValue::Alert(Box::new(doc_on(&theirs, "alerts", 1, 0)))),
        );
        assert!(rx.try_recv().is_err());
    }
}
