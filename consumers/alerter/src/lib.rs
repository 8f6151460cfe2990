//! Vigil alerter: deduplicates, routes and escalates alerts.
