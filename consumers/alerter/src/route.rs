//! The routing tree: which receivers an alert goes to, with which dedup, grouping and
//! escalation settings. Alertmanager's rule: children are tried in order, the first match wins
//! unless it says `continue`; a node none of whose children match takes the alert itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use vigil_schemas::{Alert, Severity};

pub use crate::config::parse_severity;
use crate::config::{
    DEFAULT_DEDUP_WINDOW_MS, DEFAULT_GROUP_INTERVAL_MS, EscalationTier, MatchConfig, RouteConfig,
};

/// A matcher compiled from [`MatchConfig`]; also the matcher of a silence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    severity: Vec<Severity>,
    rule_id: Vec<String>,
    labels: BTreeMap<String, String>,
}

impl Matcher {
    /// Compiles a matcher; an unknown severity name is an error naming it.
    pub fn compile(m: &MatchConfig) -> Result<Self, String> {
        let severity = m
            .severity
            .iter()
            .map(|s| parse_severity(s).ok_or_else(|| format!("unknown severity {s:?}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            severity,
            rule_id: m.rule_id.clone(),
            labels: m.labels.clone(),
        })
    }

    /// Returns true when the matcher has no condition at all.
    pub fn is_empty(&self) -> bool {
        self.severity.is_empty() && self.rule_id.is_empty() && self.labels.is_empty()
    }

    /// Returns true when `alert` satisfies every condition.
    pub fn matches(&self, alert: &Alert) -> bool {
        (self.severity.is_empty() || self.severity.contains(&alert.severity_id))
            && (self.rule_id.is_empty() || self.rule_id.contains(&alert.rule_id))
            && self
                .labels
                .iter()
                .all(|(k, v)| alert.labels.get(k).is_some_and(|x| x == v))
    }
}

/// Settings of a route once inheritance is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// Stable id of the node (`route`, `route.routes[0]`, …), used to key dedup marks.
    pub id: String,
    /// Receivers notified first.
    pub receivers: Vec<String>,
    /// Group key fields; empty: no grouping.
    pub group_by: Vec<String>,
    /// Group interval.
    pub group_interval_ms: u64,
    /// Dedup window per fingerprint.
    pub dedup_window_ms: u64,
    /// Escalation tiers, by increasing delay.
    pub escalation: Vec<EscalationTier>,
}

#[derive(Debug)]
struct Node {
    matcher: Matcher,
    continue_matching: bool,
    settings: Arc<RouteSettings>,
    children: Vec<Node>,
}

/// The compiled routing tree.
#[derive(Debug)]
pub struct RouteTree {
    root: Node,
}

impl RouteTree {
    /// Compiles the tree; errors name the node.
    pub fn compile(root: &RouteConfig) -> Result<Self, String> {
        let base = RouteSettings {
            id: String::new(),
            receivers: Vec::new(),
            group_by: Vec::new(),
            group_interval_ms: DEFAULT_GROUP_INTERVAL_MS,
            dedup_window_ms: DEFAULT_DEDUP_WINDOW_MS,
            escalation: Vec::new(),
        };
        Ok(Self {
            root: compile_node(root, "route", &base)?,
        })
    }

    /// Returns the routes `alert` ends up at (several when `continue` is used).
    pub fn resolve(&self, alert: &Alert) -> Vec<Arc<RouteSettings>> {
        let mut out = Vec::new();
        resolve_node(&self.root, alert, &mut out);
        out
    }
}

fn compile_node(c: &RouteConfig, id: &str, parent: &RouteSettings) -> Result<Node, String> {
    let matcher = Matcher::compile(&c.matcher).map_err(|e| format!("{id}.match: {e}"))?;
    let mut escalation = match &c.escalation {
        Some(e) => e.tiers.clone(),
        None => parent.escalation.clone(),
    };
    escalation.sort_by_key(|t| t.after_ms);
    let settings = RouteSettings {
        id: id.to_owned(),
        receivers: if c.receivers.is_empty() {
            parent.receivers.clone()
        } else {
            c.receivers.clone()
        },
        group_by: c
            .group_by
            .clone()
            .unwrap_or_else(|| parent.group_by.clone()),
        group_interval_ms: c.group_interval_ms.unwrap_or(parent.group_interval_ms),
        dedup_window_ms: c.dedup_window_ms.unwrap_or(parent.dedup_window_ms),
        escalation,
    };
    let children = c
        .routes
        .iter()
        .enumerate()
        .map(|(i, child)| compile_node(child, &format!("{id}.routes[{i}]"), &settings))
        .collect::<Result<_, _>>()?;
    Ok(Node {
        matcher,
        continue_matching: c.continue_matching,
        settings: Arc::new(settings),
        children,
    })
}

