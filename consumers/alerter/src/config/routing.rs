//! The routing tree's configuration: nodes with their matchers, receivers, dedup, grouping and
//! escalation settings, as written in the file. Compiled by the `route` module, which depends on
//! this module and never the reverse.

use std::collections::BTreeMap;

use serde::Deserialize;
use vigil_schemas::Severity;

/// Dedup window of the root when the file sets none.
pub const DEFAULT_DEDUP_WINDOW_MS: u64 = 300_000;
/// Group interval of the root when the file sets none.
pub const DEFAULT_GROUP_INTERVAL_MS: u64 = 300_000;

/// Parses a severity name as written in config (`critical`, `high`, …, `info` too).
pub fn parse_severity(s: &str) -> Option<Severity> {
    Some(match s.to_ascii_lowercase().as_str() {
        "unknown" => Severity::Unknown,
        "informational" | "info" => Severity::Informational,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => return None,
    })
}

/// What an alert must have for a route to take it; empty lists match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Severities (`critical`, `high`, …); any of them.
    #[serde(default)]
    pub severity: Vec<String>,
    /// Rule ids; any of them.
    #[serde(default)]
    pub rule_id: Vec<String>,
    /// Labels that must all be present with exactly these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A node of the routing tree. Unset settings are inherited from the parent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Conditions of this node (ignored at the root).
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// Receivers notified when this node is where the alert ends up.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// After matching this node, keep trying its later siblings.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Child routes, tried in order; the first match wins unless it says `continue`.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Labels (or `rule_id`, `severity`) that form the group key; empty: no grouping.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// How long a notified group absorbs further alerts of the group without a new notification.
    #[serde(default)]
    pub group_interval_ms: Option<u64>,
    /// How long a notified fingerprint is suppressed.
    #[serde(default)]
    pub dedup_window_ms: Option<u64>,
    /// Escalation policy: tiers notified when the alert is not acknowledged in time.
    #[serde(default)]
    pub escalation: Option<EscalationConfig>,
}

/// An escalation policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Tiers, by increasing delay.
    pub tiers: Vec<EscalationTier>,
}

/// One escalation tier.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationTier {
    /// Receivers notified at this tier.
    pub receivers: Vec<String>,
    /// Delay after the first notification.
    pub after_ms: u64,
}
