//! Shared helpers for the end-to-end tests: service addresses from `VIGIL_*` variables, fresh topic names.
