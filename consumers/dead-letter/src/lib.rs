//! Vigil dead-letter tooling: stats, inspection and approved replay.
