//! The run's summary: one JSON value built from what the readers, the receiver and ClickHouse
//! returned, and its human rendering.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::observe::{lock, undelivered};
use super::{
    BRUTE_FORCE_EVENTS, Demo, EXPECTED_RULES, POISON_RECORDS, REVOKED_EVENTS, UNKNOWN_KEY_EVENTS,
};

impl Demo {
    /// The summary, built from what the readers, the receiver and ClickHouse returned.
    pub(super) fn summary(&self) -> Value {
        let s = lock(&self.seen);
        let mut platforms = serde_json::Map::new();
        let mut names: BTreeSet<String> = self.sent_by_platform.keys().cloned().collect();
        names.extend(s.verdicts.iter().map(|v| v.platform.clone()));
        for p in names {
            let states = count_by(
                s.verdicts
                    .iter()
                    .filter(|v| v.platform == p)
                    .map(|v| v.state.as_str()),
            );
            let get = |k: &str| states.get(k).copied().unwrap_or(0);
            platforms.insert(
                p.clone(),
                json!({
                    "sent": self.sent_by_platform.get(&p).copied().unwrap_or(0),
                    "verified": states.values().sum::<u64>(),
                    "valid": get("valid"),
                    "bad": get("bad"),
                    "revoked": get("revoked"),
                    "untrusted": get("untrusted"),
                }),
            );
        }
        let mut rules: BTreeMap<&str, (String, String, u64, BTreeSet<&str>)> = BTreeMap::new();
        for a in &s.alerts {
            let e = rules
                .entry(a.rule_id.as_str())
                .or_insert_with(|| (a.title.clone(), a.severity.clone(), 0, BTreeSet::new()));
            e.2 += 1;
            e.3.insert(a.fingerprint.as_str());
        }
        let deliveries_by_rule = count_by(s.deliveries.iter().map(|d| d.rule_id.as_str()));
        let alerts: Vec<Value> = rules
            .iter()
            .map(|(id, (title, severity, fired, fps))| {
                json!({
                    "rule_id": id,
                    "title": title,
                    "severity": severity,
                    "fired": fired,
                    "distinct": fps.len(),
                    "webhook_deliveries": deliveries_by_rule.get(*id).copied().unwrap_or(0),
                })
            })
            .collect();
        let max_count = s.alerts.iter().map(|a| a.count).max().unwrap_or(0);
        let expected: serde_json::Map<String, Value> = EXPECTED_RULES
            .iter()
            .map(|(attack, rule)| {
                (
                    (*attack).to_owned(),
                    json!({"rule_id": rule, "fired": rules.contains_key(rule)}),
                )
            })
            .collect();
        let failed: Vec<Value> = self
            .stages
            .iter()
            .filter(|st| !st.ok)
            .map(|st| json!({"stage": st.stage, "detail": st.detail}))
            .collect();
        json!({
            "ok": failed.is_empty(),
            "failed_stages": failed,
            "namespace": {
                "run_id": self.ns.id(),
                "topics": self.topics,
                "consumer_group_prefix": self.ns.name(),
                "clickhouse_database": self.ns.database(),
            },
            "duration_ms": self.started.elapsed().as_millis() as u64,
            "stages": self.stages.iter().map(|st| json!({"stage": st.stage, "ok": st.ok, "ms": st.ms as u64, "detail": st.detail})).collect::<Vec<_>>(),
            "events": {
                "sent": self.sent.load(Ordering::Relaxed),
                "verified": s.verdicts.len(),
                "by_state": count_by(s.verdicts.iter().map(|v| v.state.as_str())),
                "by_reason": count_by(s.verdicts.iter().filter(|v| !v.reason.is_empty()).map(|v| v.reason.as_str())),
                "per_platform": platforms,
            },
            "attacks": {
                "brute_force_events": BRUTE_FORCE_EVENTS,
                "replayed_records": 1,
                "revoked_key_events": REVOKED_EVENTS,
                "unknown_key_events": UNKNOWN_KEY_EVENTS,
                "poison_records": POISON_RECORDS,
            },
            "alerts": {
                "fired": s.alerts.len(),
                "largest_count": max_count,
                "by_rule": alerts,
                "expected": expected,
            },
            "webhook": {
                "deliveries": s.deliveries.len(),
                "hmac_valid": s.deliveries.iter().filter(|d| d.signature_ok).count(),
                "distinct_alerts": s.alerts.iter().map(|a| a.fingerprint.as_str()).collect::<BTreeSet<_>>().len(),
                "undelivered_alerts": undelivered(&s).len(),
            },
            "dlq": {
                "entries": s.dlq.len(),
                "by_class": count_by(s.dlq.iter().map(|(c, _)| c.as_str())),
                "errors": s.dlq.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>(),
            },
            "audit": {
                "rows": self.audit_rows,
                "verify": self.verify.clone().unwrap_or(Value::Null),
            },
            "soc_queries": self.soc,
            "trace": {
                "trace_id": self.trace_id,
                "sdks": {"python": self.sdk.python_sdk, "js": self.sdk.js_sdk},
                "timeline": self.timeline.as_ref().map_or(Value::Null, |t| t["rows"].clone()),
            },
        })
    }
}

