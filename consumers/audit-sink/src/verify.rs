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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use uuid::Uuid;
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
    /// Producer public keys by key id, to re-verify event signatures.
    pub producer_keys: BTreeMap<String, PublicKey>,
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
            match self.opts.producer_keys.get(&row.key_id) {
                Some(key) => {
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
                None => self.report.signatures_unchecked += 1,
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
