//! What ClickHouse holds: audit rows settling, `vigil audit verify` over the run's database,
//! two saved SOC queries and the cross-platform trace's timeline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use vigil_audit_sink::AuditStore;
use vigil_audit_sink::queries::SocQuery;
use vigil_audit_sink::verify::{KeyHistory, VerifyOptions, verify_store};
use vigil_schemas::EventSigner;
use vigil_schemas::model::now_micros;
use vigil_schemas::signing::PublicKey;

use super::observe::lock;
use super::{BRUTE_FORCE_EVENTS, Demo, PLATFORMS, REVOKED_EVENTS, SOC_QUERIES};

impl Demo {
    fn store(&self) -> anyhow::Result<AuditStore> {
        Ok(AuditStore::connect(
            &self.endpoints.clickhouse_url,
            &self.ns.database(),
        )?)
    }

    /// Waits until ClickHouse holds one audit row per verdict.
    pub(super) async fn audit_rows_settle(&mut self) {
        let t0 = Instant::now();
        let verdicts = lock(&self.seen).verdicts.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(25);
        let mut rows = None;
        let mut last = Instant::now();
        let mut error = None;
        while Instant::now() < deadline {
            match self.count_rows().await {
                Ok(n) => {
                    rows = Some(n);
                    error = None;
                    if n >= verdicts {
                        break;
                    }
                }
                Err(e) => error = Some(format!("{e:#}")),
            }
            if last.elapsed() >= Duration::from_secs(2) {
                self.progress(&format!("audit rows {} of {verdicts}", rows.unwrap_or(0)));
                last = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.audit_rows = rows;
        let ok = rows == Some(verdicts);
        let mut detail = format!(
            "{} rows in {}.audit_events for {verdicts} verdicts",
            rows.unwrap_or(0),
            self.ns.database()
        );
        if let Some(e) = error {
            detail.push_str(&format!(" (last error: {e})"));
        }
        self.record("audit_rows", ok, detail, t0);
    }

    async fn count_rows(&self) -> anyhow::Result<u64> {
        let store = self.store()?;
        let rows = query_json::<u32>(&store, "SELECT count() AS n FROM audit_events", None).await?;
        rows.first()
            .and_then(|r| as_u64(&r["n"]))
            .ok_or_else(|| anyhow!("count() returned nothing"))
    }

    /// `vigil audit verify` over the run's database: chains, signed digests, event signatures.
    pub(super) async fn audit_verify(&mut self) {
        let t0 = Instant::now();
        let result = async {
            let store = self.store()?;
            // No producer key is given: every valid event is re-verified against the key the
            // trail's own administrator-signed key operations registered.
            let sink_key: PublicKey = *EventSigner::from_seed(&self.sink_seed).public_key();
            let opts = VerifyOptions {
                sink_key,
                producer_keys: BTreeMap::new(),
                history: Some(KeyHistory::new(&self.anchors())),
                anchored: false,
                max_digest_lag_micros: 300_000_000,
                now_micros: now_micros(),
            };
            let report = tokio::time::timeout(
                Duration::from_secs(20),
                verify_store(&store, &self.ns.verified_topic(), opts, None, None, None),
            )
            .await
            .map_err(|_| anyhow!("no answer within 20s"))??;
            anyhow::Ok(report)
        }
        .await;
        match result {
            Ok(report) => {
                let rows: u64 = report.partitions.values().map(|p| p.rows).sum();
                let clean = report.is_clean();
                self.verify = Some(json!({
                    "clean": clean,
                    "rows": rows,
                    "partitions": report.partitions.len(),
                    "digests": report.digests,
                    "signatures_valid": report.signatures_valid,
                    "signatures_unchecked": report.signatures_unchecked,
                    "signatures_skipped": report.signatures_skipped,
                    "findings": report.total_findings,
                    "report": report.to_string(),
                }));
                let detail = format!(
                    "{} ({rows} rows, {} digests, {} signatures re-verified, {} rejected rows skipped, {} findings)",
                    if clean { "clean" } else { "BROKEN" },
                    report.digests,
                    report.signatures_valid,
                    report.signatures_skipped,
                    report.total_findings
                );
                self.record("audit_verify", clean && report.digests > 0, detail, t0);
            }
            Err(e) => {
                self.verify = Some(json!({"clean": false, "error": format!("{e:#}")}));
                self.record("audit_verify", false, format!("{e:#}"), t0);
            }
        }
    }

    /// Runs two saved SOC queries from the audit sink's pack against the run's database.
    pub(super) async fn soc_queries(&mut self) {
        let t0 = Instant::now();
        let mut errors = Vec::new();
        for name in SOC_QUERIES {
            let Some(q) = SocQuery::named(name) else {
                errors.push(format!("{name}: not in the pack"));
                continue;
            };
            let param = if q.sql.contains("{limit:UInt32}") {
                Some(("limit", 5))
            } else if q.sql.contains("{days:UInt32}") {
                Some(("days", 1))
            } else {
                None
            };
            let answer = match self.store() {
                Ok(store) => query_json(&store, &q.statement(), param).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(rows) => {
                    self.soc
                        .insert(name, json!({"question": q.question(), "rows": rows}));
                }
                Err(e) => errors.push(format!("{name}: {e:#}")),
            }
        }
        let by_key = self
            .soc
            .get("failed_verifications_by_key_24h")
            .map(|v| v["rows"].clone())
            .unwrap_or_default();
        let row = |key: &str| {
            by_key
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["key_id"].as_str() == Some(key)))
                .cloned()
        };
        let python_bad = row("demo-python")
            .and_then(|r| as_u64(&r["bad"]))
            .unwrap_or(0);
        let js_revoked = row("demo-js")
            .and_then(|r| as_u64(&r["revoked"]))
            .unwrap_or(0);
        let (hops, timeline_ok) = match self.trace_timeline().await {
            Ok(rows) => {
                let platforms: Vec<String> = rows
                    .iter()
                    .map(|r| r["platform"].as_str().unwrap_or("?").to_owned())
                    .collect();
                let ok = platforms == ["python", "js", "rust"]
                    && rows.iter().all(|r| r["state"] == "valid");
                self.timeline = Some(json!({"trace_id": self.trace_id, "rows": rows}));
                (platforms.join(" → "), ok)
            }
            Err(e) => {
                errors.push(format!("trace_timeline: {e:#}"));
                (String::new(), false)
            }
        };
        // Who changed which key: every platform key registered, planned by one administrator
        // and approved by the other, and the js key revoked.
        let ops = self
            .soc
            .get("key_operations")
            .and_then(|v| v["rows"].as_array().cloned())
            .unwrap_or_default();
        let approved = ops
            .iter()
            .filter(|r| {
                r["activity"] == "key_registered"
                    && r["state"] == "valid"
                    && r["approved_by"] != r["planned_by"]
                    && r["approved_by"].as_str().is_some_and(|a| !a.is_empty())
            })
            .count();
        let revocations = ops
            .iter()
            .filter(|r| r["activity"] == "key_revoked")
            .count();
        let ok = errors.is_empty()
            && python_bad == BRUTE_FORCE_EVENTS
            && js_revoked == REVOKED_EVENTS
            && timeline_ok
            && approved == PLATFORMS.len()
            && revocations == 1;
        let mut detail = format!(
            "failed verifications by key: demo-python bad {python_bad}, demo-js revoked \
             {js_revoked}; trace timeline: {hops}; key operations: {approved} registrations \
             approved by a second administrator, {revocations} revocation"
        );
        if !errors.is_empty() {
            detail.push_str(&format!("; errors: {}", errors.join("; ")));
        }
        self.record("soc_queries", ok, detail, t0);
    }
}

