//! Vigil consumer runtime: ack-driven offsets, error classes, DLQ routing, retries.
