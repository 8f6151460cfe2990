//! The entries the book holds in memory (marks, active alerts, silences) and the escalations
//! it hands out to be armed, with their conversions from and to the stored documents.

use std::collections::HashSet;
use std::time::Instant;

use serde::Serialize;
use uuid::Uuid;
use vigil_schemas::Alert;

use super::clock::instant_of;
use super::document::{Ack, AlertDoc, EscalationDoc, OriginDoc, SilenceDoc, VERSION};
use crate::config::MatchConfig;
use crate::route::Matcher;

/// A dedup or group mark held in memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    pub(super) expires: Instant,
    pub(super) alert_id: Uuid,
    /// Set here or restored (not learnt from another instance): this instance writes its
    /// tombstone when it expires or is evicted. A mark learnt from another instance is dropped
    /// from memory only, so a late tombstone from here cannot erase that instance's newer mark.
    pub(super) local: bool,
}

/// A notified alert, kept for listing, acknowledgement and escalation.
#[derive(Debug, Clone)]
pub(super) struct ActiveAlert {
    pub(super) alert: Alert,
    pub(super) notified_at_ms: i64,
    pub(super) expires: Instant,
    pub(super) expires_at_ms: i64,
    pub(super) routes: Vec<String>,
    pub(super) grouped: u64,
    pub(super) escalation_tier: usize,
    pub(super) ack: Option<Ack>,
    pub(super) escalations: Vec<EscalationDoc>,
    pub(super) origin: Option<OriginDoc>,
    /// Routes whose escalation timer runs in this instance (not in the changelog: another
    /// instance's alert, learnt from the follower, has none here). A timer takes its route
    /// out when it ends, under the book's lock, so arming and ending never race.
    pub(super) timers_here: Vec<String>,
}

impl ActiveAlert {
    /// Rebuilds an alert from its changelog document (restore and remote writes).
    pub(super) fn from_doc(a: AlertDoc, inst_now: Instant, wall_now: i64) -> Self {
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
    pub(super) fn owned_in(&self, owned: &HashSet<(String, i32)>) -> bool {
        match &self.origin {
            Some(o) => owned.contains(&(o.topic.clone(), o.partition)),
            None => owned.iter().any(|(_, p)| *p == 0),
        }
    }

    /// Returns the policies with tiers left that have no timer here yet, and counts them as
    /// running here: the caller starts their timers.
    pub(super) fn claim_timers(&mut self) -> Vec<Rearm> {
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
    pub(super) fn unfinished_escalations(&self) -> Vec<Rearm> {
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
    pub(super) fn merge_from(&mut self, local: &ActiveAlert) {
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

    pub(super) fn doc(&self) -> AlertDoc {
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
    pub(super) matcher: Matcher,
}

impl Silence {
    /// Rebuilds a silence from its changelog document; `None` when its matchers no longer
    /// compile.
    pub(super) fn from_doc(s: SilenceDoc) -> Option<Self> {
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

    pub(super) fn doc(&self) -> SilenceDoc {
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
