//! `vigil audit verify`: walks the chains, checks every digest and every event signature, and
//! names the first broken link of each kind.
//!
//! What each tampering looks like:
//! - deleted row: a gap in `seq` (or a digest head pointing at a row that is gone);
//! - altered field: the row's content no longer hashes to its `chain_hash`;
//! - reordered row: an authentic row (its hash matches at another seq) sits at the wrong place,
//!   or its `prev_hash` does not link to the row before it;
//! - recomputed chain: the signed digest heads no longer match the table;
//! - forged or missing digest: a bad signature, a gap in `digest_seq`, a broken
//!   `prev_digest_hash`, or rows older than the allowed lag that no digest covers.
//! - injected verdict: a `valid` row whose signature does not verify under the key the trail's
//!   own history holds for it ([`KeyHistory`]: administrators from the trust anchors, and every
//!   key an administrator registered in a `key_lifecycle` event the trail holds), or whose key
//!   the history does not know, or that was judged valid after its key's emergency revocation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use uuid::Uuid;
use vigil_schemas::TrustAnchors;
use vigil_schemas::signing::{PublicKey, Signature};

use crate::chain::{GENESIS, link_hash};
use crate::digest;
use crate::row::{AuditRow, DigestRow};

/// The kinds of broken links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// Rows are missing from a chain.
    DeletedRow,
    /// A row's content does not match its chain hash.
    AlteredRow,
    /// A row is out of place in its chain.
    ReorderedRow,
    /// A row the verifier marked valid carries a signature that does not verify.
    BadEventSignature,
    /// A row the verifier marked valid names a key that neither the trail's key history nor
    /// the given key set holds, or that was emergency-revoked before the verdict.
    UnknownEventKey,
    /// A digest's signature or hash does not check out.
    ForgedDigest,
    /// A digest is missing from the digest chain, or rows are not covered by any digest.
    MissingDigest,
    /// A signed digest head does not match the table (the chain was recomputed or truncated).
    DigestMismatch,
}

impl FindingKind {
    /// Returns the snake_case name used in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            FindingKind::DeletedRow => "deleted_row",
            FindingKind::AlteredRow => "altered_row",
            FindingKind::ReorderedRow => "reordered_row",
            FindingKind::BadEventSignature => "bad_event_signature",
            FindingKind::UnknownEventKey => "unknown_event_key",
            FindingKind::ForgedDigest => "forged_digest",
            FindingKind::MissingDigest => "missing_digest",
            FindingKind::DigestMismatch => "digest_mismatch",
        }
    }
}

/// One broken link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of break.
    pub kind: FindingKind,
    /// Partition of the chain, if a row chain.
    pub partition: Option<i32>,
    /// Chain seq (or digest seq for digest findings).
    pub seq: Option<u64>,
    /// Kafka offset of the row.
    pub offset: Option<i64>,
    /// Event id of the row.
    pub event_id: Option<Uuid>,
    /// What exactly is wrong.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.as_str())?;
        if let Some(p) = self.partition {
            write!(f, " partition={p}")?;
        }
        if let Some(s) = self.seq {
            write!(f, " seq={s}")?;
        }
        if let Some(o) = self.offset {
            write!(f, " offset={o}")?;
        }
        if let Some(e) = self.event_id {
            write!(f, " event_id={e}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Options of a verification run.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The sink's digest-signing public key.
    pub sink_key: PublicKey,
    /// Producer public keys by key id, to re-verify event signatures (an external key set:
    /// keys registered before key operations were audited).
    pub producer_keys: BTreeMap<String, PublicKey>,
    /// The key history read from the trail itself, checked against the trust anchors.
    pub history: Option<KeyHistory>,
    /// Whether the walk starts at an arbitrary row (a `--from` window): the first row of each
    /// partition anchors the walk instead of genesis.
    pub anchored: bool,
    /// Rows ingested more than this long ago must be covered by a digest.
    pub max_digest_lag_micros: i64,
    /// The current time (microseconds), for the digest lag.
    pub now_micros: i64,
}

/// Per-partition totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionSummary {
    /// Rows walked.
    pub rows: u64,
    /// First seq seen.
    pub first_seq: u64,
    /// Last seq seen.
    pub last_seq: u64,
    /// Chain head after the last row.
    pub head: [u8; 32],
    /// Highest next_seq a digest covers.
    pub covered_until: u64,
}