pub(super) fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.to_owned()).or_default() += 1;
    }
    m
}

/// Prints the human summary on stdout.
pub(super) fn print_human(s: &Value) {
    let ok = s["ok"].as_bool().unwrap_or(false);
    println!();
    println!(
        "Vigil demo {} in {:.1}s — namespace {}",
        if ok { "passed" } else { "FAILED" },
        s["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        s["namespace"]["consumer_group_prefix"]
            .as_str()
            .unwrap_or("")
    );
    println!();
    println!("Events per platform (sent / as judged by the verifier)");
    println!(
        "  {:<8} {:>6} {:>9} {:>6} {:>5} {:>8} {:>10}",
        "platform", "sent", "verified", "valid", "bad", "revoked", "untrusted"
    );
    if let Some(m) = s["events"]["per_platform"].as_object() {
        for (p, v) in m {
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            println!(
                "  {:<8} {:>6} {:>9} {:>6} {:>5} {:>8} {:>10}",
                p,
                n("sent"),
                n("verified"),
                n("valid"),
                n("bad"),
                n("revoked"),
                n("untrusted")
            );
        }
    }
    println!("  reasons: {}", s["events"]["by_reason"]);
    println!();
    println!("Alerts fired ({} records)", s["alerts"]["fired"]);
    if let Some(rows) = s["alerts"]["by_rule"].as_array() {
        for a in rows {
            println!(
                "  {:<38} {:<9} fired {:>3}, distinct {:>2}, webhook {:>2}  {}",
                a["rule_id"].as_str().unwrap_or(""),
                a["severity"].as_str().unwrap_or(""),
                a["fired"],
                a["distinct"],
                a["webhook_deliveries"],
                a["title"].as_str().unwrap_or("")
            );
        }
    }
    println!();
    println!(
        "Webhook deliveries: {} ({} with a valid HMAC) for {} distinct alerts",
        s["webhook"]["deliveries"], s["webhook"]["hmac_valid"], s["webhook"]["distinct_alerts"]
    );
    println!(
        "DLQ entries: {} {}",
        s["dlq"]["entries"], s["dlq"]["by_class"]
    );
    println!("Audit rows in ClickHouse: {}", s["audit"]["rows"]);
    let v = &s["audit"]["verify"];
    if v.is_null() {
        println!("vigil audit verify: not run");
    } else {
        println!(
            "vigil audit verify: {} ({} rows, {} digests, {} signatures re-verified, {} findings)",
            if v["clean"].as_bool() == Some(true) {
                "clean"
            } else {
                "NOT clean"
            },
            v["rows"],
            v["digests"],
            v["signatures_valid"],
            v["findings"]
        );
    }
    if let Some(m) = s["soc_queries"].as_object() {
        for (name, q) in m {
            println!();
            println!("SOC query {name}: {}", q["question"].as_str().unwrap_or(""));
            for r in q["rows"].as_array().into_iter().flatten() {
                println!("  {r}");
            }
        }
    }
    println!();
    println!(
        "SOC query trace_timeline for the cross-platform trace {}:",
        s["trace"]["trace_id"].as_str().unwrap_or("(none)")
    );
    for r in s["trace"]["timeline"].as_array().into_iter().flatten() {
        println!(
            "  {:<7} {:<14} {:<8} {:<8} {}",
            r["platform"].as_str().unwrap_or(""),
            r["service"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or(""),
            r["occurred_at"].as_str().unwrap_or("")
        );
    }
    println!();
    for st in s["stages"].as_array().into_iter().flatten() {
        println!(
            "  [{}] {:<20} {:>6} ms  {}",
            if st["ok"].as_bool() == Some(true) {
                "ok"
            } else {
                "!!"
            },
            st["stage"].as_str().unwrap_or(""),
            st["ms"],
            st["detail"].as_str().unwrap_or("")
        );
    }
    println!();
    println!(
        "Services ran inside this command for the demo; `vigil run <service>` runs each for real."
    );
}
