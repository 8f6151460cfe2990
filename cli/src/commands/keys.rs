//! `vigil keys`: the key registry in the compacted `vigil.keys` topic, under maker-checker.
//!
//! Registering and rotating a key (one key, or a fleet from a manifest) writes a plan signed by
//! one administrator (`register`, `rotate`, `plan` with `--admin-key` and `--out`); `approve`
//! executes it with a different administrator's key. Revocation takes effect at once with one
//! administrator's key. `adopt` re-signs an unsigned registry (migration). Every record is
//! signed by the administrator who wrote it, keyed by key id, sent with an idempotent producer,
//! and acknowledged by the broker before the command returns. Administrators are the trust
//! anchors of `--trust-anchors`, as every reader of the registry is configured.
//!
//! Every operation is also recorded as a `key_lifecycle` event on the raw topic, signed by the
//! administrator who did it (`vigil_consumer::key_plan::key_event`), after its status was
//! acknowledged: a rotation as `rotation_started` before its two statuses and
//! `rotation_completed` after them, an approval as `plan_approved`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rdkafka::producer::FutureProducer;
use vigil_consumer::key_plan::{
    ChangeAction, KeyActivity, KeyChange, KeyManifest, KeyPlan, key_event, plan_event,
};
use vigil_consumer::key_registry::{
    KeyRegistry, KeyRegistryConfig, KeyStatusWriter, KeyView, accepted_at,
};
use vigil_schemas::admin::admin_id;
use vigil_schemas::model::{format_rfc3339, now_micros, parse_rfc3339};
use vigil_schemas::{
    EventSigner, KeyId, KeyState, KeyStatus, PublicKey, RecordSigner, SchemaRegistry, TrustAnchors,
    VerificationEvent,
};
use vigil_topology::KafkaClientConfig;

/// How long a command waits to read the registry before acting on it.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `vigil keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    command: KeysCommand,
    /// The compacted key registry topic.
    #[arg(
        long,
        global = true,
        env = "VIGIL_KEYS_TOPIC",
        default_value = "vigil.keys"
    )]
    topic: String,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        global = true,
        env = "VIGIL_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Schema registry URL.
    #[arg(
        long,
        global = true,
        env = "VIGIL_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    schema_registry: String,
    /// Administrator public keys (SPKI PEM file or folder): whose records are trusted, and who
    /// may plan, approve and revoke.
    #[arg(long, global = true, env = "VIGIL_TRUST_ANCHORS")]
    trust_anchors: Option<PathBuf>,
    /// The raw events topic the key operation events are written to.
    #[arg(
        long,
        global = true,
        env = "VIGIL_RAW_TOPIC",
        default_value = "vigil.events.raw"
    )]
    raw_topic: String,
}

/// Lifecycle metadata of a key.
#[derive(Debug, Args)]
struct Metadata {
    /// Team or service owning the key.
    #[arg(long)]
    owner: Option<String>,
    /// Deployment environment (prod, staging...).
    #[arg(long)]
    environment: Option<String>,
    /// Expiry (RFC 3339): events that occurred after it are rejected as expired.
    #[arg(long)]
    not_after: Option<String>,
}

