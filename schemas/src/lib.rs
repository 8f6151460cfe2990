//! Vigil event contract: Avro schemas, typed model, Confluent wire codec, Ed25519 signing.