/// The result of a verification run.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Topic verified.
    pub topic: String,
    /// Per-partition totals.
    pub partitions: BTreeMap<i32, PartitionSummary>,
    /// Digests checked.
    pub digests: u64,
    /// Event signatures that verified.
    pub signatures_valid: u64,
    /// Valid-state rows whose key is not in the given producer keys.
    pub signatures_unchecked: u64,
    /// Rows the verifier already rejected (their signatures are not expected to verify).
    pub signatures_skipped: u64,
    /// The first finding of each kind per chain.
    pub findings: Vec<Finding>,
    /// Every finding counted, including those not listed.
    pub total_findings: u64,
}

impl VerifyReport {
    /// Returns whether nothing is broken.
    pub fn is_clean(&self) -> bool {
        self.total_findings == 0
    }

    /// Returns the first finding of `kind`.
    pub fn first(&self, kind: FindingKind) -> Option<&Finding> {
        self.findings.iter().find(|f| f.kind == kind)
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "topic {}", self.topic)?;
        for (p, s) in &self.partitions {
            writeln!(
                f,
                "  partition {p}: {} rows, seq {}..={}, head {}, digest covers seq < {}",
                s.rows,
                s.first_seq,
                s.last_seq,
                hex::encode(s.head),
                s.covered_until
            )?;
        }
        writeln!(
            f,
            "  digests {}, event signatures: {} valid, {} unchecked (key not given), {} rejected by the verifier",
            self.digests, self.signatures_valid, self.signatures_unchecked, self.signatures_skipped
        )?;
        if self.is_clean() {
            writeln!(
                f,
                "OK: every chain link, digest and event signature checks out"
            )
        } else {
            writeln!(
                f,
                "BROKEN: {} finding(s); first broken link of each kind:",
                self.total_findings
            )?;
            for x in &self.findings {
                writeln!(f, "  {x}")?;
            }
            Ok(())
        }
    }
}

#[derive(Debug, Default)]
struct ChainState {
    expected_seq: Option<u64>,
    head: [u8; 32],
    last_offset: i64,
}

/// Walks rows (in `(partition, seq)` order) and digests; feed rows, then call [`Walker::finish`].
#[derive(Debug)]
pub struct Walker {
    opts: VerifyOptions,
    report: VerifyReport,
    chains: BTreeMap<i32, ChainState>,
    reported: BTreeSet<(FindingKind, Option<i32>)>,
    /// Digest heads to check: (partition, seq) -> (digest seq, last offset, head).
    wanted: BTreeMap<(i32, u64), (u64, i64, [u8; 32])>,
    seen_wanted: BTreeSet<(i32, u64)>,
    /// Oldest `ingested_at` per (partition, seq) beyond which coverage is checked.
    uncovered_oldest: BTreeMap<i32, (u64, i64)>,
}

impl Walker {
    /// Starts a walk for `topic`; `digests` are all digests of the topic in `digest_seq` order.
    pub fn new(topic: &str, opts: VerifyOptions, digests: &[DigestRow]) -> Self {
        let mut w = Walker {
            opts,
            report: VerifyReport {
                topic: topic.to_owned(),
                ..VerifyReport::default()
            },
            chains: BTreeMap::new(),
            reported: BTreeSet::new(),
            wanted: BTreeMap::new(),
            seen_wanted: BTreeSet::new(),
            uncovered_oldest: BTreeMap::new(),
        };
        w.check_digests(digests);
        w
    }

