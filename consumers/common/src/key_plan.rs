//! Maker-checker for key registrations and rotations: a plan signed by one administrator,
//! executed only when a different administrator approves it.
//!
//! A [`KeyPlan`] lists the exact statuses to write ([`KeyChange`]), each with the version its
//! key had when the plan was made. The planner signs a canonical serialization of the body
//! (serde_json of fixed-order structs, no maps, no floats) prefixed with a context string. The
//! approver checks that the planner is a trust anchor and signed this very body, that the
//! approver is another trust anchor, that the plan is not too old, and that every key still has
//! the version it had when planned (so a plan executes at most once, and never over a change made
//! after it was reviewed); then [`KeyPlan::statuses`] gives the records to write, one version
//! above the planned one, naming the plan, its planner and its approver.
//!
//! Revocations do not go through plans: an emergency cannot wait for a second person.
//!
//! Every key operation is also a `key_lifecycle` event ([`key_event`]) that the acting
//! administrator signs onto the raw topic, so it is verified, correlated and kept in the audit
//! trail with everything needed to re-check later events against the key history.

use std::path::Path;

use serde::{Deserialize, Serialize};
use vigil_schemas::admin::admin_id;
use vigil_schemas::model::{
    EventClass, Platform, Producer, Severity, Status, Subject, TimestampMicros, format_rfc3339,
    parse_rfc3339,
};
use vigil_schemas::{
    EventSigner, KeyId, KeyState, KeyStatus, PublicKey, Signature, TrustAnchors, VerificationEvent,
};

/// Format version of plan files.
pub const KEY_PLAN_VERSION: u32 = 1;
/// Prefix of the signed bytes, so a plan signature is never valid for anything else.
const SIGNING_CONTEXT: &[u8] = b"vigil-key-plan-v1\n";
/// How far before approval a registered key accepts events when the plan gives no
/// `valid_from`: events in flight and clocks a little behind.
const DEFAULT_VALID_BEFORE_MICROS: i64 = 3_600_000_000;

/// A plan that cannot be made, read or executed.
#[derive(Debug, thiserror::Error)]
pub enum KeyPlanError {
    /// The plan (or a manifest) is refused, with the reason.
    #[error("{0}")]
    Refused(String),
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn refused(reason: impl Into<String>) -> KeyPlanError {
    KeyPlanError::Refused(reason.into())
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// A new key, active.
    Register,
    /// The old key of a rotation: accepted until its grace ends, replaced by a new key.
    Retire,
    /// Lifecycle metadata of an existing key (owner, environment, not_after).
    Update,
}

/// One status the plan writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    /// What the change does.
    pub action: ChangeAction,
    /// The key.
    pub key_id: String,
    /// The key's version when planned; 0 = not registered.
    pub expected_version: i64,
    /// Raw Ed25519 public key, hex.
    pub public_key: String,
    /// Earliest accepted `occurred_at`, µs; `None` = one hour before approval.
    pub valid_from: Option<TimestampMicros>,
    /// Retire: how long the old key stays accepted after approval, ms.
    pub grace_ms: Option<u64>,
    /// Retire: the key replacing this one.
    pub replaced_by: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Owning team or service.
    pub owner: Option<String>,
    /// Deployment environment.
    pub environment: Option<String>,
    /// Expiry, µs.
    pub not_after: Option<TimestampMicros>,
}

impl KeyChange {
    /// A registration of `key_id` with `public_key`.
    pub fn register(key_id: &str, public_key: &PublicKey) -> Self {
        Self {
            action: ChangeAction::Register,
            key_id: key_id.to_owned(),
            expected_version: 0,
            public_key: hex::encode(public_key.to_bytes()),
            valid_from: None,
            grace_ms: None,
            replaced_by: None,
            reason: None,
            owner: None,
            environment: None,
            not_after: None,
        }
    }

    /// One line for people: what approving this change does.
    pub fn describe(&self) -> String {
        let time = |t: Option<i64>| t.and_then(format_rfc3339).unwrap_or_else(|| "-".into());
        let meta = format!(
            "owner={} environment={} not_after={}",
            self.owner.as_deref().unwrap_or("-"),
            self.environment.as_deref().unwrap_or("-"),
            time(self.not_after)
        );
        match self.action {
            ChangeAction::Register => format!(
                "register {} (ed25519 {}…) {meta}",
                self.key_id,
                &self.public_key[..16.min(self.public_key.len())]
            ),
            ChangeAction::Retire => format!(
                "retire {} (v{}) -> {}, accepted for {} s after approval",
                self.key_id,
                self.expected_version,
                self.replaced_by.as_deref().unwrap_or("-"),
                self.grace_ms.unwrap_or(0) / 1_000
            ),
            ChangeAction::Update => {
                format!("update {} (v{}) {meta}", self.key_id, self.expected_version)
            }
        }
    }
}

