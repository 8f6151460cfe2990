//! Vigil correlator: Sigma detection and correlation rules over verified events.