    fn find(&mut self, f: Finding) {
        self.report.total_findings += 1;
        if self.reported.insert((f.kind, f.partition)) {
            self.report.findings.push(f);
        }
    }

    fn check_digests(&mut self, digests: &[DigestRow]) {
        let mut prev: Option<&DigestRow> = None;
        for d in digests {
            self.report.digests += 1;
            let df = |kind, detail: String| Finding {
                kind,
                partition: None,
                seq: Some(d.digest_seq),
                offset: None,
                event_id: None,
                detail,
            };
            if let Err(e) = digest::check(d, &self.opts.sink_key) {
                self.find(df(
                    FindingKind::ForgedDigest,
                    format!("digest {}: {e}", d.digest_seq),
                ));
                prev = Some(d);
                continue;
            }
            let (want_seq, want_prev) = match prev {
                Some(p) => (p.digest_seq + 1, p.digest_hash),
                None => (0, GENESIS),
            };
            if d.digest_seq != want_seq {
                self.find(df(
                    FindingKind::MissingDigest,
                    format!(
                        "digest seq {} follows {}: digests {}..{} are missing",
                        d.digest_seq,
                        want_seq.saturating_sub(1),
                        want_seq,
                        d.digest_seq
                    ),
                ));
            } else if d.prev_digest_hash != want_prev {
                self.find(df(
                    FindingKind::ForgedDigest,
                    format!(
                        "digest {} does not chain to the digest before it",
                        d.digest_seq
                    ),
                ));
            }
            for h in digest::heads(d) {
                let covered = self.report.partitions.entry(h.partition).or_default();
                covered.covered_until = covered.covered_until.max(h.next_seq);
                if h.next_seq > 0 {
                    self.wanted.insert(
                        (h.partition, h.next_seq - 1),
                        (d.digest_seq, h.last_offset, h.head),
                    );
                }
            }
            prev = Some(d);
        }
    }

