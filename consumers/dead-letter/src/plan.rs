//! Maker-checker for replays: a signed plan naming the exact DLQ records to replay.
//!
//! The planner signs a canonical serialization of the plan body (serde_json of the fixed-order
//! struct, maps sorted, no floats) prefixed with a context string. The approver verifies that
//! signature, refuses a plan signed by the approver's own key, checks each planned record still
//! has the digest it had when planned, and executes exactly those coordinates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use vigil_schemas::{EventSigner, KeyId, PublicKey, Signature};

use crate::error::DlqError;
use crate::filter::Filter;
use crate::filter::format_ms;
use crate::record::{Coordinate, DeadLetter};

/// Format version of plan files.
pub const PLAN_VERSION: u32 = 1;
/// Prefix of the signed bytes, so a plan signature is never valid for anything else.
const SIGNING_CONTEXT: &[u8] = b"vigil-dlq-replay-plan-v1\n";

/// One planned record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanEntry {
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// Where it will be written back.
    pub origin_topic: String,
    /// [`DeadLetter::digest`] when planned.
    pub sha256: String,
}

/// What the planner signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// [`PLAN_VERSION`].
    pub version: u32,
    /// Random id of this plan.
    pub plan_id: String,
    /// The DLQ topic the coordinates refer to.
    pub dlq_topic: String,
    /// The filters the plan was made with (informational; the entries are what executes).
    pub filter: Filter,
    /// Records to replay, sorted by partition then offset.
    pub entries: Vec<PlanEntry>,
    /// Planned records per origin topic.
    pub by_origin_topic: BTreeMap<String, u64>,
    /// Matching records left out because their dead-letter headers are unreadable.
    pub unreplayable: u64,
    /// Key id of the planner's key.
    pub planner_key_id: String,
    /// The planner's raw Ed25519 public key, hex.
    pub planner_public_key: String,
    /// When the plan was made, ms since the epoch.
    pub created_at_ms: i64,
    /// The same, RFC 3339, for people.
    pub created_at: String,
}

/// A plan file: the body and the planner's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayPlan {
    /// The signed content.
    pub plan: PlanBody,
    /// Ed25519 signature over the context prefix and the canonical body, hex.
    pub signature: String,
}

fn canonical(body: &PlanBody) -> Result<Vec<u8>, DlqError> {
    let mut out = SIGNING_CONTEXT.to_vec();
    serde_json::to_writer(&mut out, body)
        .map_err(|e| DlqError::Invalid(format!("serializing the plan: {e}")))?;
    Ok(out)
}

impl ReplayPlan {
    /// Builds and signs a plan for `records` (those matching `filter`, as scanned).
    pub fn create(
        dlq_topic: &str,
        filter: &Filter,
        records: &[DeadLetter],
        planner: &EventSigner,
        now_ms: i64,
    ) -> Result<Self, DlqError> {
        let mut entries = Vec::new();
        let mut by_origin_topic = BTreeMap::new();
        let mut unreplayable = 0;
        for r in records {
            match &r.parsed {
                Ok(h) => {
                    *by_origin_topic.entry(h.origin_topic.clone()).or_default() += 1;
                    entries.push(PlanEntry {
                        partition: r.at.partition,
                        offset: r.at.offset,
                        origin_topic: h.origin_topic.clone(),
                        sha256: r.digest(),
                    });
                }
                Err(_) => unreplayable += 1,
            }
        }
        entries.sort_by_key(|e| (e.partition, e.offset));
        let public = planner.public_key();
        let body = PlanBody {
            version: PLAN_VERSION,
            plan_id: uuid::Uuid::new_v4().to_string(),
            dlq_topic: dlq_topic.to_owned(),
            filter: filter.clone(),
            entries,
            by_origin_topic,
            unreplayable,
            planner_key_id: planner.key_id().as_str().to_owned(),
            planner_public_key: hex::encode(public.to_bytes()),
            created_at_ms: now_ms,
            created_at: format_ms(now_ms),
        };
        let signature = planner.sign(&canonical(&body)?).to_hex();
        Ok(Self {
            plan: body,
            signature,
        })
    }

    /// Reads a plan file (unknown fields refused).
    pub fn read(path: &Path) -> Result<Self, DlqError> {
        let text = std::fs::read(path).map_err(|source| DlqError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&text)
            .map_err(|e| DlqError::Refused(format!("{} is not a replay plan: {e}", path.display())))
    }

