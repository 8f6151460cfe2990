//! Pure unit tests: rule errors and every correlation type, absence included.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use crate::engine::{Correlator, EngineSettings};
use crate::rules::RulePack;

const DET: &str = "title: Bad\nid: d-bad\nname: bad\nlogsource: {product: vigil}\ndetection:\n  sel:\n    state: bad\n  condition: sel\n---\ntitle: Ok\nid: d-ok\nname: ok\nlogsource: {product: vigil}\ndetection:\n  sel:\n    state: valid\n  condition: sel\n";

fn engine(corr: &str) -> Correlator {
    let pack = RulePack::from_sources(&[(PathBuf::from("r.yml"), format!("{DET}---\n{corr}"))])
        .unwrap_or_else(|e| panic!("pack: {e}"));
    Correlator::new(Arc::new(pack), EngineSettings::default())
        .unwrap_or_else(|e| panic!("engine: {e}"))
}

fn feed(c: &mut Correlator, events: &[(i64, serde_json::Value)]) -> Vec<String> {
    let mut fired = Vec::new();
    for (i, (secs, v)) in events.iter().enumerate() {
        let mut v = v.clone();
        v["event_id"] = json!(format!("e{i}"));
        fired.extend(
            c.process_fields(&v, 1_800_000_000_000_000 + secs * 1_000_000)
                .into_iter()
                .map(|a| a.rule_id),
        );
    }
    fired
}

#[test]
fn bad_rule_names_file_line_and_reason() {
    let text = format!(
        "{DET}---\ntitle: x\nid: x\nlogsource: {{product: vigil}}\ndetection:\n  sel:\n    state: bad\n  condition: sel or\n"
    );
    let e = RulePack::from_sources(&[(PathBuf::from("f.yml"), text)])
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.file, PathBuf::from("f.yml"));
    assert_eq!(e.line, 25);
    assert!(e.reason.contains("ondition"), "{}", e.reason);
    let missing = RulePack::from_sources(&[(
        PathBuf::from("g.yml"),
        format!(
            "{DET}---\ntitle: a\nid: a\ncorrelation:\n  type: absence\n  rules: [bad]\n  followed-by: [nope]\n  timespan: 5m\n"
        ),
    )]);
    let e = missing.err().unwrap_or_else(|| panic!("accepted"));
    assert_eq!((e.line, e.reason.contains("nope")), (24, true), "{e}");
    let yaml = RulePack::from_sources(&[(PathBuf::from("h.yml"), "title: [\n".to_owned())]);
    // The flow sequence is unterminated: the parser notices at the end of input, line 2.
    assert_eq!(yaml.err().map(|e| e.line), Some(2));
}

#[test]
fn event_count_fires_once_per_filled_window_per_group() {
    let mut c = engine(
        "title: n\nid: c-n\ncorrelation:\n  type: event_count\n  rules: [bad]\n  group-by: [key_id]\n  timespan: 60s\n  condition: {gte: 3}\n",
    );
    let bad = |k: &str| json!({"state": "bad", "key_id": k});
    let fired = feed(
        &mut c,
        &[
            (0, bad("a")),
            (1, bad("b")),
            (2, bad("a")),
            (3, bad("a")),
            (4, bad("a")),
            (200, bad("b")),
            (201, bad("b")),
        ],
    );
    assert_eq!(fired, vec!["c-n"]);
}

#[test]
fn value_count_counts_distinct_values() {
    let mut c = engine(
        "title: v\nid: c-v\ncorrelation:\n  type: value_count\n  rules: [bad]\n  group-by: [trace_id]\n  timespan: 60s\n  condition: {gte: 2, field: platform}\n",
    );
    let ev = |p: &str| json!({"state": "bad", "trace_id": "t", "platform": p});
    assert!(feed(&mut c, &[(0, ev("rust")), (1, ev("rust"))]).is_empty());
    assert_eq!(feed(&mut c, &[(2, ev("js"))]), vec!["c-v"]);
}

