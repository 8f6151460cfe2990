//! Vigil audit sink: exactly-once, hash-chained audit trail in ClickHouse.