/// What the planner signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPlanBody {
    /// [`KEY_PLAN_VERSION`].
    pub version: u32,
    /// Random id of this plan.
    pub plan_id: String,
    /// The keys topic the plan is for.
    pub keys_topic: String,
    /// The statuses to write, in order.
    pub changes: Vec<KeyChange>,
    /// Key ids in the registry that the plan's manifest does not name (left alone).
    pub unmanaged: Vec<String>,
    /// The planner's administrator key id.
    pub planner_key_id: String,
    /// When the plan was made, µs since the epoch.
    pub created_at: TimestampMicros,
}

/// A plan file: the body and the planner's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPlan {
    /// The signed content.
    pub plan: KeyPlanBody,
    /// Ed25519 signature over the context prefix and the canonical body, hex.
    pub signature: String,
}

fn canonical(body: &KeyPlanBody) -> Result<Vec<u8>, KeyPlanError> {
    let mut out = SIGNING_CONTEXT.to_vec();
    serde_json::to_writer(&mut out, body)
        .map_err(|e| refused(format!("serializing the plan: {e}")))?;
    Ok(out)
}

impl KeyPlan {
    /// Signs a plan of `changes` to `keys_topic` as `planner`.
    pub fn create(
        keys_topic: &str,
        changes: Vec<KeyChange>,
        unmanaged: Vec<String>,
        planner: &EventSigner,
        now: TimestampMicros,
    ) -> Result<Self, KeyPlanError> {
        if changes.is_empty() {
            return Err(refused("nothing to change: the registry already matches"));
        }
        let body = KeyPlanBody {
            version: KEY_PLAN_VERSION,
            plan_id: uuid::Uuid::new_v4().to_string(),
            keys_topic: keys_topic.to_owned(),
            changes,
            unmanaged,
            planner_key_id: admin_id(planner).as_str().to_owned(),
            created_at: now,
        };
        let signature = planner.sign(&canonical(&body)?).to_hex();
        Ok(Self {
            plan: body,
            signature,
        })
    }

    /// Reads a plan file (unknown fields refused).
    pub fn read(path: &Path) -> Result<Self, KeyPlanError> {
        let text = std::fs::read(path).map_err(|source| KeyPlanError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&text)
            .map_err(|e| refused(format!("{} is not a key plan: {e}", path.display())))
    }