#[test]
fn temporal_and_temporal_ordered() {
    let t = "title: t\nid: c-t\ncorrelation:\n  type: temporal\n  rules: [bad, ok]\n  group-by: [key_id]\n  timespan: 60s\n  condition: {gte: 2}\n";
    let mut c = engine(t);
    let fired = feed(
        &mut c,
        &[
            (0, json!({"state": "valid", "key_id": "k"})),
            (1, json!({"state": "bad", "key_id": "k"})),
        ],
    );
    assert_eq!(fired, vec!["c-t"]);
    let mut o = engine(
        &t.replace("type: temporal", "type: temporal_ordered")
            .replace("c-t", "c-o"),
    );
    let wrong_order = feed(
        &mut o,
        &[
            (0, json!({"state": "valid", "key_id": "k"})),
            (1, json!({"state": "bad", "key_id": "k"})),
        ],
    );
    assert!(wrong_order.is_empty());
    let right = feed(
        &mut o,
        &[
            (2, json!({"state": "bad", "key_id": "j"})),
            (3, json!({"state": "valid", "key_id": "j"})),
        ],
    );
    assert_eq!(right, vec!["c-o"]);
}

#[test]
fn absence_fires_only_without_follow_up_after_lateness() {
    let mut c = engine(
        "title: a\nid: c-a\ncorrelation:\n  type: absence\n  rules: [bad]\n  followed-by: [ok]\n  group-by: [key_id]\n  timespan: 60s\n",
    );
    let fired = feed(
        &mut c,
        &[
            (0, json!({"state": "bad", "key_id": "open"})),
            (0, json!({"state": "bad", "key_id": "closed"})),
            (10, json!({"state": "valid", "key_id": "closed"})),
            // 60 s + 30 s lateness not yet passed:
            (80, json!({"state": "other"})),
        ],
    );
    assert!(fired.is_empty());
    assert_eq!(
        feed(&mut c, &[(95, json!({"state": "other"}))]),
        vec!["c-a"]
    );
    assert_eq!(c.state_keys(), 0);
}

#[test]
fn late_events_are_dropped_and_state_is_bounded() {
    let pack = RulePack::from_sources(&[(PathBuf::from("r.yml"), format!("{DET}---\ntitle: n\nid: c-n\ncorrelation:\n  type: event_count\n  rules: [bad]\n  group-by: [key_id]\n  timespan: 60s\n  condition: {{gte: 1000}}\n"))])
        .unwrap_or_else(|e| panic!("{e}"));
    let settings = EngineSettings {
        max_state_keys: 100,
        ..EngineSettings::default()
    };
    let mut c = Correlator::new(Arc::new(pack), settings).unwrap_or_else(|e| panic!("{e}"));
    let many: Vec<(i64, serde_json::Value)> = (0..500)
        .map(|i| (0, json!({"state": "bad", "key_id": format!("k{i}")})))
        .collect();
    feed(&mut c, &many);
    assert!(c.state_keys() <= 100, "{}", c.state_keys());
    assert!(c.stats().evictions > 0);
    feed(
        &mut c,
        &[
            (100, json!({"state": "valid"})),
            (10, json!({"state": "bad"})),
        ],
    );
    assert_eq!(c.stats().late, 1);
}

#[test]
fn reload_keeps_half_filled_windows() {
    let corr = "title: n\nid: c-n\ncorrelation:\n  type: event_count\n  rules: [bad]\n  group-by: [key_id]\n  timespan: 60s\n  condition: {gte: 3}\n";
    let mut c = engine(corr);
    feed(
        &mut c,
        &[
            (0, json!({"state": "bad", "key_id": "k"})),
            (1, json!({"state": "bad", "key_id": "k"})),
        ],
    );
    let pack = RulePack::from_sources(&[(PathBuf::from("r.yml"), format!("{DET}---\n{corr}"))])
        .unwrap_or_else(|e| panic!("{e}"));
    c.reload(Arc::new(pack)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        feed(&mut c, &[(2, json!({"state": "bad", "key_id": "k"}))]),
        vec!["c-n"]
    );
}

#[test]
fn events_without_a_group_by_field_form_no_group_and_first_seen_is_exact() {
    let mut c = engine(
        "title: n\nid: c-n\ncorrelation:\n  type: event_count\n  rules: [bad]\n  group-by: [client_ip]\n  timespan: 60s\n  condition: {gte: 3}\n",
    );
    let no_ip: Vec<(i64, serde_json::Value)> = (0..5)
        .map(|i| (i, json!({"state": "bad", "key_id": format!("k{i}")})))
        .collect();
    assert!(
        feed(&mut c, &no_ip).is_empty(),
        "missing client_ip is no group"
    );
    let t0 = 1_800_000_000_000_000 + 10_250_000;
    let mut fired = Vec::new();
    for i in 0..3 {
        let v = json!({"state": "bad", "client_ip": "10.0.0.1", "event_id": format!("ip{i}")});
        fired.extend(c.process_fields(&v, t0 + i * 100_000));
    }
    assert_eq!(fired.len(), 1);
    assert_eq!(
        (fired[0].first_seen, fired[0].last_seen),
        (t0, t0 + 200_000)
    );
}

