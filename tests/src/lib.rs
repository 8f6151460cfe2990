//! End-to-end suites of Vigil against the real local stack; they live in `tests/` of this crate.
//! The helpers they share are in `vigil-test-support` (`tests/support/`).