    /// Writes the plan as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), KeyPlanError> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| refused(format!("serializing the plan: {e}")))?;
        std::fs::write(path, text).map_err(|source| KeyPlanError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Checks that a trusted administrator other than `approver` signed this plan for
    /// `keys_topic` at most `max_age` µs before `now`, and that `approver` is trusted too.
    pub fn verify(
        &self,
        anchors: &TrustAnchors,
        approver: &EventSigner,
        keys_topic: &str,
        now: TimestampMicros,
        max_age: i64,
    ) -> Result<(), KeyPlanError> {
        let body = &self.plan;
        if body.version != KEY_PLAN_VERSION {
            return Err(refused(format!(
                "plan version {} is not {KEY_PLAN_VERSION}",
                body.version
            )));
        }
        let planner = anchors.get(&body.planner_key_id).ok_or_else(|| {
            refused(format!(
                "the planner {} is not a trusted administrator ({})",
                body.planner_key_id,
                anchors.source()
            ))
        })?;
        let sig = hex::decode(&self.signature)
            .ok()
            .and_then(|raw| Signature::from_slice(&raw).ok())
            .ok_or_else(|| refused("the plan's signature is not 64 hex-encoded bytes"))?;
        planner.verify(&canonical(body)?, &sig).map_err(|_| {
            refused("the planner's signature does not match the plan (edited after signing?)")
        })?;
        if !anchors.contains(approver.public_key()) {
            return Err(refused(format!(
                "the approving key {} is not a trusted administrator ({})",
                admin_id(approver),
                anchors.source()
            )));
        }
        if admin_id(approver).as_str() == body.planner_key_id {
            return Err(refused(
                "a plan must be approved by another administrator than its planner",
            ));
        }
        if body.keys_topic != keys_topic {
            return Err(refused(format!(
                "the plan is for {}, not {keys_topic}",
                body.keys_topic
            )));
        }
        let age = now.saturating_sub(body.created_at);
        if age > max_age || age < -60_000_000 {
            return Err(refused(format!(
                "the plan was made {} s ago; plans older than {} s must be made again",
                age / 1_000_000,
                max_age / 1_000_000
            )));
        }
        Ok(())
    }

    /// Returns the statuses to write for an approval by `approver` at `now`, given the status
    /// each key holds now (`current`): refused when any key's version moved since planning.
    pub fn statuses(
        &self,
        current: impl Fn(&str) -> Option<KeyStatus>,
        approver: &EventSigner,
        now: TimestampMicros,
    ) -> Result<Vec<KeyStatus>, KeyPlanError> {
        let body = &self.plan;
        let mut out = Vec::with_capacity(body.changes.len());
        for c in &body.changes {
            KeyId::new(c.key_id.as_str())
                .map_err(|_| refused(format!("invalid key id {:?}", c.key_id)))?;
            let held = current(&c.key_id);
            let held_version = held.as_ref().map_or(0, |s| s.version);
            if held_version != c.expected_version {
                return Err(refused(format!(
                    "{} is at version {held_version}, the plan expects {}: the registry changed \
                     since the plan was made (or the plan was already executed)",
                    c.key_id, c.expected_version
                )));
            }
            let public_key = hex::decode(&c.public_key)
                .ok()
                .and_then(|raw| PublicKey::from_slice(&raw).ok())
                .ok_or_else(|| refused(format!("{}: invalid public key", c.key_id)))?;
            if let Some(h) = &held
                && h.public_key != public_key.to_bytes()
            {
                return Err(refused(format!(
                    "{}: the plan's public key is not the registered one",
                    c.key_id
                )));
            }
            let base = held.unwrap_or_else(|| {
                KeyStatus::active(
                    c.key_id.clone(),
                    &public_key,
                    c.valid_from.unwrap_or(now - DEFAULT_VALID_BEFORE_MICROS),
                    "",
                )
            });
            let mut s = KeyStatus {
                version: c.expected_version + 1,
                updated_at: now,
                updated_by: body.planner_key_id.clone(),
                plan_id: Some(body.plan_id.clone()),
                approved_by: Some(admin_id(approver).as_str().to_owned()),
                owner: c.owner.clone(),
                environment: c.environment.clone(),
                not_after: c.not_after,
                reason: c.reason.clone(),
                emergency: false,
                ..base
            };
            match c.action {
                ChangeAction::Register => {
                    if c.expected_version != 0 {
                        return Err(refused(format!("{} is already registered", c.key_id)));
                    }
                }
                ChangeAction::Retire => {
                    if s.state == KeyState::Revoked {
                        return Err(refused(format!("{} is revoked", c.key_id)));
                    }
                    let grace = i64::try_from(c.grace_ms.unwrap_or(0))
                        .unwrap_or(i64::MAX / 1_000)
                        .saturating_mul(1_000);
                    s.state = KeyState::Rotated;
                    s.grace_until = Some(now.saturating_add(grace));
                    s.replaced_by = c.replaced_by.clone();
                }
                ChangeAction::Update => {
                    if s.state == KeyState::Revoked {
                        return Err(refused(format!("{} is revoked", c.key_id)));
                    }
                }
            }
            out.push(s);
        }
        Ok(out)
    }
}

/// What a key operation event records (its `activity_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyActivity {
    /// A key was registered (an approved plan).
    Registered,
    /// A key's metadata changed (an approved plan).
    Updated,
    /// An approved rotation is being written (before either status).
    RotationStarted,
    /// Both statuses of a rotation were acknowledged.
    RotationCompleted,
    /// A key was revoked (one administrator).
    Revoked,
    /// An unsigned or old status was signed again (`vigil keys adopt`).
    Adopted,
    /// A plan was approved and executed.
    PlanApproved,
}

impl KeyActivity {
    /// The event's `activity_name`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyActivity::Registered => "key_registered",
            KeyActivity::Updated => "key_updated",
            KeyActivity::RotationStarted => "rotation_started",
            KeyActivity::RotationCompleted => "rotation_completed",
            KeyActivity::Revoked => "key_revoked",
            KeyActivity::Adopted => "key_adopted",
            KeyActivity::PlanApproved => "plan_approved",
        }
    }
}

