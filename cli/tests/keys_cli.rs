#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! `vigil keys` through the built binary, against the real broker and schema registry. Every
//! test uses its own compacted keys topic (`--topic`), so tests run in parallel on the shared
//! stack; keys are generated with `openssl`, as an operator would. Two administrators, alice and
//! bob, are the trust anchors: alice plans, bob approves; mallory's key is not trusted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vigil_schemas::KeyStatus;
use vigil_schemas::model::{now_micros, parse_rfc3339};

const HOUR_US: i64 = 3_600_000_000;

/// One test's keys topic, key directory and administrators.
struct Env {
    topic: String,
    raw: String,
    dir: tempfile::TempDir,
    anchors: PathBuf,
    alice: PathBuf,
    bob: PathBuf,
    mallory: PathBuf,
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let topic = vigil_test_support::unique_name(prefix);
        vigil_test_support::create_compacted_topic(&topic).await;
        let raw = vigil_test_support::unique_name(&format!("{prefix}-raw"));
        vigil_test_support::create_topic(&raw, 1).await;
        let dir = tempfile::tempdir().unwrap();
        let key = |name: &str| {
            let private = dir.path().join(format!("{name}.pem"));
            let public = dir.path().join(format!("{name}.pub.pem"));
            openssl_pair(&private, &public);
            (private, public)
        };
        let (alice, alice_pub) = key("alice");
        let (bob, bob_pub) = key("bob");
        let (mallory, _) = key("mallory");
        let anchors = dir.path().join("admins.pem");
        let text = [alice_pub, bob_pub]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>();
        std::fs::write(&anchors, text).unwrap();
        Env {
            topic,
            raw,
            dir,
            anchors,
            alice,
            bob,
            mallory,
        }
    }

    /// Runs `vigil keys <args> --topic <topic> --trust-anchors <alice and bob>`.
    fn vigil(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("keys")
            .args(args)
            .args([
                "--topic",
                &self.topic,
                "--trust-anchors",
                path(&self.anchors),
                "--raw-topic",
                &self.raw,
            ])
            .env(
                "VIGIL_KAFKA_BOOTSTRAP",
                vigil_test_support::kafka_bootstrap(),
            )
            .env(
                "VIGIL_SCHEMA_REGISTRY_URL",
                vigil_test_support::schema_registry_url(),
            )
            .env_remove("VIGIL_KEYS_TOPIC")
            .output()
            .expect("running vigil")
    }

    /// Generates an Ed25519 key pair with openssl and returns the public key's SPKI PEM path.
    fn openssl_key(&self, name: &str) -> PathBuf {
        let private = self.dir.path().join(format!("{name}.pem"));
        let public = self.dir.path().join(format!("{name}.pub.pem"));
        openssl_pair(&private, &public);
        public
    }

    fn plan_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.plan.json"))
    }

    /// `args` with `--admin-key <admin>` (and `--out <plan>` when given) appended.
    fn as_admin(&self, args: &[&str], admin: &Path, out: Option<&Path>) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--admin-key", path(admin)]);
        if let Some(out) = out {
            all.extend(["--out", path(out)]);
        }
        self.vigil(&all)
    }

    /// Alice plans `args` (register, rotate, plan) into a plan file; returns the command's
    /// output and the plan's path.
    fn plan(&self, args: &[&str]) -> (Output, PathBuf) {
        let plan = self.plan_path(&format!("p{}", rand_suffix()));
        (self.as_admin(args, &self.alice, Some(&plan)), plan)
    }

    /// `vigil keys approve <plan>` as `admin`.
    fn approve(&self, plan: &Path, admin: &Path) -> Output {
        self.as_admin(&["approve", path(plan)], admin, None)
    }

    /// Alice plans `args`, bob approves; returns both outputs' stdout.
    fn planned_and_approved(&self, args: &[&str]) -> String {
        let (planned, plan) = self.plan(args);
        let mut out = ok(&planned);
        out.push_str(&ok(&self.approve(&plan, &self.bob)));
        out
    }

    fn register(&self, key_id: &str, public: &Path) -> Output {
        let (planned, plan) =
            self.plan(&["register", "--key-id", key_id, "--public-key", path(public)]);
        if !planned.status.success() {
            return planned;
        }
        self.approve(&plan, &self.bob)
    }

    fn revoke(&self, args: &[&str]) -> Output {
        let mut all = vec!["revoke"];
        all.extend_from_slice(args);
        self.as_admin(&all, &self.alice, None)
    }

    /// Runs `vigil keys list` and returns its rows by key id (header checked).
    fn list(&self) -> Vec<Row> {
        self.list_with(&["list"])
    }

    fn list_with(&self, args: &[&str]) -> Vec<Row> {
        let text = ok(&self.vigil(args));
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            [
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
                "REASON"
            ],
            "{text}"
        );
        lines.map(Row::parse).collect()
    }

    fn row(&self, key_id: &str) -> Row {
        let rows = self.list();
        rows.iter()
            .find(|r| r.key_id == key_id)
            .cloned()
            .unwrap_or_else(|| panic!("{key_id} not listed: {rows:?}"))
    }
}