fn resolve_node(node: &Node, alert: &Alert, out: &mut Vec<Arc<RouteSettings>>) {
    let mut matched_child = false;
    for child in &node.children {
        if child.matcher.matches(alert) {
            matched_child = true;
            resolve_node(child, alert, out);
            if !child.continue_matching {
                break;
            }
        }
    }
    if !matched_child && !node.settings.receivers.is_empty() {
        out.push(node.settings.clone());
    }
}

/// Returns the group key of `alert` under `group_by`: `rule_id`, `severity` or a label each.
pub fn group_key(alert: &Alert, group_by: &[String]) -> String {
    let mut key = String::new();
    for field in group_by {
        let value = match field.as_str() {
            "rule_id" => alert.rule_id.as_str(),
            "severity" => alert.severity_id.as_str(),
            label => alert.labels.get(label).map_or("", String::as_str),
        };
        key.push_str(field);
        key.push('=');
        key.push_str(value);
        key.push('\u{1f}');
    }
    key
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use uuid::Uuid;

    pub(crate) fn alert(rule: &str, sev: Severity, labels: &[(&str, &str)]) -> Alert {
        Alert {
            alert_id: Uuid::new_v4(),
            fingerprint: format!("fp-{rule}"),
            severity_id: sev,
            rule_id: rule.into(),
            rule_title: format!("title of {rule}"),
            group_key: BTreeMap::new(),
            window_start: 1,
            window_end: 2,
            count: 3,
            evidence_event_ids: vec!["e1".into()],
            trace_ids: vec![],
            first_seen: 1,
            last_seen: 2,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            description: "why".into(),
        }
    }

    fn tree(yaml: &str) -> RouteTree {
        let c: RouteConfig = serde_yaml::from_str(yaml).unwrap();
        RouteTree::compile(&c).unwrap()
    }

    fn ids(t: &RouteTree, a: &Alert) -> Vec<(String, Vec<String>)> {
        t.resolve(a)
            .iter()
            .map(|r| (r.id.clone(), r.receivers.clone()))
            .collect()
    }

    #[test]
    fn first_match_wins_continue_fans_out_and_root_catches_the_rest() {
        let t = tree(
            "receivers: [default]\nroutes:\n  - match: {severity: [critical]}\n    receivers: [pd]\n    continue: true\n  - match: {labels: {team: sec}}\n    receivers: [slack]\n  - match: {rule_id: [r9]}\n    receivers: [never]\n",
        );
        let crit_sec = alert("r1", Severity::Critical, &[("team", "sec")]);
        assert_eq!(
            ids(&t, &crit_sec),
            vec![
                ("route.routes[0]".into(), vec!["pd".into()]),
                ("route.routes[1]".into(), vec!["slack".into()])
            ]
        );
        let low_sec = alert("r9", Severity::Low, &[("team", "sec")]);
        assert_eq!(
            ids(&t, &low_sec),
            vec![("route.routes[1]".into(), vec!["slack".into()])]
        );
        let other = alert("r2", Severity::High, &[]);
        assert_eq!(
            ids(&t, &other),
            vec![("route".into(), vec!["default".into()])]
        );
    }

    #[test]
    fn children_inherit_unset_settings() {
        let t = tree(
            "receivers: [a]\ndedup_window_ms: 1000\ngroup_by: [rule_id]\nescalation: {tiers: [{receivers: [b], after_ms: 50}]}\nroutes:\n  - match: {severity: [high]}\n    dedup_window_ms: 7\n",
        );
        let r = t.resolve(&alert("r", Severity::High, &[]));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].receivers, vec!["a".to_owned()]);
        assert_eq!(r[0].dedup_window_ms, 7);
        assert_eq!(r[0].group_by, vec!["rule_id".to_owned()]);
        assert_eq!(r[0].escalation[0].after_ms, 50);
    }

    #[test]
    fn group_key_uses_rule_severity_and_labels() {
        let a = alert("r", Severity::High, &[("host", "h1")]);
        let k = group_key(&a, &["rule_id".into(), "host".into(), "missing".into()]);
        assert_eq!(k, "rule_id=r\u{1f}host=h1\u{1f}missing=\u{1f}");
        assert_eq!(group_key(&a, &[]), "");
    }
}
