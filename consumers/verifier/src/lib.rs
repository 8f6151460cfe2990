//! Vigil verifier: checks event signatures against the key registry.
