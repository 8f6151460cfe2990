//! The book itself: its tables behind one lock, its bounds and metrics, and where its writes go.
//! What it does with them is in the sibling modules, one `impl AlertBook` per table.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::document::{StateKey, encode};
use super::entries::{ActiveAlert, Mark, Rearm, Silence};
use super::writer::{Changelog, Pending};
use crate::config::StateConfig;
use crate::internal_events::AlerterMetrics;

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) marks: HashMap<String, Mark>,
    pub(super) mark_order: VecDeque<(Instant, String)>,
    pub(super) active: HashMap<Uuid, ActiveAlert>,
    pub(super) active_order: VecDeque<Uuid>,
    pub(super) silences: BTreeMap<Uuid, Silence>,
    /// Partitions of the alerts topic assigned to this instance: escalation timers of alerts
    /// whose record is in one of them run here.
    pub(super) owned: HashSet<(String, i32)>,
}

/// The alerter's memory, written through to the state changelog.
pub struct AlertBook {
    pub(super) inner: Mutex<Inner>,
    pub(super) limits: StateConfig,
    pub(super) metrics: AlerterMetrics,
    pub(super) log: Option<Changelog>,
    /// Where escalations taken over from a followed write go to get their timer started.
    pub(super) armer: OnceLock<mpsc::UnboundedSender<Rearm>>,
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

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind, still usable.
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Enqueues one changelog write; called with the lock held so the topic sees mutations in
    /// the order they happened. Counted in `vigil_alerter_state_writes_total` even by a book
    /// without a changelog (unit tests, benches), so what would be written stays observable.
    pub(super) fn write(&self, p: &mut Pending, key: StateKey, value: Option<Vec<u8>>) {
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
    pub(super) fn write_opt(&self, p: Option<&mut Pending>, key: StateKey, value: Option<Vec<u8>>) {
        if let Some(p) = p {
            self.write(p, key, value);
        }
    }

    pub(super) fn write_alert(&self, p: &mut Pending, a: &ActiveAlert) {
        self.write(p, StateKey::Alert(a.alert.alert_id), Some(encode(&a.doc())));
    }
}
