#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! `vigil keys` through the built binary, against the real broker and schema registry. Every
//! test uses its own compacted keys topic (`--topic`), so tests run in parallel on the shared
//! stack; keys are generated with `openssl`, as an operator would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vigil_schemas::model::{now_micros, parse_rfc3339};

const HOUR_US: i64 = 3_600_000_000;

/// One test's keys topic and key directory.
struct Env {
    topic: String,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let topic = vigil_test_support::unique_name(prefix);
        vigil_test_support::create_compacted_topic(&topic).await;
        Env {
            topic,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `vigil keys <args> --topic <topic> --actor cli-test`.
    fn vigil(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("keys")
            .args(args)
            .args(["--topic", &self.topic, "--actor", "cli-test"])
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
        openssl(&["genpkey", "-algorithm", "ed25519", "-out", path(&private)]);
        openssl(&[
            "pkey",
            "-in",
            path(&private),
            "-pubout",
            "-out",
            path(&public),
        ]);
        public
    }

    fn register(&self, key_id: &str, public: &Path) -> Output {
        self.vigil(&["register", "--key-id", key_id, "--public-key", path(public)])
    }

    /// Runs `vigil keys list` and returns its rows by key id (header checked).
    fn list(&self) -> Vec<Row> {
        let text = ok(&self.vigil(&["list"]));
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
                "VALID_FROM",
                "GRACE_UNTIL",
                "REVOKED_AT",
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
    valid_from: Option<i64>,
    grace_until: Option<i64>,
    revoked_at: Option<i64>,
    reason: String,
}

impl Row {
    fn parse(line: &str) -> Row {
        // Five single-token columns, then the reason (which may hold spaces).
        let mut rest = line;
        let mut cols = Vec::new();
        for _ in 0..5 {
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
            valid_from: time(cols[2]),
            grace_until: time(cols[3]),
            revoked_at: time(cols[4]),
            reason: rest.trim().to_owned(),
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
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
    assert!(out.contains("registered k-a"), "{out}");

    let second = env.register("k-a", &b);
    refused(&second, "key k-a already exists (active)");
    assert_eq!(second.status.code(), Some(1), "a refusal exits 1");

    let row = env.row("k-a");
    assert_eq!(row.state, "active");
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

    let out = ok(&env.vigil(&[
        "register",
        "--key-id",
        "k-b",
        "--public-key",
        path(&b),
        "--valid-from",
        "2024-01-02T03:04:05Z",
    ]));
    assert!(out.contains("registered k-b"), "{out}");
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

    let before = now_micros();
    let out = ok(&env.vigil(&[
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
    ]));
    let after = now_micros();
    assert!(
        out.contains("rotated k-old -> k-new; k-old accepted until "),
        "{out}"
    );

    let rows = env.list();
    let old_row = rows.iter().find(|r| r.key_id == "k-old").unwrap();
    assert_eq!(old_row.state, "rotated", "{rows:?}");
    assert_eq!(old_row.reason, "quarterly rotation");
    let grace = old_row.grace_until.unwrap();
    assert!(
        grace >= before + 24 * HOUR_US - 1_000_000 && grace <= after + 24 * HOUR_US,
        "grace_until {grace} not now+24h"
    );
    assert_eq!(old_row.revoked_at, None);
    let new_row = rows.iter().find(|r| r.key_id == "k-new").unwrap();
    assert_eq!(new_row.state, "active", "{rows:?}");
    assert_eq!(new_row.grace_until, None);
    near(new_row.valid_from, before, 5_000_000);

    // The new key id is taken, the old one cannot be rotated into it again.
    let third = env.openssl_key("third");
    refused(
        &env.vigil(&[
            "rotate",
            "--key-id",
            "k-old",
            "--new-key-id",
            "k-new",
            "--public-key",
            path(&third),
            "--grace",
            "1h",
        ]),
        "key k-new already exists",
    );
    refused(
        &env.vigil(&[
            "rotate",
            "--key-id",
            "k-missing",
            "--new-key-id",
            "k-x",
            "--public-key",
            path(&third),
            "--grace",
            "1h",
        ]),
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
    let out = ok(&env.vigil(&[
        "revoke",
        "--key-id",
        "k-plain",
        "--reason",
        "decommissioned host",
    ]));
    assert_eq!(out.trim(), "revoked k-plain");
    let out = ok(&env.vigil(&[
        "revoke",
        "--key-id",
        "k-stolen",
        "--reason",
        "leaked",
        "--emergency",
    ]));
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
    let out = env.vigil(&[
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
    let out = env.vigil(&["revoke", "--key-id", "k-nobody", "--reason", "x"]);
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
        let out = env.vigil(&[
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