/// One line of `vigil keys list`.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    key_id: String,
    state: String,
    version: i64,
    valid_from: Option<i64>,
    grace_until: Option<i64>,
    revoked_at: Option<i64>,
    not_after: Option<i64>,
    owner: String,
    environment: String,
    signed_by: String,
    reason: String,
}

impl Row {
    fn parse(line: &str) -> Row {
        // Ten single-token columns, then the reason (which may hold spaces).
        let mut rest = line;
        let mut cols = Vec::new();
        for _ in 0..10 {
            let trimmed = rest.trim_start();
            let end = trimmed
                .find(' ')
                .unwrap_or_else(|| panic!("short list line {line:?}"));
            cols.push(&trimmed[..end]);
            rest = &trimmed[end..];
        }
        let time = |c: &str| {
            (c != "-").then(|| {
                parse_rfc3339(c).unwrap_or_else(|| panic!("{c:?} in {line:?} is not RFC 3339"))
            })
        };
        Row {
            key_id: cols[0].to_owned(),
            state: cols[1].to_owned(),
            version: cols[2].parse().unwrap(),
            valid_from: time(cols[3]),
            grace_until: time(cols[4]),
            revoked_at: time(cols[5]),
            not_after: time(cols[6]),
            owner: cols[7].to_owned(),
            environment: cols[8].to_owned(),
            signed_by: cols[9].to_owned(),
            reason: rest.trim().to_owned(),
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn rand_suffix() -> String {
    vigil_test_support::unique_name("x")
}

fn openssl_pair(private: &Path, public: &Path) {
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", path(private)]);
    openssl(&[
        "pkey",
        "-in",
        path(private),
        "-pubout",
        "-out",
        path(public),
    ]);
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "vigil failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn refused(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    stderr
}

fn near(actual: Option<i64>, want: i64, tolerance: i64) {
    let a = actual.unwrap_or_else(|| panic!("missing time, want about {want}"));
    assert!(
        (a - want).abs() <= tolerance,
        "{a} not within {tolerance} us of {want}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_refuses_a_second_registration_and_list_shows_every_column() {
    let env = Env::new("cli-keys-reg").await;
    let a = env.openssl_key("a");
    let b = env.openssl_key("b");
    assert!(env.list().is_empty(), "a fresh topic has no keys");

    let before = now_micros();
    let out = ok(&env.register("k-a", &a));
    assert!(out.contains("1 statuses written"), "{out}");

    let second = env.register("k-a", &b);
    refused(&second, "key k-a already exists (active)");
    assert_eq!(second.status.code(), Some(1), "a refusal exits 1");

    let row = env.row("k-a");
    assert_eq!((row.state.as_str(), row.version), ("active", 1));
    assert!(row.signed_by.starts_with("ed25519-"), "{row:?}");
    // Default valid_from: one hour before the command (the list prints whole seconds).
    near(row.valid_from, before - HOUR_US, 5_000_000);
    assert_eq!(
        (row.grace_until, row.revoked_at, row.reason.as_str()),
        (None, None, "-")
    );
    assert_eq!(
        env.list().len(),
        1,
        "the refused registration wrote nothing"
    );

    let out = env.planned_and_approved(&[
        "register",
        "--key-id",
        "k-b",
        "--public-key",
        path(&b),
        "--valid-from",
        "2024-01-02T03:04:05Z",
    ]);
    assert!(out.contains("register k-b"), "{out}");
    let row = env.row("k-b");
    assert_eq!(
        (row.state.as_str(), row.valid_from),
        (
            "active",
            Some(parse_rfc3339("2024-01-02T03:04:05Z").unwrap())
        )
    );
    let ids: Vec<String> = env.list().into_iter().map(|r| r.key_id).collect();
    assert_eq!(ids, ["k-a", "k-b"], "list is sorted by key id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_with_grace_keeps_the_old_key_until_the_grace_ends() {
    let env = Env::new("cli-keys-rot").await;
    let old = env.openssl_key("old");
    let new = env.openssl_key("new");
    ok(&env.register("k-old", &old));

    let (planned, plan) = env.plan(&[
        "rotate",
        "--key-id",
        "k-old",
        "--new-key-id",
        "k-new",
        "--public-key",
        path(&new),
        "--grace",
        "24h",
        "--reason",
        "quarterly rotation",
    ]);
    let out = ok(&planned);
    assert!(out.contains("retire k-old (v1) -> k-new"), "{out}");
    assert_eq!(env.row("k-old").state, "active", "a plan changes nothing");
    let before = now_micros();
    let out = ok(&env.approve(&plan, &env.bob));
    let after = now_micros();
    assert!(out.contains("2 statuses written"), "{out}");

    let rows = env.list();
    let old_row = rows.iter().find(|r| r.key_id == "k-old").unwrap();
    assert_eq!(old_row.state, "rotated", "{rows:?}");
    assert_eq!(old_row.reason, "quarterly rotation");
    assert_eq!(old_row.version, 2);
    let grace = old_row.grace_until.unwrap();
    assert!(
        grace >= before + 24 * HOUR_US - 1_000_000 && grace <= after + 24 * HOUR_US,
        "grace_until {grace} not now+24h"
    );
    assert_eq!(old_row.revoked_at, None);
    let new_row = rows.iter().find(|r| r.key_id == "k-new").unwrap();
    assert_eq!(new_row.state, "active", "{rows:?}");
    assert_eq!(new_row.grace_until, None);
    // Like a registration: valid from an hour before the approval (events already in flight).
    near(new_row.valid_from, before - HOUR_US, 5_000_000);

    // The new key id is taken, the old one cannot be rotated into it again.
    let third = env.openssl_key("third");
    refused(
        &env.plan(&[
            "rotate",
            "--key-id",
            "k-old",
            "--new-key-id",
            "k-new",
            "--public-key",
            path(&third),
            "--grace",
            "1h",
        ])
        .0,
        "key k-new already exists",
    );
    refused(
        &env.plan(&[
            "rotate",
            "--key-id",
            "k-missing",
            "--new-key-id",
            "k-x",
            "--public-key",
            path(&third),
            "--grace",
            "1h",
        ])
        .0,
        "key k-missing is not registered",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_with_and_without_emergency() {
    let env = Env::new("cli-keys-rev").await;
    let a = env.openssl_key("a");
    let b = env.openssl_key("b");
    ok(&env.register("k-plain", &a));
    ok(&env.register("k-stolen", &b));

    let before = now_micros();
    let out = ok(&env.revoke(&["--key-id", "k-plain", "--reason", "decommissioned host"]));
    assert_eq!(out.trim(), "revoked k-plain");
    let out = ok(&env.revoke(&["--key-id", "k-stolen", "--reason", "leaked", "--emergency"]));
    assert_eq!(
        out.trim(),
        "revoked k-stolen (emergency: every event rejected)"
    );

    let plain = env.row("k-plain");
    assert_eq!(
        (plain.state.as_str(), plain.reason.as_str()),
        ("revoked", "decommissioned host")
    );
    near(plain.revoked_at, before, 10_000_000);
    let stolen = env.row("k-stolen");
    assert_eq!(
        (stolen.state.as_str(), stolen.reason.as_str()),
        ("revoked!", "leaked"),
        "emergency shows as revoked!"
    );
    near(stolen.revoked_at, before, 10_000_000);

    // A revoked key cannot be rotated; an unknown key cannot be revoked; both exit 1.
    let c = env.openssl_key("c");
    let (out, _) = env.plan(&[
        "rotate",
        "--key-id",
        "k-plain",
        "--new-key-id",
        "k-next",
        "--public-key",
        path(&c),
        "--grace",
        "1h",
    ]);
    refused(&out, "key k-plain is revoked");
    assert_eq!(out.status.code(), Some(1));
    let out = env.revoke(&["--key-id", "k-nobody", "--reason", "x"]);
    refused(&out, "key k-nobody is not registered");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        env.list()
            .iter()
            .all(|r| r.key_id != "k-next" && r.key_id != "k-nobody")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_public_keys_are_refused_with_a_clear_error() {
    let env = Env::new("cli-keys-pem").await;
    let garbage = env.dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let out = env.register("k-garbage", &garbage);
    let stderr = refused(&out, &format!("reading public key {}", garbage.display()));
    assert_ne!(out.status.code(), Some(0), "{stderr}");

    // A valid PEM of the wrong algorithm (P-256) is refused too.
    let p256 = env.dir.path().join("p256.pem");
    let p256_pub = env.dir.path().join("p256.pub.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path(&p256),
    ]);
    openssl(&[
        "pkey",
        "-in",
        path(&p256),
        "-pubout",
        "-out",
        path(&p256_pub),
    ]);
    refused(
        &env.register("k-p256", &p256_pub),
        &format!("reading public key {}", p256_pub.display()),
    );

    // A private key where the public key belongs, and a missing file.
    refused(&env.register("k-private", &p256), "reading public key");
    let missing = env.dir.path().join("missing.pem");
    refused(
        &env.register("k-missing", &missing),
        &format!("reading public key {}", missing.display()),
    );

    // An invalid key id is refused before anything is read.
    let good = env.openssl_key("good");
    refused(&env.register("bad key id", &good), "invalid --key-id");
    assert!(env.list().is_empty(), "nothing was registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grace_values_are_refused_by_the_parser() {
    let env = Env::new("cli-keys-grace").await;
    let old = env.openssl_key("old");
    let new = env.openssl_key("new");
    ok(&env.register("k-old", &old));
    for (grace, needle) in [
        ("5w", "unknown unit \"w\""),
        ("24", "missing unit"),
        ("1.5h", "unknown unit"),
        ("soon", "expected a number"),
    ] {
        let (out, _) = env.plan(&[
            "rotate",
            "--key-id",
            "k-old",
            "--new-key-id",
            "k-new",
            "--public-key",
            path(&new),
            "--grace",
            grace,
        ]);
        let stderr = refused(&out, needle);
        assert!(stderr.contains("--grace"), "names the option: {stderr}");
        assert_eq!(out.status.code(), Some(2), "usage errors exit 2: {stderr}");
    }
    let row = env.row("k-old");
    assert_eq!(row.state, "active", "no rotation happened");
    assert!(env.list().iter().all(|r| r.key_id != "k-new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_needs_a_second_trusted_administrator_and_an_untampered_plan() {
    let env = Env::new("cli-keys-mc").await;
    let a = env.openssl_key("a");
    let (planned, plan) = env.plan(&["register", "--key-id", "k-a", "--public-key", path(&a)]);
    let out = ok(&planned);
    assert!(
        out.contains("another administrator runs `vigil keys approve"),
        "{out}"
    );
    assert!(env.list().is_empty(), "a plan alone registers nothing");

    refused(
        &env.approve(&plan, &env.alice),
        "approved by another administrator",
    );
    refused(
        &env.approve(&plan, &env.mallory),
        "is not a trusted administrator",
    );
    let by_mallory = env.as_admin(
        &["register", "--key-id", "k-m", "--public-key", path(&a)],
        &env.mallory,
        Some(&env.plan_path("mallory")),
    );
    refused(&by_mallory, "is not a trusted administrator");

    // Swap the planned public key for another one: the planner's signature no longer matches.
    let other = env.openssl_key("other");
    let tampered = env.plan_path("tampered");
    let other_hex = {
        let (o, p) = env.plan(&["register", "--key-id", "k-a", "--public-key", path(&other)]);
        ok(&o);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["plan"]["changes"][0]["public_key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    v["plan"]["changes"][0]["public_key"] = serde_json::Value::String(other_hex);
    std::fs::write(&tampered, serde_json::to_vec(&v).unwrap()).unwrap();
    refused(&env.approve(&tampered, &env.bob), "edited after signing");
    assert!(env.list().is_empty(), "no refused approval wrote anything");

    let dry = ok(&env.as_admin(&["approve", path(&plan), "--dry-run"], &env.bob, None));
    assert!(
        dry.contains("register k-a") && dry.contains("nothing written"),
        "{dry}"
    );
    assert!(env.list().is_empty());
    ok(&env.approve(&plan, &env.bob));
    assert_eq!(env.row("k-a").state, "active");
    refused(&env.approve(&plan, &env.bob), "already executed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_plans_the_fleet_and_list_shows_keys_expiring_soon() {
    let env = Env::new("cli-keys-manifest").await;
    let held = env.openssl_key("held");
    ok(&env.register("k-held", &held));
    let a = env.openssl_key("a");
    let b = env.openssl_key("b");
    let soon = vigil_schemas::model::format_rfc3339(now_micros() + 5 * 24 * HOUR_US).unwrap();
    let later = vigil_schemas::model::format_rfc3339(now_micros() + 60 * 24 * HOUR_US).unwrap();
    let manifest = env.dir.path().join("fleet.yaml");
    std::fs::write(
        &manifest,
        format!(
            "keys:\n  - {{id: k-pay, public_key: a.pub.pem, owner: payments, environment: prod, not_after: {soon:?}}}\n  - {{id: k-web, public_key: b.pub.pem, owner: web, environment: staging, not_after: {later:?}}}\n"
        ),
    )
    .unwrap();
    let (planned, plan) = env.plan(&["plan", path(&manifest)]);
    let out = ok(&planned);
    assert!(out.contains("register k-pay"), "{out}");
    assert!(out.contains("register k-web"), "{out}");
    assert!(out.contains("unmanaged k-held"), "{out}");
    ok(&env.approve(&plan, &env.bob));
    let pay = env.row("k-pay");
    assert_eq!(
        (pay.owner.as_str(), pay.environment.as_str()),
        ("payments", "prod")
    );
    near(pay.not_after, parse_rfc3339(&soon).unwrap(), 1_000_000);
    let expiring: Vec<String> = env
        .list_with(&["list", "--expiring", "14d"])
        .into_iter()
        .map(|r| r.key_id)
        .collect();
    assert_eq!(expiring, ["k-pay"]);

    // The same manifest again: nothing to do. A changed owner: an update of that key only.
    let (again, _) = env.plan(&["plan", path(&manifest)]);
    assert!(ok(&again).contains("the registry matches"));
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("owner: web", "owner: web-platform"),
    )
    .unwrap();
    let (planned, plan) = env.plan(&["plan", path(&manifest)]);
    let out = ok(&planned);
    assert!(
        out.contains("update k-web (v1) owner=web-platform"),
        "{out}"
    );
    assert!(!out.contains("k-pay"), "{out}");
    ok(&env.approve(&plan, &env.bob));
    let web = env.row("k-web");
    assert_eq!((web.owner.as_str(), web.version), ("web-platform", 2));
    let _ = (a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_re_signs_an_unsigned_registry_after_the_operator_checked_it() {
    let env = Env::new("cli-keys-adopt").await;
    // A registry written before signatures: a plain, unsigned KeyStatus record.
    let schema = vigil_test_support::register_schema::<KeyStatus>(&env.topic).await;
    let public = vigil_schemas::EventSigner::generate()
        .public_key()
        .to_owned();
    let legacy = KeyStatus {
        version: 0,
        ..KeyStatus::active("k-legacy", &public, now_micros() - HOUR_US, "ops")
    };
    let value = vigil_schemas::Codec::<KeyStatus>::new()
        .unwrap()
        .encode_framed(schema, &legacy)
        .unwrap();
    let p = vigil_test_support::producer();
    vigil_test_support::send(&p, &env.topic, b"k-legacy", &value, &[]).await;

    assert!(env.list().is_empty(), "an unsigned status is not trusted");
    let out = env.as_admin(&["adopt"], &env.alice, None);
    refused(&out, "run again with --yes");
    assert!(String::from_utf8_lossy(&out.stdout).contains("k-legacy"));
    let out = ok(&env.as_admin(&["adopt", "--yes"], &env.alice, None));
    assert!(out.contains("adopted 1 statuses"), "{out}");
    let row = env.row("k-legacy");
    assert_eq!((row.state.as_str(), row.version), ("active", 1));
    assert!(row.signed_by.starts_with("ed25519-"));
    let out = ok(&env.as_admin(&["adopt"], &env.alice, None));
    assert!(out.contains("nothing to adopt"), "{out}");
    // A new administrator takes over: every status re-signed, one version higher.
    let out = ok(&env.as_admin(&["adopt", "--all", "--yes"], &env.bob, None));
    assert!(out.contains("adopted 1 statuses"), "{out}");
    let again = env.row("k-legacy");
    assert_eq!(again.version, 2);
    assert_ne!(again.signed_by, row.signed_by, "signed by bob now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_operation_is_an_event_signed_by_the_administrator_who_did_it() {
    let env = Env::new("cli-keys-events").await;
    let a = env.openssl_key("a");
    let b = env.openssl_key("b");
    ok(&env.register("k-a", &a));
    env.planned_and_approved(&[
        "rotate",
        "--key-id",
        "k-a",
        "--new-key-id",
        "k-b",
        "--public-key",
        path(&b),
        "--grace",
        "1h",
    ]);
    ok(&env.revoke(&["--key-id", "k-b", "--reason", "leaked", "--emergency"]));

    let admin_pub = |p: &Path| {
        vigil_schemas::PublicKey::from_spki_pem_file(p.with_extension("pub.pem")).unwrap()
    };
    let (alice, bob) = (admin_pub(&env.alice), admin_pub(&env.bob));
    let id = |k: &vigil_schemas::PublicKey| vigil_schemas::KeyId::for_public_key(k).to_string();
    let records =
        vigil_test_support::read_records(&env.raw, 7, std::time::Duration::from_secs(20)).await;
    let codec = vigil_schemas::Codec::<vigil_schemas::VerificationEvent>::new().unwrap();
    let mut seen = Vec::new();
    for r in &records {
        let sig = vigil_schemas::SignatureHeaders::parse(
            r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
        )
        .unwrap();
        let signer = [&alice, &bob]
            .into_iter()
            .find(|k| id(k) == sig.key_id.as_str())
            .unwrap_or_else(|| panic!("signed by {}, not an administrator", sig.key_id.as_str()));
        let value = r.value.as_deref().unwrap();
        signer.verify(value, &sig.signature).unwrap();
        let (_, body) = vigil_schemas::wire::split_frame(value).unwrap();
        let e = codec.decode(body).unwrap();
        assert_eq!(e.class_uid, vigil_schemas::EventClass::KeyLifecycle);
        seen.push((
            e.activity_name.clone(),
            e.attributes.get("key_id").cloned().unwrap_or_default(),
            sig.key_id.as_str() == id(&bob),
        ));
        if e.activity_name == "key_registered" && e.attributes["key_id"] == "k-a" {
            assert_eq!(e.attributes["version"], "1");
            assert_eq!(e.attributes["planner_key_id"], id(&alice));
            assert_eq!(e.attributes["approver_key_id"], id(&bob));
            assert!(!e.attributes["plan_id"].is_empty());
        }
        if e.activity_name == "key_revoked" {
            assert_eq!(e.attributes["emergency"], "true");
            assert_eq!(e.severity_id, vigil_schemas::Severity::High);
        }
    }
    let s = |a: &str, k: &str, by_bob: bool| (a.to_owned(), k.to_owned(), by_bob);
    assert_eq!(
        seen,
        [
            s("key_registered", "k-a", true),
            s("plan_approved", "", true),
            s("rotation_started", "k-a", true),
            s("key_registered", "k-b", true),
            s("rotation_completed", "k-a", true),
            s("plan_approved", "", true),
            s("key_revoked", "k-b", false),
        ]
    );
}
