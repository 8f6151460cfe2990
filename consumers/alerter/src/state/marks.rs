//! Dedup and group marks: which alert was notified under a key, until when.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::book::{AlertBook, Inner};
use super::clock::{instant_of, now_ms, wall_of};
use super::document::{MarkDoc, StateKey, VERSION, encode};
use super::entries::Mark;
use super::writer::Pending;

/// Inserts or replaces a mark read from the changelog (restore and remote writes).
pub(super) fn put_mark(
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
    pub(super) fn trim_marks(&self, g: &mut Inner, now: Instant, mut p: Option<&mut Pending>) {
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
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::fixtures::{book, p};

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
}
