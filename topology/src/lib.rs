//! Vigil topic topology, Kafka client configuration and shared telemetry.