    /// Checks one row; rows must come in `(partition, seq)` order.
    pub fn feed(&mut self, row: &AuditRow) {
        let p = row.kafka_partition;
        let anchored = self.opts.anchored;
        let st = self.chains.entry(p).or_default();
        let first = st.expected_seq.is_none();
        let expected = st
            .expected_seq
            .unwrap_or(if anchored { row.seq } else { 0 });
        let prev_head = if first && anchored {
            row.prev_hash
        } else if first {
            GENESIS
        } else {
            st.head
        };
        let prev_offset = st.last_offset;
        st.expected_seq = Some(row.seq.saturating_add(1).max(expected));
        st.head = row.chain_hash;
        st.last_offset = row.kafka_offset;
        let rf = |kind, detail: String| Finding {
            kind,
            partition: Some(p),
            seq: Some(row.seq),
            offset: Some(row.kafka_offset),
            event_id: Some(row.event_id),
            detail,
        };

        let summary = self.report.partitions.entry(p).or_default();
        if summary.rows == 0 {
            summary.first_seq = row.seq;
        }
        summary.rows += 1;
        summary.last_seq = row.seq;
        summary.head = row.chain_hash;
        if row.seq >= summary.covered_until {
            self.uncovered_oldest
                .entry(p)
                .or_insert((row.seq, row.ingested_at));
        }

        let content_ok = link_hash(row) == row.chain_hash;
        if !content_ok {
            // An authentic row moved to another seq still hashes at its original seq.
            let moved_from = (row.seq.saturating_sub(16)..row.seq.saturating_add(17))
                .filter(|&s| s != row.seq)
                .find(|&s| {
                    link_hash(&AuditRow {
                        seq: s,
                        ..row.clone()
                    }) == row.chain_hash
                });
            match moved_from {
                Some(s) => self.find(rf(
                    FindingKind::ReorderedRow,
                    format!("row stored at seq {} was chained at seq {s}", row.seq),
                )),
                None => self.find(rf(
                    FindingKind::AlteredRow,
                    "the row's content does not hash to its chain_hash (a field was changed)"
                        .into(),
                )),
            }
        } else if row.seq > expected {
            self.find(rf(
                FindingKind::DeletedRow,
                format!("seq {}..={} missing before this row", expected, row.seq - 1),
            ));
        } else if row.seq < expected {
            self.find(rf(
                FindingKind::ReorderedRow,
                format!(
                    "seq {} repeats or goes backwards (expected {expected})",
                    row.seq
                ),
            ));
        } else if row.prev_hash != prev_head {
            self.find(rf(
                FindingKind::ReorderedRow,
                "prev_hash does not link to the row before it".into(),
            ));
        } else if !first && row.kafka_offset <= prev_offset {
            self.find(rf(
                FindingKind::ReorderedRow,
                format!(
                    "offset {} does not follow offset {prev_offset}",
                    row.kafka_offset
                ),
            ));
        }

        if let Some(&(dseq, offset, head)) = self.wanted.get(&(p, row.seq)) {
            self.seen_wanted.insert((p, row.seq));
            // Dead-lettered records after the row advance the digest's offset without a row.
            if head != row.chain_hash || offset < row.kafka_offset {
                self.find(rf(FindingKind::DigestMismatch, format!("signed digest {dseq} records head {} at offset {offset}, the table holds {}", hex::encode(head), hex::encode(row.chain_hash))));
            }
        }

        if row.state == "valid" {
            let key = match self.opts.producer_keys.get(&row.key_id) {
                Some(k) => Ok(*k),
                None => match &self.opts.history {
                    Some(h) => h.key_for(&row.key_id, row.verified_at),
                    None => Err(format!(
                        "no key to re-verify {}: give the trust anchors (--trust-anchors, \
                         VIGIL_TRUST_ANCHORS) so the key history is read from the trail, or \
                         --keys-dir",
                        row.key_id
                    )),
                },
            };
            match key {
                Ok(key) => {
                    let ok = Signature::from_slice(&row.signature)
                        .is_ok_and(|s| key.verify(&row.signed_value, &s).is_ok());
                    if ok {
                        self.report.signatures_valid += 1;
                    } else {
                        self.find(rf(
                            FindingKind::BadEventSignature,
                            format!("signature does not verify under key {}", row.key_id),
                        ));
                    }
                }
                Err(why) => {
                    self.report.signatures_unchecked += 1;
                    self.find(rf(FindingKind::UnknownEventKey, why));
                }
            }
        } else {
            self.report.signatures_skipped += 1;
        }
    }

    /// Finishes the walk: digest heads whose rows never appeared, and coverage.
    pub fn finish(mut self, window: Option<(Option<i32>, bool)>) -> VerifyReport {
        // With a partition filter or a time window, rows outside it are not expected.
        let partial = window.is_some_and(|(p, ranged)| p.is_some() || ranged);
        let partition_filter = window.and_then(|(p, _)| p);
        let missing: Vec<_> = self
            .wanted
            .iter()
            .filter(|(k, _)| !self.seen_wanted.contains(k))
            .map(|(&(p, s), &(d, o, _))| (p, s, d, o))
            .collect();
        for (p, s, d, o) in missing {
            if partial && partition_filter.is_none_or(|f| f == p) && self.opts.anchored {
                continue;
            }
            if partition_filter.is_some_and(|f| f != p) {
                continue;
            }
            self.find(Finding {
                kind: FindingKind::DeletedRow,
                partition: Some(p),
                seq: Some(s),
                offset: Some(o),
                event_id: None,
                detail: format!("signed digest {d} covers this row but it is not in the table"),
            });
        }
        let oldest_allowed = self.opts.now_micros - self.opts.max_digest_lag_micros;
        let uncovered: Vec<_> = self
            .uncovered_oldest
            .iter()
            .map(|(&p, &(s, at))| (p, s, at))
            .collect();
        for (p, s, at) in uncovered {
            let covered = self
                .report
                .partitions
                .get(&p)
                .map_or(0, |x| x.covered_until);
            if s >= covered && at <= oldest_allowed {
                self.find(Finding {
                    kind: FindingKind::MissingDigest,
                    partition: Some(p),
                    seq: Some(s),
                    offset: None,
                    event_id: None,
                    detail: format!("rows from seq {s} on are not covered by any signed digest (digests cover seq < {covered})"),
                });
            }
        }
        self.report
    }
}