/// Who plans, and where the signed plan goes.
#[derive(Debug, Args)]
struct Planner {
    /// The planning administrator's Ed25519 key (PKCS#8 PEM).
    #[arg(long)]
    admin_key: PathBuf,
    /// Where to write the signed plan.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Plans the registration of a new active key (approve with `vigil keys approve`).
    Register {
        /// Key id, as producers send it in `vigil-key-id`.
        #[arg(long)]
        key_id: String,
        /// Ed25519 public key, SPKI PEM (`openssl pkey -pubout`).
        #[arg(long)]
        public_key: PathBuf,
        /// Earliest accepted `occurred_at` (RFC 3339); default: one hour before approval.
        #[arg(long)]
        valid_from: Option<String>,
        #[command(flatten)]
        metadata: Metadata,
        #[command(flatten)]
        planner: Planner,
    },
    /// Plans a rotation: the new key becomes active, the old one is accepted until the grace
    /// ends (counted from approval).
    Rotate {
        /// The key being replaced.
        #[arg(long)]
        key_id: String,
        /// Id of the new key.
        #[arg(long)]
        new_key_id: String,
        /// The new key's Ed25519 public key, SPKI PEM.
        #[arg(long)]
        public_key: PathBuf,
        /// How long the old key stays accepted: `24h`, `30m`, `90s`, `7d`.
        #[arg(long, value_parser = parse_grace)]
        grace: Duration,
        /// Why the key is rotated.
        #[arg(long)]
        reason: Option<String>,
        /// The new key's metadata (default: the old key's).
        #[command(flatten)]
        metadata: Metadata,
        #[command(flatten)]
        planner: Planner,
    },
    /// Plans the changes that make the registry match a manifest of a fleet's keys; prints
    /// the difference.
    Plan {
        /// YAML: `keys: [{id, public_key (PEM text or file), owner, environment, not_after}]`.
        manifest: PathBuf,
        #[command(flatten)]
        planner: Planner,
    },
    /// Shows a plan's changes and executes them, signed by a second administrator.
    Approve {
        /// The plan file.
        plan: PathBuf,
        /// The approving administrator's Ed25519 key (PKCS#8 PEM); not the planner's.
        #[arg(long)]
        admin_key: PathBuf,
        /// Oldest plan accepted: `24h`, `30m`, `7d`.
        #[arg(long, value_parser = parse_grace, default_value = "24h")]
        max_age: Duration,
        /// Check and show the plan without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Revokes a key at once: events occurring from now on are rejected (`--emergency`: all).
    Revoke {
        /// The key to revoke.
        #[arg(long)]
        key_id: String,
        /// Why (kept in the registry and shown in rejections).
        #[arg(long)]
        reason: String,
        /// The key is compromised: reject every event signed with it, whatever its time.
        #[arg(long)]
        emergency: bool,
        /// The revoking administrator's Ed25519 key (PKCS#8 PEM).
        #[arg(long)]
        admin_key: PathBuf,
    },
    /// Re-signs the registry's unsigned statuses (migration to a signed registry), or with
    /// `--all` every status (a new administrator taking over, a replayed record to supersede):
    /// prints them, and with `--yes` writes each one again, unchanged but for its version,
    /// signed by `--admin-key`.
    Adopt {
        /// The adopting administrator's Ed25519 key (PKCS#8 PEM).
        #[arg(long)]
        admin_key: PathBuf,
        /// Every status, signed ones too, not only the unsigned ones.
        #[arg(long)]
        all: bool,
        /// The statuses printed have been checked: sign them.
        #[arg(long)]
        yes: bool,
    },
    /// Prints every key with its state.
    List {
        /// Only keys still accepted whose `not_after` is within this window (`14d`).
        #[arg(long, value_parser = parse_grace)]
        expiring: Option<Duration>,
    },
}

/// Parses `24h`, `30m`, `90s` or `7d`.
fn parse_grace(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: missing unit (s, m, h or d)"))?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a number followed by s, m, h or d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3_600),
        "d" => n.saturating_mul(86_400),
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use s, m, h or d)"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

/// Runs `vigil keys`.
pub async fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let mut kafka = KafkaClientConfig::new(args.bootstrap.clone());
    kafka.client_id = "vigil-keys".into();
    let anchors = Arc::new(load_anchors(args.trust_anchors.as_deref())?);
    let ctx = Ctx {
        args: &args,
        kafka,
        anchors,
    };
    match &args.command {
        KeysCommand::List { expiring } => {
            let registry = ctx.load(false).await?;
            let now = now_micros();
            let keys: Vec<Arc<KeyView>> = registry
                .snapshot()
                .into_iter()
                .filter(|v| expiring.is_none_or(|w| expires_within(&v.status, now, w)))
                .collect();
            print_table(&keys);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Register {
            key_id,
            public_key,
            valid_from,
            metadata,
            planner,
        } => {
            KeyId::new(key_id.as_str()).context("invalid --key-id")?;
            let key = read_key(public_key)?;
            let (out, planner) = (&planner.out, ctx.admin(&planner.admin_key)?);
            let registry = ctx.load(false).await?;
            if let Some(existing) = registry.get(key_id) {
                eprintln!(
                    "key {key_id} already exists ({}); use `vigil keys rotate` to replace it",
                    state_name(&existing)
                );
                return Ok(ExitCode::FAILURE);
            }
            let change = KeyChange {
                valid_from: valid_from
                    .as_deref()
                    .map(rfc3339("--valid-from"))
                    .transpose()?,
                ..metadata.apply(KeyChange::register(key_id, &key))?
            };
            ctx.write_plan(vec![change], Vec::new(), &planner, out)
        }
        KeysCommand::Rotate {
            key_id,
            new_key_id,
            public_key,
            grace,
            reason,
            metadata,
            planner,
        } => {
            KeyId::new(new_key_id.as_str()).context("invalid --new-key-id")?;
            let key = read_key(public_key)?;
            let (out, planner) = (&planner.out, ctx.admin(&planner.admin_key)?);
            let registry = ctx.load(false).await?;
            let Some(old) = registry.get(key_id) else {
                eprintln!("key {key_id} is not registered");
                return Ok(ExitCode::FAILURE);
            };
            if old.status.state == KeyState::Revoked {
                eprintln!("key {key_id} is revoked; register the new key instead");
                return Ok(ExitCode::FAILURE);
            }
            if registry.get(new_key_id).is_some() {
                eprintln!("key {new_key_id} already exists");
                return Ok(ExitCode::FAILURE);
            }
            let o = &old.status;
            let inherited = KeyChange {
                owner: o.owner.clone(),
                environment: o.environment.clone(),
                not_after: o.not_after,
                reason: reason.clone(),
                ..KeyChange::register(new_key_id, &key)
            };
            // The new key is valid from an hour before the approval, as a registration: its
            // producer may start signing before the approval reaches every verifier.
            let new = KeyChange {
                valid_from: None,
                ..metadata.apply(inherited)?
            };
            let retire = KeyChange {
                action: ChangeAction::Retire,
                expected_version: o.version,
                grace_ms: Some(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX)),
                replaced_by: Some(new_key_id.clone()),
                reason: reason.clone().or(Some("rotated".into())),
                owner: o.owner.clone(),
                environment: o.environment.clone(),
                not_after: o.not_after,
                valid_from: Some(o.valid_from),
                ..KeyChange::register(key_id, &old.public_key)
            };
            ctx.write_plan(vec![new, retire], Vec::new(), &planner, out)
        }
        KeysCommand::Plan { manifest, planner } => {
            let m = KeyManifest::read(manifest)?;
            let (out, planner) = (&planner.out, ctx.admin(&planner.admin_key)?);
            let registry = ctx.load(false).await?;
            let current: Vec<KeyStatus> = registry
                .snapshot()
                .iter()
                .map(|v| v.status.clone())
                .collect();
            let base = manifest.parent().unwrap_or(Path::new("."));
            let (changes, unmanaged) = m.diff(base, &current)?;
            for id in &unmanaged {
                println!("  unmanaged {id} (in the registry, not in the manifest: left alone)");
            }
            if changes.is_empty() {
                println!("the registry matches {}", manifest.display());
                return Ok(ExitCode::SUCCESS);
            }
            ctx.write_plan(changes, unmanaged, &planner, out)
        }
        KeysCommand::Approve {
            plan,
            admin_key,
            max_age,
            dry_run,
        } => {
            let plan = KeyPlan::read(plan)?;
            let approver = ctx.admin(admin_key)?;
            let now = now_micros();
            let max_age = i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX);
            plan.verify(&ctx.anchors, &approver, &args.topic, now, max_age)?;
            println!(
                "plan {} by {}, made {}:",
                plan.plan.plan_id,
                plan.plan.planner_key_id,
                format_rfc3339(plan.plan.created_at).unwrap_or_default()
            );
            for c in &plan.plan.changes {
                println!("  {}", c.describe());
            }
            let registry = ctx.load(false).await?;
            let statuses = plan.statuses(
                |id| registry.get(id).map(|v| v.status.clone()),
                &approver,
                now,
            )?;
            if *dry_run {
                println!("dry run: nothing written");
                return Ok(ExitCode::SUCCESS);
            }
            let approver_id = admin_id(&approver).as_str().to_owned();
            let events = ctx.events(&approver).await?;
            let writer = ctx.writer(approver).await?;
            execute(&plan, &statuses, &writer, &events).await?;
            println!(
                "approved by {approver_id}: {} statuses written",
                statuses.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke {
            key_id,
            reason,
            emergency,
            admin_key,
        } => {
            let admin = ctx.admin(admin_key)?;
            // An emergency is measured from the moment the command starts: read the registry
            // and prepare both producers at once.
            let (registry, events, writer) = tokio::try_join!(
                ctx.load(false),
                ctx.events(&admin),
                ctx.writer(admin.clone())
            )?;
            let Some(old) = registry.get(key_id) else {
                eprintln!("key {key_id} is not registered");
                return Ok(ExitCode::FAILURE);
            };
            let now = now_micros();
            let revoked = KeyStatus {
                state: KeyState::Revoked,
                revoked_at: Some(now),
                reason: Some(reason.clone()),
                emergency: *emergency,
                updated_at: now,
                updated_by: admin_id(&admin).as_str().to_owned(),
                version: old.status.version + 1,
                plan_id: None,
                approved_by: None,
                ..old.status.clone()
            };
            let actor = admin_id(&admin).as_str().to_owned();
            writer.write(&revoked).await?;
            events
                .send(&key_event(KeyActivity::Revoked, &revoked, &actor))
                .await?;
            println!(
                "revoked {key_id}{}",
                if *emergency {
                    " (emergency: every event rejected)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Adopt {
            admin_key,
            all,
            yes,
        } => {
            let admin = ctx.admin(admin_key)?;
            // Re-signing everything reads only what is already trusted; the migration reads the
            // unsigned statuses too, for the operator to check.
            let registry = ctx.load(!*all).await?;
            let unsigned: Vec<Arc<KeyView>> = registry
                .snapshot()
                .into_iter()
                .filter(|v| *all || v.signed_by.is_none())
                .collect();
            if unsigned.is_empty() {
                println!("every status in {} is signed: nothing to adopt", args.topic);
                return Ok(ExitCode::SUCCESS);
            }
            print_table(&unsigned);
            if !yes {
                eprintln!(
                    "{} statuses above; check them, then run again with --yes to sign them as {}",
                    unsigned.len(),
                    admin_id(&admin)
                );
                return Ok(ExitCode::FAILURE);
            }
            let now = now_micros();
            let updated_by = admin_id(&admin).as_str().to_owned();
            let events = ctx.events(&admin).await?;
            let writer = ctx.writer(admin).await?;
            for v in &unsigned {
                let adopted = KeyStatus {
                    version: v.status.version.max(0) + 1,
                    updated_at: now,
                    updated_by: updated_by.clone(),
                    ..v.status.clone()
                };
                writer.write(&adopted).await?;
                events
                    .send(&key_event(KeyActivity::Adopted, &adopted, &updated_by))
                    .await?;
            }
            println!(
                "adopted {} statuses, signed by {updated_by}",
                unsigned.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What every subcommand needs.
struct Ctx<'a> {
    args: &'a KeysArgs,
    kafka: KafkaClientConfig,
    anchors: Arc<TrustAnchors>,
}

impl Ctx<'_> {
    /// Reads the whole registry (with `accept_unsigned`: unsigned statuses too, for `adopt`).
    async fn load(&self, accept_unsigned: bool) -> anyhow::Result<Arc<KeyRegistry>> {
        let topic = &self.args.topic;
        let (registry, task) = KeyRegistry::start(
            &KeyRegistryConfig {
                topic: topic.clone(),
                schema_registry_url: self.args.schema_registry.clone(),
                anchors: self.anchors.clone(),
                accept_unsigned,
            },
            &self.kafka,
            None,
        )
        .await
        .with_context(|| format!("reading {topic} (does it exist? `vigil topology apply`)"))?;
        let loaded = registry.wait_loaded(LOAD_TIMEOUT).await;
        task.abort();
        loaded.with_context(|| format!("reading {topic}"))?;
        Ok(registry)
    }

    /// Reads an administrator's private key and checks it is a trust anchor.
    fn admin(&self, path: &Path) -> anyhow::Result<EventSigner> {
        let admin = EventSigner::from_pkcs8_pem_file(path)
            .with_context(|| format!("reading administrator key {}", path.display()))?;
        if !self.anchors.contains(admin.public_key()) {
            bail!(
                "{} ({}) is not a trusted administrator: its public key is not in {}",
                path.display(),
                admin_id(&admin),
                self.anchors.source()
            );
        }
        Ok(admin)
    }

    /// A writer of key operation events signed by `admin` to the raw topic.
    async fn events(&self, admin: &EventSigner) -> anyhow::Result<KeyEvents> {
        KeyEvents::new(
            &self.args.schema_registry,
            &self.kafka,
            &self.args.raw_topic,
            admin,
        )
        .await
    }

    async fn writer(&self, admin: EventSigner) -> anyhow::Result<KeyStatusWriter> {
        KeyStatusWriter::new(
            &self.args.topic,
            &self.args.schema_registry,
            &self.kafka,
            admin,
        )
        .await
        .context("preparing the key status producer")
    }

    fn write_plan(
        &self,
        changes: Vec<KeyChange>,
        unmanaged: Vec<String>,
        planner: &EventSigner,
        out: &Path,
    ) -> anyhow::Result<ExitCode> {
        let plan = KeyPlan::create(&self.args.topic, changes, unmanaged, planner, now_micros())?;
        plan.write(out)?;
        for c in &plan.plan.changes {
            println!("  {}", c.describe());
        }
        println!(
            "planned {} ({} changes) as {}; another administrator runs `vigil keys approve {}`",
            plan.plan.plan_id,
            plan.plan.changes.len(),
            plan.plan.planner_key_id,
            out.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Writes an approved plan: its statuses (signed by `writer`'s administrator, the approver)
/// and their key operation events, a rotation between `rotation_started` and
/// `rotation_completed`, then `plan_approved`.
pub(crate) async fn execute(
    plan: &KeyPlan,
    statuses: &[KeyStatus],
    writer: &KeyStatusWriter,
    events: &KeyEvents,
) -> anyhow::Result<()> {
    let approver = writer.admin_id();
    let changes = &plan.plan.changes;
    let retired: Vec<&KeyStatus> = changes
        .iter()
        .zip(statuses)
        .filter(|(c, _)| c.action == ChangeAction::Retire)
        .map(|(_, s)| s)
        .collect();
    for s in &retired {
        events
            .send(&key_event(KeyActivity::RotationStarted, s, &approver))
            .await?;
    }
    for (c, s) in changes.iter().zip(statuses) {
        writer.write(s).await?;
        let activity = match c.action {
            ChangeAction::Register => KeyActivity::Registered,
            ChangeAction::Update => KeyActivity::Updated,
            ChangeAction::Retire => continue,
        };
        events.send(&key_event(activity, s, &approver)).await?;
    }
    for s in &retired {
        events
            .send(&key_event(KeyActivity::RotationCompleted, s, &approver))
            .await?;
    }
    events.send(&plan_event(plan, &approver)).await
}

/// Writes key operation events to the raw topic, signed by one administrator.
pub(crate) struct KeyEvents {
    producer: FutureProducer,
    signer: RecordSigner,
    topic: String,
}

impl KeyEvents {
    /// Registers the event schema under `topic`'s subject and builds a producer whose events
    /// `admin` signs (as its administrator id).
    pub(crate) async fn new(
        schema_registry_url: &str,
        kafka: &KafkaClientConfig,
        topic: &str,
        admin: &EventSigner,
    ) -> anyhow::Result<Self> {
        let schema = SchemaRegistry::new(schema_registry_url)?
            .register(
                &vigil_schemas::topics::value_subject(topic),
                vigil_schemas::schema::VERIFICATION_EVENT_AVSC,
            )
            .await
            .with_context(|| format!("registering the event schema of {topic}"))?;
        let signer = admin.clone().with_key_id(admin_id(admin));
        let mut config = kafka.producer();
        config
            .set("linger.ms", "0")
            .set("message.timeout.ms", "30000");
        Ok(KeyEvents {
            producer: config.create().context("creating the key event producer")?,
            signer: RecordSigner::new(signer, schema)?,
            topic: topic.to_owned(),
        })
    }

    /// Signs `event` and returns once the broker acknowledged it.
    pub(crate) async fn send(&self, event: &VerificationEvent) -> anyhow::Result<()> {
        let record = self.signer.sign(event)?;
        super::send_signed(
            &self.producer,
            &self.topic,
            &record,
            Duration::from_secs(30),
        )
        .await
        .context("writing the key operation event")
    }
}

impl Metadata {
    /// `change` with the metadata given on the command line replacing its own.
    fn apply(&self, change: KeyChange) -> anyhow::Result<KeyChange> {
        Ok(KeyChange {
            owner: self.owner.clone().or(change.owner),
            environment: self.environment.clone().or(change.environment),
            not_after: match &self.not_after {
                Some(t) => Some(rfc3339("--not-after")(t)?),
                None => change.not_after,
            },
            ..change
        })
    }
}

fn rfc3339(option: &'static str) -> impl Fn(&str) -> anyhow::Result<i64> {
    move |t| parse_rfc3339(t).with_context(|| format!("{option} {t:?} is not RFC 3339"))
}

fn load_anchors(path: Option<&Path>) -> anyhow::Result<TrustAnchors> {
    let path = path.context(
        "--trust-anchors (or VIGIL_TRUST_ANCHORS) is required: the PEM file or folder of \
         administrator public keys that sign the key registry",
    )?;
    TrustAnchors::load(path).context("reading --trust-anchors")
}

/// Whether a key still accepted at `now` reaches its `not_after` within `window`.
fn expires_within(s: &KeyStatus, now: i64, window: Duration) -> bool {
    let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    accepted_at(s, now) && s.not_after.is_some_and(|t| t.saturating_sub(now) <= window)
}

fn read_key(path: &PathBuf) -> anyhow::Result<PublicKey> {
    PublicKey::from_spki_pem_file(path)
        .with_context(|| format!("reading public key {}", path.display()))
}

fn state_name(v: &KeyView) -> &'static str {
    match (v.status.state, v.status.emergency) {
        (KeyState::Active, _) => "active",
        (KeyState::Rotated, _) => "rotated",
        (KeyState::Revoked, false) => "revoked",
        (KeyState::Revoked, true) => "revoked!",
    }
}

fn print_table(keys: &[Arc<KeyView>]) {
    let time = |t: Option<i64>| t.and_then(format_rfc3339).unwrap_or_else(|| "-".into());
    let text = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<[String; 11]> = keys
        .iter()
        .map(|v| {
            let s = &v.status;
            [
                s.key_id.clone(),
                state_name(v).to_owned(),
                s.version.to_string(),
                time(Some(s.valid_from)),
                time(s.grace_until),
                time(s.revoked_at),
                time(s.not_after),
                text(&s.owner),
                text(&s.environment),
                text(&v.signed_by),
                text(&s.reason),
            ]
        })
        .collect();
    let header = [
        "KEY_ID",
        "STATE",
        "VERSION",
        "VALID_FROM",
        "GRACE_UNTIL",
        "REVOKED_AT",
        "NOT_AFTER",
        "OWNER",
        "ENVIRONMENT",
        "SIGNED_BY",
        "REASON",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grace_accepts_hours_minutes_seconds_and_days() {
        assert_eq!(parse_grace("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_grace("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_grace("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_grace("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "24", "h", "5w", "-1h", "1.5h"] {
            assert!(parse_grace(bad).is_err(), "{bad}");
        }
    }
}