#[test]
fn detection_alerts_are_fingerprinted_per_key_so_one_key_never_hides_another() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let pack = RulePack::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut c = Correlator::new(Arc::new(pack), EngineSettings::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut alerts = Vec::new();
    for (i, (key, reason)) in [
        ("k-a", "key revoked: lost"),
        ("k-b", "key revoked: lost"),
        ("k-a", "key revoked: lost"),
        ("k-c", "nonce replayed"),
    ]
    .iter()
    .enumerate()
    {
        let state = if reason.starts_with("nonce") {
            "bad"
        } else {
            "revoked"
        };
        let v = json!({"event_id": format!("e{i}"), "state": state, "reason": reason, "key_id": key, "principal": "alice"});
        alerts.extend(c.process_fields(&v, 1_800_000_000_000_000 + i as i64 * 1_000_000));
    }
    let got: Vec<(&str, Option<&str>)> = alerts
        .iter()
        .map(|a| {
            (
                a.rule_id.as_str(),
                a.group_key.get("key_id").map(String::as_str),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("vigil-key-used-after-revocation", Some("k-a")),
            ("vigil-key-used-after-revocation", Some("k-b")),
            ("vigil-key-used-after-revocation", Some("k-a")),
            ("vigil-replayed-nonce", Some("k-c")),
        ]
    );
    let group = |k: &str| vec![("key_id".to_owned(), k.to_owned())];
    assert_eq!(
        alerts[0].fingerprint,
        crate::fingerprint("vigil-key-used-after-revocation", &group("k-a"))
    );
    assert_ne!(
        alerts[0].fingerprint, alerts[1].fingerprint,
        "two keys, two fingerprints"
    );
    assert_eq!(
        alerts[0].fingerprint, alerts[2].fingerprint,
        "same key, same fingerprint (dedup holds)"
    );
    assert!(
        alerts[1].description.contains("key_id=k-b"),
        "{}",
        alerts[1].description
    );
}

#[test]
fn detection_group_by_defaults_to_the_subject_and_is_validated() {
    let rule = |extra: &str| {
        format!(
            "title: d\nid: d-x\nlogsource: {{product: vigil}}\ndetection:\n  sel:\n    state: bad\n  condition: sel\n{extra}"
        )
    };
    let load = |text: String| RulePack::from_sources(&[(PathBuf::from("d.yml"), text)]);
    let mut c = Correlator::new(
        Arc::new(load(rule("")).unwrap_or_else(|e| panic!("{e}"))),
        EngineSettings::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<_> = [
        json!({"state": "bad", "key_id": "k", "principal": "p"}),
        json!({"state": "bad", "principal": "p"}),
        json!({"state": "bad"}),
    ]
    .iter()
    .flat_map(|v| c.process_fields(v, 1_800_000_000_000_000))
    .map(|a| a.group_key.into_iter().collect::<Vec<_>>())
    .collect();
    let kv = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    assert_eq!(keys, vec![kv("key_id", "k"), kv("principal", "p"), vec![]]);

    let mut by_ip = Correlator::new(
        Arc::new(load(rule("group-by: [client_ip, tenant]\n")).unwrap_or_else(|e| panic!("{e}"))),
        EngineSettings::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = by_ip.process_fields(
        &json!({"state": "bad", "key_id": "k", "client_ip": "10.0.0.1"}),
        1_800_000_000_000_000,
    );
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].group_key
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        vec![("client_ip", "10.0.0.1"), ("tenant", "")]
    );

    for bad in ["group-by: []\n", "group-by: {a: 1}\n", "group-by: [\"\"]\n"] {
        let e = load(rule(bad))
            .err()
            .unwrap_or_else(|| panic!("accepted {bad:?}"));
        assert_eq!(
            (e.line, e.reason.contains("group-by")),
            (8, true),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn a_future_stamped_event_cannot_blind_the_correlator() {
    use vigil_schemas::model::{EventClass, Producer, Status, Subject, VerificationEvent};
    use vigil_schemas::{SignatureState, VerifiedEvent};

    let t0 = 1_800_000_000_000_000_i64;
    let verdict = |occurred_at: i64, verified_at: i64| {
        let mut event = VerificationEvent::new(
            EventClass::SignatureVerification,
            "verify",
            Status::Failure,
            Producer::rust("attacker"),
        )
        .with_subject(Subject::principal("mallory").with_key_id("k-1"));
        event.occurred_at = occurred_at;
        VerifiedEvent {
            event,
            state: SignatureState::Bad,
            reason: Some("signature does not verify".into()),
            verified_at,
            verifier: "test".into(),
            key_id: Some("k-1".into()),
            signed_value: Vec::new(),
            signature: vec![0; 64],
            origin_topic: "raw".into(),
            origin_partition: 0,
            origin_offset: 0,
            key_emergency: false,
        }
    };
    let mut c = engine(
        "title: n\nid: c-n\ncorrelation:\n  type: event_count\n  rules: [bad]\n  group-by: [key_id]\n  timespan: 60s\n  condition: {gte: 3}\n",
    );
    // No valid key is needed for this: rejected events are correlated too. Stamped a year ahead,
    // it counts at the moment the verifier saw it.
    let year_us = 365 * 86_400 * 1_000_000_i64;
    assert!(c.process(&verdict(t0 + year_us, t0)).is_empty());
    assert_eq!(c.watermark_us(), Some(t0));
    let mut fired = Vec::new();
    for i in 1..=2 {
        let at = t0 + i * 1_000_000;
        fired.extend(
            c.process(&verdict(at, at + 5_000))
                .into_iter()
                .map(|a| a.rule_id),
        );
    }
    assert_eq!(
        fired,
        ["c-n"],
        "the burst after the future-stamped event must still fire"
    );
    let stats = c.stats();
    assert_eq!((stats.late, stats.future_stamped), (0, 1));

    // A small skew is clamped the same way, and hand-written events without verified_at keep
    // their own time.
    assert_eq!(crate::engine::event_time(&verdict(t0 + 2_000, t0)), t0);
    assert_eq!(crate::engine::event_time(&verdict(t0, 0)), t0);
    assert_eq!(crate::engine::event_time(&verdict(t0, t0 + 9)), t0);
}

#[test]
fn the_emergency_rule_matches_the_verdict_field_not_the_reason_text() {
    use vigil_schemas::model::{EventClass, Producer, Status, Subject, VerificationEvent};
    use vigil_schemas::{SignatureState, VerifiedEvent};

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../rules/key-revocation.yml"
    ))
    .unwrap_or_else(|e| panic!("rules/key-revocation.yml: {e}"));
    let pack = RulePack::from_sources(&[(PathBuf::from("key-revocation.yml"), text)])
        .unwrap_or_else(|e| panic!("pack: {e}"));
    let mut c = Correlator::new(Arc::new(pack), EngineSettings::default())
        .unwrap_or_else(|e| panic!("engine: {e}"));
    let verdict = |key: &str, emergency: bool, reason: &str| {
        let event = VerificationEvent::new(
            EventClass::Authentication,
            "login",
            Status::Success,
            Producer::rust("payments-api"),
        )
        .with_subject(Subject::principal("svc").with_key_id(key));
        VerifiedEvent {
            event,
            state: SignatureState::Revoked,
            reason: Some(format!("key revoked: {reason}")),
            verified_at: 1_800_000_000_000_000,
            verifier: "test".into(),
            key_id: Some(key.into()),
            signed_value: Vec::new(),
            signature: vec![0; 64],
            origin_topic: "raw".into(),
            origin_partition: 0,
            origin_offset: 0,
            key_emergency: emergency,
        }
    };
    let fired = |c: &mut Correlator, v: &VerifiedEvent| -> Vec<String> {
        let mut ids: Vec<String> = c.process(v).into_iter().map(|a| a.rule_id).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        fired(
            &mut c,
            &verdict("k-leaked", true, "key found in a public build log")
        ),
        [
            "vigil-key-used-after-revocation",
            "vigil-use-after-emergency-revocation"
        ]
    );
    // The word alone in a normal revocation's reason is not an emergency.
    assert_eq!(
        fired(
            &mut c,
            &verdict("k-retired", false, "emergency drill finished")
        ),
        ["vigil-key-used-after-revocation"]
    );
}