/// Service name in the `producer` of key operation events.
pub const KEY_EVENT_SERVICE: &str = "vigil-keys";

/// The `key_lifecycle` event recording `activity` on `status` by administrator `actor` (who
/// signs it): the subject is the actor (principal) and the key (key id), the attributes the
/// whole status, so the audit trail can rebuild the key history from these events alone.
pub fn key_event(activity: KeyActivity, status: &KeyStatus, actor: &str) -> VerificationEvent {
    let time = |t: Option<TimestampMicros>| t.and_then(format_rfc3339).unwrap_or_default();
    let state = match status.state {
        KeyState::Active => "active",
        KeyState::Rotated => "rotated",
        KeyState::Revoked => "revoked",
    };
    let severity = match (activity, status.emergency) {
        (KeyActivity::Revoked, true) => Severity::High,
        (KeyActivity::Revoked, false) => Severity::Medium,
        _ => Severity::Informational,
    };
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    let mut e = VerificationEvent::new(
        EventClass::KeyLifecycle,
        activity.as_str(),
        Status::Success,
        Producer::new(Platform::Cli, env!("CARGO_PKG_VERSION"), KEY_EVENT_SERVICE),
    )
    .with_severity(severity)
    .with_subject(Subject::principal(actor).with_key_id(status.key_id.clone()))
    .with_message(format!(
        "{} {} v{} ({state}) by {actor}",
        activity.as_str(),
        status.key_id,
        status.version
    ));
    for (k, v) in [
        ("key_id", status.key_id.clone()),
        ("version", status.version.to_string()),
        ("state", state.to_owned()),
        ("public_key", hex::encode(&status.public_key)),
        ("valid_from", time(Some(status.valid_from))),
        ("grace_until", time(status.grace_until)),
        ("revoked_at", time(status.revoked_at)),
        ("not_after", time(status.not_after)),
        ("emergency", status.emergency.to_string()),
        ("reason", text(&status.reason)),
        ("replaced_by", text(&status.replaced_by)),
        ("owner", text(&status.owner)),
        ("environment", text(&status.environment)),
        ("plan_id", text(&status.plan_id)),
        ("planner_key_id", status.updated_by.clone()),
        ("approver_key_id", text(&status.approved_by)),
        ("admin_key_id", actor.to_owned()),
    ] {
        e = e.with_attribute(k, v);
    }
    e
}

/// The `plan_approved` event of `plan`, executed by `approver`.
pub fn plan_event(plan: &KeyPlan, approver: &str) -> VerificationEvent {
    let body = &plan.plan;
    let changes: Vec<String> = body
        .changes
        .iter()
        .map(|c| format!("{}:{}", action_name(c.action), c.key_id))
        .collect();
    VerificationEvent::new(
        EventClass::KeyLifecycle,
        KeyActivity::PlanApproved.as_str(),
        Status::Success,
        Producer::new(Platform::Cli, env!("CARGO_PKG_VERSION"), KEY_EVENT_SERVICE),
    )
    .with_subject(Subject::principal(approver).with_key_id(approver))
    .with_message(format!(
        "plan {} by {} approved by {approver}: {}",
        body.plan_id,
        body.planner_key_id,
        changes.join(", ")
    ))
    .with_attribute("plan_id", body.plan_id.clone())
    .with_attribute("planner_key_id", body.planner_key_id.clone())
    .with_attribute("approver_key_id", approver)
    .with_attribute("changes", changes.join(","))
    .with_attribute(
        "planned_at",
        format_rfc3339(body.created_at).unwrap_or_default(),
    )
}

fn action_name(a: ChangeAction) -> &'static str {
    match a {
        ChangeAction::Register => "register",
        ChangeAction::Retire => "retire",
        ChangeAction::Update => "update",
    }
}

/// The desired keys of a fleet (`vigil keys plan manifest.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyManifest {
    /// One entry per key.
    pub keys: Vec<ManifestKey>,
}

/// One key of a manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestKey {
    /// Key id.
    pub id: String,
    /// SPKI PEM text, or the path of a PEM file relative to the manifest.
    pub public_key: String,
    /// Owning team or service.
    #[serde(default)]
    pub owner: Option<String>,
    /// Deployment environment.
    #[serde(default)]
    pub environment: Option<String>,
    /// Expiry, RFC 3339.
    #[serde(default)]
    pub not_after: Option<String>,
    /// Earliest accepted `occurred_at` for a new key, RFC 3339.
    #[serde(default)]
    pub valid_from: Option<String>,
}