impl Demo {
    /// The `trace_timeline` SOC query for the cross-platform trace.
    async fn trace_timeline(&self) -> anyhow::Result<Vec<Value>> {
        let trace_id = self
            .trace_id
            .as_deref()
            .ok_or_else(|| anyhow!("no cross-platform trace was sent"))?;
        let q = SocQuery::named("trace_timeline")
            .ok_or_else(|| anyhow!("trace_timeline is not in the pack"))?;
        let store = self.store()?;
        query_json(&store, &q.statement(), Some(("trace_id", trace_id))).await
    }
}

pub(super) fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Runs `sql` with its one parameter, if any, and returns its rows as JSON objects.
async fn query_json<P: serde::Serialize>(
    store: &AuditStore,
    sql: &str,
    param: Option<(&str, P)>,
) -> anyhow::Result<Vec<Value>> {
    let mut q = store.client().query_raw(sql);
    if let Some((name, value)) = param {
        q = q.param(name, value);
    }
    let fetch = async {
        let bytes = q.fetch_bytes("JSONEachRow")?.collect().await?;
        anyhow::Ok(bytes)
    };
    let bytes = tokio::time::timeout(Duration::from_secs(15), fetch)
        .await
        .map_err(|_| anyhow!("ClickHouse did not answer within 15s"))??;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("ClickHouse row {l:?}")))
        .collect()
}
