//! Bounded replay memory: (key id, nonce) pairs seen inside the clock-skew window.
//!
//! An entry is needed only while a replay of its event could still pass the skew check, i.e.
//! until `occurred_at + window` (the signature covers `occurred_at`, so a replay carries the same
//! one). Entries are dropped once past that instant; when the cache is full the oldest entry is
//! evicted anyway and counted, because an evicted nonce could be replayed undetected.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

/// Where a record was read from; a second call for the same record (a retry after a transient
/// failure, not a replay) must not count as a replay.
pub type Origin = u64;

/// What [`NonceCache::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// First sighting (or the same record again); now remembered.
    Fresh,
    /// Seen before, from another record, inside the window.
    Replayed,
}

/// The replay memory. Keys are 128-bit keyed hashes of (key id, nonce), so an attacker cannot
/// aim collisions and each entry costs a few dozen bytes whatever the nonce length.
#[derive(Debug)]
pub struct NonceCache {
    max_entries: usize,
    window_us: i64,
    seen: HashMap<u128, (i64, Origin)>,
    order: VecDeque<(i64, u128)>,
    hashers: (RandomState, RandomState),
    evictions: u64,
}

impl NonceCache {
    /// Returns an empty cache bounded to `max_entries`, remembering nonces for `window_us`.
    pub fn new(max_entries: usize, window_us: i64) -> Self {
        Self {
            max_entries: max_entries.max(1),
            window_us,
            seen: HashMap::new(),
            order: VecDeque::new(),
            hashers: (RandomState::new(), RandomState::new()),
            evictions: 0,
        }
    }

    fn fingerprint(&self, key_id: &str, nonce: &str) -> u128 {
        let a = self.hashers.0.hash_one((key_id, nonce));
        let b = self.hashers.1.hash_one((key_id, nonce));
        (u128::from(a) << 64) | u128::from(b)
    }

    /// Checks and remembers (key id, nonce) of an event that occurred at `occurred_at`, at `now`.
    pub fn check(
        &mut self,
        key_id: &str,
        nonce: &str,
        occurred_at: i64,
        now: i64,
        origin: Origin,
    ) -> NonceCheck {
        self.expire(now);
        let fp = self.fingerprint(key_id, nonce);
        if let Some((expires, first_origin)) = self.seen.get(&fp)
            && *expires >= now
        {
            return if *first_origin == origin {
                NonceCheck::Fresh
            } else {
                NonceCheck::Replayed
            };
        }
        let expires = occurred_at.saturating_add(self.window_us);
        self.seen.insert(fp, (expires, origin));
        self.order.push_back((expires, fp));
        while self.seen.len() > self.max_entries {
            let Some((_, old)) = self.order.pop_front() else {
                break;
            };
            if self.seen.remove(&old).is_some() {
                self.evictions += 1;
            }
        }
        NonceCheck::Fresh
    }

    /// Drops entries past their instant, in insertion order (events arrive roughly in time
    /// order; a late straggler only delays dropping, the size bound still holds).
    fn expire(&mut self, now: i64) {
        while let Some((expires, fp)) = self.order.front().copied() {
            if expires >= now {
                break;
            }
            self.order.pop_front();
            if let Some((e, _)) = self.seen.get(&fp)
                && *e == expires
            {
                self.seen.remove(&fp);
            }
        }
    }

    /// Returns the number of remembered nonces.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Returns true when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Returns how many unexpired entries were evicted because the cache was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sighting_from_another_record_is_a_replay() {
        let mut c = NonceCache::new(10, 1_000);
        assert_eq!(c.check("k", "n1", 100, 100, 1), NonceCheck::Fresh);
        assert_eq!(
            c.check("k", "n1", 100, 200, 1),
            NonceCheck::Fresh,
            "same record again"
        );
        assert_eq!(c.check("k", "n1", 100, 200, 2), NonceCheck::Replayed);
        assert_eq!(
            c.check("other", "n1", 100, 200, 3),
            NonceCheck::Fresh,
            "per key"
        );
    }

    #[test]
    fn entries_expire_after_the_window_and_the_bound_evicts_oldest() {
        let mut c = NonceCache::new(3, 1_000);
        c.check("k", "a", 0, 0, 1);
        assert_eq!(c.check("k", "a", 0, 1_001, 2), NonceCheck::Fresh, "expired");
        let mut c = NonceCache::new(3, 1_000_000);
        for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
            c.check("k", n, 0, 0, i as u64);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.evictions(), 1);
        assert_eq!(
            c.check("k", "a", 0, 0, 99),
            NonceCheck::Fresh,
            "a was evicted"
        );
        assert_eq!(c.check("k", "d", 0, 0, 99), NonceCheck::Replayed);
    }
}