/// How long after an emergency revocation a verifier may still have judged an event valid: the
/// revocation's propagation to every verifier (about 50 ms measured) with a wide margin.
const EMERGENCY_PROPAGATION_MICROS: i64 = 10_000_000;

/// The keys the trail itself vouches for: the administrators (trust anchors, from
/// configuration), and every key an administrator registered in a `key_lifecycle` event that
/// the trail holds and whose signature verifies under that administrator's key.
#[derive(Debug, Clone, Default)]
pub struct KeyHistory {
    anchors: BTreeMap<String, PublicKey>,
    keys: BTreeMap<String, HistoricKey>,
    /// Key operation events learned from.
    pub learned: u64,
    /// Key operation events refused: not signed by a trust anchor, or malformed.
    pub refused: u64,
}

#[derive(Debug, Clone)]
struct HistoricKey {
    public_key: PublicKey,
    /// When an emergency revocation of the key was recorded (the event's `occurred_at`).
    emergency_revoked_at: Option<i64>,
}

impl KeyHistory {
    /// An empty history trusting `anchors`.
    pub fn new(anchors: &TrustAnchors) -> Self {
        Self {
            anchors: anchors.iter().map(|(id, k)| (id.to_owned(), *k)).collect(),
            ..Self::default()
        }
    }

    /// Learns from one row if it is a `valid` key operation event signed by a trust anchor;
    /// rows must come in `occurred_at` order. Returns whether the row was a key event.
    pub fn learn(&mut self, row: &AuditRow) -> bool {
        if row.class != "key_lifecycle" || row.state != "valid" {
            return false;
        }
        let signed_by_anchor = self.anchors.get(&row.key_id).is_some_and(|k| {
            Signature::from_slice(&row.signature)
                .is_ok_and(|s| k.verify(&row.signed_value, &s).is_ok())
        });
        let attr = |name: &str| {
            row.attributes
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let key = attr("public_key")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|raw| PublicKey::from_slice(&raw).ok());
        let (Some(key_id), Some(public_key), true) = (attr("key_id"), key, signed_by_anchor) else {
            // plan_approved events name no key; anything else unusable is counted.
            if attr("key_id").is_some() || !signed_by_anchor {
                self.refused += 1;
            }
            return true;
        };
        self.learned += 1;
        let emergency = attr("state") == Some("revoked") && attr("emergency") == Some("true");
        let entry = self
            .keys
            .entry(key_id.to_owned())
            .or_insert_with(|| HistoricKey {
                public_key,
                emergency_revoked_at: None,
            });
        // A key id keeps its key for life: a later event naming another key is not learned.
        if entry.public_key != public_key {
            self.refused += 1;
            return true;
        }
        if emergency && entry.emergency_revoked_at.is_none() {
            entry.emergency_revoked_at = Some(row.occurred_at);
        }
        true
    }

    /// The key that may have signed a verdict of `key_id` judged at `verified_at`.
    pub fn key_for(&self, key_id: &str, verified_at: i64) -> Result<PublicKey, String> {
        if let Some(k) = self.anchors.get(key_id) {
            return Ok(*k);
        }
        let Some(h) = self.keys.get(key_id) else {
            return Err(format!(
                "key {key_id} has no administrator-signed registration in the trail (a verdict \
                 injected on the verified topic, or a key registered before key operations were \
                 audited: give it with --keys-dir)"
            ));
        };
        match h.emergency_revoked_at {
            Some(at) if verified_at > at.saturating_add(EMERGENCY_PROPAGATION_MICROS) => Err(
                format!("judged valid after key {key_id} was revoked as an emergency"),
            ),
            _ => Ok(h.public_key),
        }
    }

