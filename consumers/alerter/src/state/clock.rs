//! Wall-clock and monotonic time: the changelog stores wall-clock ms since the epoch, memory
//! keeps `Instant`s derived from them.

use std::time::{Duration, Instant};

use vigil_schemas::model::now_micros;

pub(super) fn now_ms() -> i64 {
    now_micros() / 1_000
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Returns the wall-clock time (ms) of `at`, given one `(Instant, wall ms)` pair.
pub(super) fn wall_of(at: Instant, now: Instant, now_ms: i64) -> i64 {
    if at >= now {
        now_ms.saturating_add(millis(at - now))
    } else {
        now_ms.saturating_sub(millis(now - at))
    }
}

/// Returns the `Instant` of wall-clock `at_ms`, given one `(Instant, wall ms)` pair.
pub(super) fn instant_of(at_ms: i64, now: Instant, now_ms: i64) -> Instant {
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

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