impl KeyManifest {
    /// Reads a YAML manifest.
    pub fn read(path: &Path) -> Result<Self, KeyPlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyPlanError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_yaml::from_str(&text)
            .map_err(|e| refused(format!("{} is not a key manifest: {e}", path.display())))
    }

    /// The changes that make the registry (`current`, every key it holds) match the manifest,
    /// and the registry's key ids the manifest does not name. `base` resolves relative public
    /// key paths.
    pub fn diff(
        &self,
        base: &Path,
        current: &[KeyStatus],
    ) -> Result<(Vec<KeyChange>, Vec<String>), KeyPlanError> {
        let mut changes = Vec::new();
        let mut named = std::collections::BTreeSet::new();
        for k in &self.keys {
            KeyId::new(k.id.as_str()).map_err(|_| refused(format!("invalid key id {:?}", k.id)))?;
            if !named.insert(k.id.as_str()) {
                return Err(refused(format!("{} is listed twice", k.id)));
            }
            let public_key = if k.public_key.contains("-----BEGIN") {
                PublicKey::from_spki_pem(k.public_key.trim())
            } else {
                PublicKey::from_spki_pem_file(base.join(&k.public_key))
            }
            .map_err(|e| refused(format!("{}: public key: {e}", k.id)))?;
            let time = |field: &str, t: &Option<String>| {
                t.as_deref()
                    .map(|t| {
                        parse_rfc3339(t).ok_or_else(|| {
                            refused(format!("{}: {field} {t:?} is not RFC 3339", k.id))
                        })
                    })
                    .transpose()
            };
            let not_after = time("not_after", &k.not_after)?;
            let valid_from = time("valid_from", &k.valid_from)?;
            let mut change = KeyChange {
                owner: k.owner.clone(),
                environment: k.environment.clone(),
                not_after,
                valid_from,
                ..KeyChange::register(&k.id, &public_key)
            };
            match current.iter().find(|s| s.key_id == k.id) {
                None => changes.push(change),
                Some(held) => {
                    if held.public_key != public_key.to_bytes() {
                        return Err(refused(format!(
                            "{}: the manifest's public key differs from the registered one; a \
                             key id keeps its key for life (rotate to a new id)",
                            k.id
                        )));
                    }
                    if held.state == KeyState::Revoked {
                        return Err(refused(format!(
                            "{} is revoked; a revoked key id is not reused",
                            k.id
                        )));
                    }
                    if held.owner != change.owner
                        || held.environment != change.environment
                        || held.not_after != change.not_after
                    {
                        change.action = ChangeAction::Update;
                        change.expected_version = held.version;
                        change.valid_from = Some(held.valid_from);
                        changes.push(change);
                    }
                }
            }
        }
        let unmanaged = current
            .iter()
            .filter(|s| !named.contains(s.key_id.as_str()))
            .map(|s| s.key_id.clone())
            .collect();
        Ok((changes, unmanaged))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn admins() -> (EventSigner, EventSigner, TrustAnchors) {
        let a = EventSigner::from_seed(&[1; 32]);
        let b = EventSigner::from_seed(&[2; 32]);
        let anchors = TrustAnchors::new([*a.public_key(), *b.public_key()]);
        (a, b, anchors)
    }

    fn key(seed: u8) -> PublicKey {
        *EventSigner::from_seed(&[seed; 32]).public_key()
    }

    fn plan(planner: &EventSigner, changes: Vec<KeyChange>) -> KeyPlan {
        KeyPlan::create("vigil.keys", changes, vec![], planner, 10 * HOUR).unwrap()
    }

    #[test]
    fn another_administrator_approves_and_the_statuses_name_both() {
        let (a, b, anchors) = admins();
        let p = plan(&a, vec![KeyChange::register("k1", &key(7))]);
        p.verify(&anchors, &b, "vigil.keys", 11 * HOUR, 24 * HOUR)
            .unwrap();
        let s = p.statuses(|_| None, &b, 11 * HOUR).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].version, 1);
        assert_eq!(s[0].state, KeyState::Active);
        assert_eq!(s[0].valid_from, 10 * HOUR);
        assert_eq!(s[0].updated_by, admin_id(&a).as_str());
        assert_eq!(s[0].approved_by.as_deref(), Some(admin_id(&b).as_str()));
        assert_eq!(s[0].plan_id.as_deref(), Some(p.plan.plan_id.as_str()));
        // Executed once: the key is now at version 1, the plan expects 0.
        let held = s[0].clone();
        assert!(p.statuses(|_| Some(held.clone()), &b, 11 * HOUR).is_err());
    }

    #[test]
    fn self_approval_strangers_tampering_age_and_topic_are_refused() {
        let (a, b, anchors) = admins();
        let p = plan(&a, vec![KeyChange::register("k1", &key(7))]);
        let err = |r: Result<(), KeyPlanError>| r.unwrap_err().to_string();
        assert!(err(p.verify(&anchors, &a, "vigil.keys", 10 * HOUR, HOUR)).contains("another"));
        let stranger = EventSigner::from_seed(&[3; 32]);
        assert!(
            err(p.verify(&anchors, &stranger, "vigil.keys", 10 * HOUR, HOUR))
                .contains("not a trusted")
        );
        let by_stranger = plan(&stranger, vec![KeyChange::register("k1", &key(7))]);
        assert!(
            err(by_stranger.verify(&anchors, &b, "vigil.keys", 10 * HOUR, HOUR))
                .contains("planner")
        );
        let mut tampered = p.clone();
        tampered.plan.changes[0].public_key = hex::encode(key(8).to_bytes());
        assert!(
            err(tampered.verify(&anchors, &b, "vigil.keys", 10 * HOUR, HOUR)).contains("edited")
        );
        assert!(err(p.verify(&anchors, &b, "vigil.keys", 12 * HOUR, HOUR)).contains("older"));
        assert!(err(p.verify(&anchors, &b, "other.keys", 10 * HOUR, HOUR)).contains("other.keys"));
    }

    #[test]
    fn a_rotation_retires_the_old_key_with_its_grace_from_approval() {
        let (a, b, _) = admins();
        let old = KeyStatus {
            version: 3,
            ..KeyStatus::active("k1", &key(7), 0, "x")
        };
        let retire = KeyChange {
            action: ChangeAction::Retire,
            expected_version: 3,
            grace_ms: Some(60_000),
            replaced_by: Some("k2".into()),
            ..KeyChange::register("k1", &key(7))
        };
        let p = plan(&a, vec![KeyChange::register("k2", &key(8)), retire]);
        let held = old.clone();
        let s = p
            .statuses(move |id| (id == "k1").then(|| held.clone()), &b, 11 * HOUR)
            .unwrap();
        assert_eq!(s[0].key_id, "k2");
        assert_eq!(s[1].state, KeyState::Rotated);
        assert_eq!(s[1].version, 4);
        assert_eq!(s[1].grace_until, Some(11 * HOUR + 60_000_000));
        assert_eq!(s[1].replaced_by.as_deref(), Some("k2"));
    }

    #[test]
    fn a_manifest_registers_new_keys_updates_metadata_and_refuses_key_swaps() {
        let pem = |seed| key(seed).to_spki_pem().unwrap();
        let m: KeyManifest = serde_yaml::from_str(&format!(
            "keys:\n  - id: new\n    public_key: |\n{}\n    owner: payments\n  - id: held\n    public_key: |\n{}\n    environment: prod\n    not_after: 2027-01-01T00:00:00Z\n  - id: same\n    public_key: |\n{}\n",
            indent(&pem(1)),
            indent(&pem(2)),
            indent(&pem(3))
        ))
        .unwrap();
        let current = vec![
            KeyStatus {
                version: 2,
                ..KeyStatus::active("held", &key(2), 5, "x")
            },
            KeyStatus::active("same", &key(3), 5, "x"),
            KeyStatus::active("other", &key(4), 5, "x"),
        ];
        let (changes, unmanaged) = m.diff(Path::new("."), &current).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].action, ChangeAction::Register);
        assert_eq!(changes[0].owner.as_deref(), Some("payments"));
        assert_eq!(changes[1].action, ChangeAction::Update);
        assert_eq!(changes[1].expected_version, 2);
        assert!(changes[1].not_after.is_some());
        assert_eq!(unmanaged, vec!["other".to_owned()]);
        let swapped = vec![KeyStatus::active("new", &key(9), 5, "x")];
        assert!(
            m.diff(Path::new("."), &swapped)
                .unwrap_err()
                .to_string()
                .contains("for life")
        );
    }

    fn indent(text: &str) -> String {
        text.lines()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
