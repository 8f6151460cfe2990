//! End-to-end suites of Vigil against the real local stack (`tests/*.rs` of this crate), and the
//! whole-pipeline benches (`examples/*.rs`, run by `scripts/bench-*`). The helpers they share
//! are in `vigil-test-support` (`tests/support/`); the pipeline they start is `vigil-pipeline`.