    /// Reads the key operation events of `topic` (in `occurred_at` order) into this history.
    pub async fn load(
        &mut self,
        store: &crate::store::AuditStore,
        topic: &str,
    ) -> Result<(), crate::error::AuditError> {
        let mut cursor = store.key_events(topic)?;
        while let Some(row) = cursor
            .next()
            .await
            .map_err(|e| crate::error::AuditError::clickhouse("read key events", e))?
        {
            self.learn(&row);
        }
        Ok(())
    }
}

/// Verifies one topic in ClickHouse: streams its rows in chain order through a [`Walker`].
pub async fn verify_store(
    store: &crate::store::AuditStore,
    topic: &str,
    opts: VerifyOptions,
    partition: Option<i32>,
    from_micros: Option<i64>,
    to_micros: Option<i64>,
) -> Result<VerifyReport, crate::error::AuditError> {
    let digests = store.digests(topic).await?;
    let mut opts = opts;
    if let Some(history) = opts.history.as_mut() {
        history.load(store, topic).await?;
    }
    let mut walker = Walker::new(
        topic,
        VerifyOptions {
            anchored: opts.anchored || from_micros.is_some(),
            ..opts
        },
        &digests,
    );
    let mut cursor = store.rows(topic, partition, from_micros, to_micros)?;
    while let Some(row) = cursor
        .next()
        .await
        .map_err(|e| crate::error::AuditError::clickhouse("read audit_events", e))?
    {
        walker.feed(&row);
    }
    let ranged = from_micros.is_some() || to_micros.is_some();
    Ok(walker.finish(Some((partition, ranged))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainHead;
    use crate::chain::tests::sample_row;
    use crate::digest::PartitionHead;
    use vigil_schemas::signing::EventSigner;

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut head = ChainHead::default();
        (0..n)
            .map(|i| {
                let mut r = sample_row(i);
                r.state = "untrusted".into();
                head.append(&mut r);
                r
            })
            .collect()
    }

    fn run(rows: &[AuditRow], digests: &[DigestRow], key: &EventSigner) -> VerifyReport {
        let opts = VerifyOptions {
            sink_key: *key.public_key(),
            producer_keys: BTreeMap::new(),
            history: None,
            anchored: false,
            max_digest_lag_micros: 0,
            now_micros: i64::MAX / 2,
        };
        let mut w = Walker::new("t", opts, digests);
        for r in rows {
            w.feed(r);
        }
        w.finish(None)
    }

    fn digest_of(rows: &[AuditRow], key: &EventSigner) -> DigestRow {
        let last = rows.last().cloned().unwrap_or_else(|| sample_row(0));
        digest::make(
            key,
            "t",
            0,
            1,
            GENESIS,
            &[PartitionHead {
                partition: 0,
                last_offset: last.kafka_offset,
                next_seq: last.seq + 1,
                head: last.chain_hash,
            }],
        )
    }

    fn key_row(admin: &EventSigner, activity: &str, attrs: &[(&str, String)], at: i64) -> AuditRow {
        let mut r = sample_row(0);
        r.class = "key_lifecycle".into();
        r.activity = activity.into();
        r.state = "valid".into();
        r.key_id = vigil_schemas::admin::admin_id(admin).to_string();
        r.occurred_at = at;
        r.attributes = attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        r.signed_value = format!("{activity}{at}").into_bytes();
        r.signature = admin.sign(&r.signed_value).to_bytes().to_vec();
        r
    }

    #[test]
    fn the_key_history_trusts_only_administrator_signed_registrations_and_emergencies_end_it() {
        let admin = EventSigner::from_seed(&[1; 32]);
        let stranger = EventSigner::from_seed(&[2; 32]);
        let key = EventSigner::from_seed(&[3; 32]);
        let pk = hex::encode(key.public_key().to_bytes());
        let anchors = vigil_schemas::TrustAnchors::new([*admin.public_key()]);
        let mut h = KeyHistory::new(&anchors);
        let reg = |signer: &EventSigner, id: &str, at| {
            key_row(
                signer,
                "key_registered",
                &[
                    ("key_id", id.into()),
                    ("public_key", pk.clone()),
                    ("state", "active".into()),
                ],
                at,
            )
        };
        assert!(h.learn(&reg(&admin, "k1", 100)));
        assert!(h.learn(&reg(&stranger, "k2", 100)), "a key event, refused");
        assert_eq!((h.learned, h.refused), (1, 1));
        assert_eq!(h.key_for("k1", 200), Ok(*key.public_key()));
        assert!(
            h.key_for("k2", 200)
                .unwrap_err()
                .contains("no administrator-signed")
        );
        let admin_id = vigil_schemas::admin::admin_id(&admin).to_string();
        assert_eq!(h.key_for(&admin_id, 0), Ok(*admin.public_key()));
        let revoke = key_row(
            &admin,
            "key_revoked",
            &[
                ("key_id", "k1".into()),
                ("public_key", pk.clone()),
                ("state", "revoked".into()),
                ("emergency", "true".into()),
            ],
            1_000_000,
        );
        assert!(h.learn(&revoke));
        assert!(
            h.key_for("k1", 1_000_000 + EMERGENCY_PROPAGATION_MICROS)
                .is_ok()
        );
        assert!(
            h.key_for("k1", 2_000_000 + EMERGENCY_PROPAGATION_MICROS)
                .is_err()
        );
        let mut plain = sample_row(9);
        plain.class = "authentication".into();
        assert!(!h.learn(&plain), "not a key event");
    }

    #[test]
    fn clean_chain_verifies_and_each_tampering_is_named() {
        let key = EventSigner::from_seed(&[3; 32]);
        let rows = chain(10);
        let d = digest_of(&rows, &key);
        assert!(run(&rows, std::slice::from_ref(&d), &key).is_clean());

        let mut deleted = rows.clone();
        deleted.remove(4);
        let r = run(&deleted, std::slice::from_ref(&d), &key);
        assert_eq!(
            r.first(FindingKind::DeletedRow).and_then(|f| f.seq),
            Some(5),
            "{r}"
        );

        let mut altered = rows.clone();
        altered[3].principal = "mallory".into();
        let r = run(&altered, std::slice::from_ref(&d), &key);
        assert_eq!(
            r.first(FindingKind::AlteredRow).and_then(|f| f.seq),
            Some(3),
            "{r}"
        );

        let mut reordered = rows.clone();
        reordered.swap(5, 6);
        let (a, b) = (reordered[5].seq, reordered[6].seq);
        reordered[5].seq = b;
        reordered[6].seq = a;
        let r = run(&reordered, std::slice::from_ref(&d), &key);
        assert_eq!(
            r.first(FindingKind::ReorderedRow).and_then(|f| f.seq),
            Some(5),
            "{r}"
        );

        let mut forged = d.clone();
        forged.heads[0][0] ^= 1;
        let r = run(&rows, &[forged], &key);
        assert!(r.first(FindingKind::ForgedDigest).is_some(), "{r}");

        let r = run(&rows, &[], &key);
        assert_eq!(
            r.first(FindingKind::MissingDigest).and_then(|f| f.seq),
            Some(0),
            "{r}"
        );

        // A chain recomputed after a deletion is caught by the signed head.
        let mut recomputed = rows.clone();
        recomputed.remove(2);
        let mut head = ChainHead::default();
        for r in &mut recomputed {
            head.append(r);
        }
        let r = run(&recomputed, std::slice::from_ref(&d), &key);
        assert!(!r.is_clean(), "{r}");
    }
}