    /// Writes the plan as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), DlqError> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| DlqError::Invalid(format!("serializing the plan: {e}")))?;
        std::fs::write(path, text).map_err(|source| DlqError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Returns the SHA-256 of the signed bytes, hex: names the plan in the replay's event.
    pub fn sha256(&self) -> Result<String, DlqError> {
        use sha2::Digest;
        Ok(hex::encode(sha2::Sha256::digest(canonical(&self.plan)?)))
    }

    /// Verifies the planner's signature and the plan's own consistency; returns the planner's
    /// public key.
    pub fn verify(&self) -> Result<PublicKey, DlqError> {
        let body = &self.plan;
        if body.version != PLAN_VERSION {
            return Err(DlqError::Refused(format!(
                "plan version {} is not {PLAN_VERSION}",
                body.version
            )));
        }
        let raw = hex::decode(&body.planner_public_key)
            .map_err(|e| DlqError::Refused(format!("planner_public_key is not hex: {e}")))?;
        let public = PublicKey::from_slice(&raw)
            .map_err(|e| DlqError::Refused(format!("planner_public_key: {e}")))?;
        let sig_raw = hex::decode(&self.signature)
            .map_err(|e| DlqError::Refused(format!("signature is not hex: {e}")))?;
        let signature = Signature::from_slice(&sig_raw)
            .map_err(|e| DlqError::Refused(format!("signature: {e}")))?;
        public.verify(&canonical(body)?, &signature).map_err(|_| {
            DlqError::Refused(
                "the planner's signature does not match the plan (edited after signing?)"
                    .to_owned(),
            )
        })?;
        if KeyId::for_public_key(&public).as_str() != body.planner_key_id {
            return Err(DlqError::Refused(
                "planner_key_id is not the id of planner_public_key".to_owned(),
            ));
        }
        let mut seen = BTreeSet::new();
        for e in &body.entries {
            if e.partition < 0 || e.offset < 0 || !seen.insert((e.partition, e.offset)) {
                return Err(DlqError::Refused(format!(
                    "entry {}:{} is negative or listed twice",
                    e.partition, e.offset
                )));
            }
        }
        Ok(public)
    }

    /// Refuses approval by the planner's own key (same key id or same public key).
    pub fn check_approver(&self, approver: &EventSigner) -> Result<(), DlqError> {
        let same_key =
            hex::encode(approver.public_key().to_bytes()) == self.plan.planner_public_key;
        if same_key || approver.key_id().as_str() == self.plan.planner_key_id {
            return Err(DlqError::Refused(format!(
                "the approver key {} is the planner's key: a replay plan must be approved by a different key",
                approver.key_id()
            )));
        }
        Ok(())
    }

    /// Refuses a plan older than `max_age_ms` or made in the future (beyond a minute of skew).
    pub fn check_age(&self, now_ms: i64, max_age_ms: i64) -> Result<(), DlqError> {
        let age = now_ms.saturating_sub(self.plan.created_at_ms);
        if age > max_age_ms || age < -60_000 {
            return Err(DlqError::Refused(format!(
                "plan made at {} is outside the accepted age of {} s",
                self.plan.created_at,
                max_age_ms / 1000
            )));
        }
        Ok(())
    }

    /// Returns the planned coordinates.
    pub fn coordinates(&self) -> BTreeSet<Coordinate> {
        self.plan
            .entries
            .iter()
            .map(|e| Coordinate {
                partition: e.partition,
                offset: e.offset,
            })
            .collect()
    }

    /// Checks the scanned records are exactly the planned ones, unchanged; returns them in
    /// plan order.
    pub fn match_records(&self, found: Vec<DeadLetter>) -> Result<Vec<DeadLetter>, DlqError> {
        let mut by_at: BTreeMap<Coordinate, DeadLetter> =
            found.into_iter().map(|r| (r.at, r)).collect();
        let mut out = Vec::with_capacity(self.plan.entries.len());
        for e in &self.plan.entries {
            let at = Coordinate {
                partition: e.partition,
                offset: e.offset,
            };
            let r = by_at.remove(&at).ok_or_else(|| {
                DlqError::Refused(format!(
                    "planned record {at} is no longer in {} (retention?)",
                    self.plan.dlq_topic
                ))
            })?;
            if r.digest() != e.sha256 || r.origin_topic() != e.origin_topic {
                return Err(DlqError::Refused(format!(
                    "record {at} differs from the planned one"
                )));
            }
            out.push(r);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan(planner: &EventSigner) -> ReplayPlan {
        let records = vec![DeadLetter::new(
            Coordinate {
                partition: 0,
                offset: 4,
            },
            Some(1),
            None,
            Some(vec![9]),
            vec![],
        )];
        ReplayPlan::create("dlq", &Filter::default(), &records, planner, 1_000).unwrap()
    }

    #[test]
    fn signed_plan_verifies_and_refuses_self_approval() {
        let planner = EventSigner::from_seed(&[1; 32]);
        let p = plan(&planner);
        assert!(p.verify().is_ok());
        assert!(p.check_approver(&EventSigner::from_seed(&[2; 32])).is_ok());
        assert!(matches!(
            p.check_approver(&planner),
            Err(DlqError::Refused(_))
        ));
        // Same key under another id is still the planner.
        let renamed = planner
            .clone()
            .with_key_id(KeyId::new("other-name").unwrap());
        assert!(p.check_approver(&renamed).is_err());
    }

    #[test]
    fn edits_after_signing_are_refused() {
        let planner = EventSigner::from_seed(&[1; 32]);
        let mut p = plan(&planner);
        p.plan.entries.push(PlanEntry {
            partition: 0,
            offset: 5,
            origin_topic: "x".into(),
            sha256: String::new(),
        });
        assert!(matches!(p.verify(), Err(DlqError::Refused(_))));
        let text = serde_json::to_string(&plan(&planner)).unwrap();
        let extra = text.replacen("{\"plan\":{", "{\"plan\":{\"extra\":1,", 1);
        assert!(serde_json::from_str::<ReplayPlan>(&extra).is_err());
    }

    #[test]
    fn stale_plans_are_refused() {
        let p = plan(&EventSigner::from_seed(&[1; 32]));
        assert!(p.check_age(2_000, 10_000).is_ok());
        assert!(p.check_age(20_000, 10_000).is_err());
    }
}
