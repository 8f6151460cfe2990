//! Vigil producer SDK: non-blocking signed event emission with a crash-safe spool.

pub mod spool;
