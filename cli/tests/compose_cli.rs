#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! `docker-compose.yml`'s Vigil services start as written, proven without a Docker engine: each
//! service built from this repository's `Dockerfile` is run as the built `vigil` binary with the
//! service's own `entrypoint`/`command` and `environment` (after the `x-vigil` merge keys), and
//! must reach `/readyz` 200 (one-shot services must exit 0), then stop cleanly on SIGTERM.
//!
//! What a container would see is translated mechanically, by the tables below, never by
//! rewriting a command by hand: compose host names become the local stack's `VIGIL_*`
//! addresses, wildcard listen addresses (`0.0.0.0:<port>`) a free `127.0.0.1` port, the image's
//! `COPY` destinations and the service's `volumes` their repository paths (named volumes a
//! temporary folder shared by the services that mount them), the image's `WORKDIR` the working
//! directory (a folder linking to what the image or the volumes put below it, nothing else). A
//! config file the command or the environment names is copied with the same table applied to
//! its text. Anything the compose file says that a container could not run fails here too.
//!
//! Topics: the services take their topic names from config files only (no environment
//! override), so this runs them as compose does, on the built-in topics, after the compose
//! file's own `topology` one-shot has run `vigil topology apply`. Consumer groups and the audit
//! database are the services' defaults as well: run it against a disposable cluster
//! (scripts/stack or docker-compose), as the whole suite.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::{Mapping, Value};
use vigil_test_support::{ChildProcess, free_port};

/// How long a long-running service may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a one-shot service may run.
const ONE_SHOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a service may take to stop after SIGTERM (its shutdown timeout is 30 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(45);
/// The metrics port every Vigil service listens on inside its container (Prometheus scrapes it).
const METRICS_PORT: &str = "9400";

/// Compose-network addresses of the infrastructure services and the local stack's equivalent.
fn address_table() -> Vec<(&'static str, String)> {
    vec![
        ("kafka:19092", vigil_test_support::kafka_bootstrap()),
        (
            "http://schema-registry:8081",
            vigil_test_support::schema_registry_url(),
        ),
        (
            "http://clickhouse:8123",
            vigil_test_support::clickhouse_url(),
        ),
    ]
}

/// Build-stage outputs the image copies (`COPY --from=build SRC DEST`) and the local artifact.
fn build_output_table() -> Vec<(&'static str, PathBuf)> {
    vec![(
        "/src/target/release/vigil",
        PathBuf::from(env!("CARGO_BIN_EXE_vigil")),
    )]
}

/// Programs other than `vigil` a service may start, with the Debian package that puts them in
/// the image (`None`: part of the base image); the host's copy runs here.
const PROGRAMS: &[(&str, Option<&str>)] = &[("sh", None), ("openssl", Some("openssl"))];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// The final stage of the Dockerfile, as far as a running container sees it.
#[derive(Debug, Default)]
struct Image {
    workdir: String,
    /// Container path -> host path (file or folder).
    copies: Vec<(String, PathBuf)>,
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    /// The default command (`CMD`), used when the service sets neither command nor entrypoint.
    cmd: Vec<String>,
    /// Text of the stage's `RUN` lines (to check a program's package is installed).
    run_lines: String,
}

fn parse_dockerfile(text: &str, root: &Path) -> Image {
    // Join continuation lines, drop comments.
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            lines.push(std::mem::take(&mut current));
        }
    }
    let last_from = lines
        .iter()
        .rposition(|l| l.to_ascii_uppercase().starts_with("FROM "))
        .expect("the Dockerfile has a FROM");
    let mut image = Image {
        workdir: "/".to_owned(),
        ..Image::default()
    };
    for line in &lines[last_from + 1..] {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match instruction.to_ascii_uppercase().as_str() {
            "WORKDIR" => image.workdir = join_container(&image.workdir, rest),
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV {rest}: use the KEY=value form"));
                    image
                        .env
                        .push((k.to_owned(), v.trim_matches('"').to_owned()));
                }
            }
            "ENTRYPOINT" => {
                image.entrypoint = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("ENTRYPOINT {rest}: not the exec form: {e}"))
            }
            "CMD" => {
                image.cmd = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("CMD {rest}: not the exec form: {e}"))
            }
            "RUN" => {
                image.run_lines.push_str(rest);
                image.run_lines.push('\n');
            }
            "COPY" => {
                let mut words: Vec<&str> = rest.split_whitespace().collect();
                let from = words
                    .iter()
                    .position(|w| w.starts_with("--from="))
                    .map(|i| words.remove(i));
                assert!(
                    !words.iter().any(|w| w.starts_with("--")),
                    "COPY {rest}: flag not understood by this test"
                );
                let dest = join_container(&image.workdir, words.pop().expect("COPY has a dest"));
                for src in words {
                    let host = match from {
                        Some(_) => build_output_table()
                            .into_iter()
                            .find(|(p, _)| *p == src)
                            .map(|(_, h)| h)
                            .unwrap_or_else(|| {
                                panic!("COPY {rest}: no local artifact for build output {src}")
                            }),
                        None => root.join(src.trim_start_matches("./")),
                    };
                    // `COPY dir/ dest` copies the folder's contents to dest; `COPY file dir/`
                    // puts the file into dest.
                    let target = if host.is_file() && dest.ends_with('/') {
                        let name = Path::new(src).file_name().expect("a file name");
                        format!("{dest}{}", name.to_string_lossy())
                    } else {
                        dest.trim_end_matches('/').to_owned()
                    };
                    image.copies.push((target, host));
                }
            }
            _ => {}
        }
    }
    image
}

/// The words of `text` (what a program or package name can be made of).
fn words(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "._+-".contains(c)))
        .filter(|w| !w.is_empty())
        .collect()
}

fn join_container(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{}/{path}", base.trim_end_matches('/'))
    }
}

/// Reads docker-compose.yml with its merge keys (`<<: *vigil`) resolved.
fn load_compose(root: &Path) -> Mapping {
    let text = fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let mut doc: Value = serde_yaml::from_str(&text).expect("docker-compose.yml parses");
    doc.apply_merge().expect("merge keys resolve");
    doc.get("services")
        .and_then(Value::as_mapping)
        .expect("a services table")
        .clone()
}

fn strings(v: Option<&Value>, what: &str) -> Option<Vec<String>> {
    let v = v?;
    let seq = v
        .as_sequence()
        .unwrap_or_else(|| panic!("{what}: use the list form, got {v:?}"));
    Some(
        seq.iter()
            .map(|s| match s {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("{what}: {other:?} is not a string"),
            })
            .collect(),
    )
}

fn environment(service: &Value, name: &str) -> Vec<(String, String)> {
    match service.get("environment") {
        None => Vec::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let k = k.as_str().expect("environment keys are strings").to_owned();
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => panic!("{name}.environment.{k}: {other:?} is not a scalar"),
                };
                (k, v)
            })
            .collect(),
        Some(Value::Sequence(seq)) => seq
            .iter()
            .map(|s| {
                let s = s.as_str().expect("environment entries are strings");
                let (k, v) = s
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{name}.environment: {s:?} has no value"));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("{name}.environment: {other:?}"),
    }
}

/// The service's mounts: container path -> host path (bind mounts relative to the repository,
/// named volumes a folder under `volumes_dir`).
fn volumes(service: &Value, name: &str, root: &Path, volumes_dir: &Path) -> Vec<(String, PathBuf)> {
    strings(service.get("volumes"), &format!("{name}.volumes"))
        .unwrap_or_default()
        .into_iter()
        .map(|spec| {
            let mut parts = spec.split(':');
            let (src, dest) = match (parts.next(), parts.next()) {
                (Some(s), Some(d)) => (s, d),
                _ => panic!("{name}.volumes: {spec:?} is not SRC:DEST[:MODE]"),
            };
            let host = if src.starts_with('.') || src.starts_with('/') {
                root.join(src)
            } else {
                let dir = volumes_dir.join(src);
                fs::create_dir_all(&dir).unwrap();
                dir
            };
            (dest.trim_end_matches('/').to_owned(), host)
        })
        .collect()
}

/// Translates container-side text to this machine: addresses, wildcard listens, paths.
struct Translation {
    addresses: Vec<(&'static str, String)>,
    /// Container path -> host path, longest first.
    mounts: Vec<(String, PathBuf)>,
    /// Container port of each `0.0.0.0:<port>` seen -> free local port.
    listens: BTreeMap<String, u16>,
    /// Where translated copies of config files go.
    files_dir: PathBuf,
}

impl Translation {
    fn text(&mut self, s: &str) -> String {
        let mut out = s.to_owned();
        for (from, to) in &self.addresses {
            out = out.replace(from, to);
        }
        out = self.wildcard_listens(&out);
        replace_paths(&out, &self.mounts)
    }

    fn wildcard_listens(&mut self, s: &str) -> String {
        const WILDCARD: &str = "0.0.0.0:";
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(WILDCARD) {
            out.push_str(&rest[..i]);
            let after = &rest[i + WILDCARD.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let port = &after[..digits];
            let local = *self
                .listens
                .entry(port.to_owned())
                .or_insert_with(free_port);
            out.push_str(&format!("127.0.0.1:{local}"));
            rest = &after[digits..];
        }
        out.push_str(rest);
        out
    }

    /// Translates a command-line argument or environment value; when it then names a config
    /// file of the repository, returns a translated copy of that file instead.
    fn value(&mut self, s: &str, root: &Path) -> String {
        let out = self.text(s);
        let path = Path::new(&out);
        if path.is_absolute() && path.starts_with(root) && path.is_file() {
            let Ok(content) = fs::read_to_string(path) else {
                return out;
            };
            let translated = self.text(&content);
            if translated != content {
                let copy = self.files_dir.join(path.file_name().expect("a file name"));
                fs::write(&copy, translated).unwrap();
                return copy.to_string_lossy().into_owned();
            }
        }
        out
    }
}

/// Replaces every container path of `mounts` (longest first) where it appears as a whole path
/// or a path prefix, in one pass (a host path is never translated again).
fn replace_paths(s: &str, mounts: &[(String, PathBuf)]) -> String {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "._-/".contains(c);
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        let at_boundary = s[..i].chars().next_back().is_none_or(|c| !is_path_char(c));
        let found = at_boundary
            .then(|| {
                mounts.iter().find(|(from, _)| {
                    s[i..].starts_with(from.as_str())
                        && s[i + from.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| c == '/' || !is_path_char(c))
                })
            })
            .flatten();
        match found {
            Some((from, to)) => {
                out.push_str(&to.to_string_lossy());
                i += from.len();
            }
            None => {
                let c = s[i..].chars().next().expect("i is a char boundary");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// A started service, killed when dropped.
struct Running {
    name: String,
    child: ChildProcess,
    /// The translated command line, for failure messages.
    shown: String,
    log: PathBuf,
    metrics_port: Option<u16>,
}

impl Running {
    /// The command line and the last lines of its output.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "ran: {}\n{}",
            self.shown,
            lines[lines.len().saturating_sub(25)..].join("\n")
        )
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Everything needed to start one compose service here.
struct Plan {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    metrics_port: Option<u16>,
}

fn plan(
    name: &str,
    service: &Value,
    image: &Image,
    root: &Path,
    scratch: &Path,
    errors: &mut Vec<String>,
) -> Plan {
    // The service's mounts shadow the image's files, longest container path first.
    // (A stable sort: of two equal paths, the volume comes first.)
    let mut mounts = volumes(service, name, root, &scratch.join("volumes"));
    mounts.extend(image.copies.iter().cloned());
    mounts.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
    let files_dir = scratch.join("files").join(name);
    fs::create_dir_all(&files_dir).unwrap();
    let mut t = Translation {
        addresses: address_table(),
        mounts,
        listens: BTreeMap::new(),
        files_dir,
    };
    // As in Docker: a service's entrypoint also drops the image's CMD.
    let own_entrypoint = strings(service.get("entrypoint"), &format!("{name}.entrypoint"));
    let command =
        strings(service.get("command"), &format!("{name}.command")).unwrap_or_else(|| {
            match own_entrypoint {
                Some(_) => Vec::new(),
                None => image.cmd.clone(),
            }
        });
    let entrypoint = own_entrypoint.unwrap_or_else(|| image.entrypoint.clone());
    let mut argv = entrypoint.into_iter().chain(command);
    let program = argv
        .next()
        .unwrap_or_else(|| panic!("{name}: no entrypoint and no command"));
    let args: Vec<String> = argv.map(|a| t.value(&a, root)).collect();
    let program = match program.as_str() {
        "vigil" | "/usr/local/bin/vigil" => {
            let host = t.text("/usr/local/bin/vigil");
            assert!(
                Path::new(&host).starts_with(env!("CARGO_BIN_EXE_vigil")),
                "{name}: the image does not install vigil at /usr/local/bin/vigil"
            );
            PathBuf::from(host)
        }
        other => {
            if !PROGRAMS.iter().any(|(p, _)| *p == other) {
                errors.push(format!(
                    "{name}: runs {other:?}, which this test does not know (add it to PROGRAMS)"
                ));
            }
            PathBuf::from(other)
        }
    };
    // Programs a shell script of the command starts must be in the image as well.
    let installed = words(&image.run_lines);
    let script = args.join("\n");
    let used = words(&script);
    for (prog, package) in PROGRAMS {
        if let Some(package) = package
            && (program.as_os_str() == *prog || used.contains(*prog))
            && !installed.contains(*package)
        {
            errors.push(format!(
                "{name}: runs {prog}, but the image does not install {package}"
            ));
        }
    }
    let env: Vec<(String, String)> = image
        .env
        .iter()
        .cloned()
        .chain(environment(service, name))
        .map(|(k, v)| {
            let v = t.value(&v, root);
            (k, v)
        })
        .collect();
    let cwd = working_directory(
        &image.workdir,
        &t.mounts,
        &scratch.join("workdir").join(name),
    );
    Plan {
        name: name.to_owned(),
        program,
        args,
        env,
        cwd,
        metrics_port: t.listens.get(METRICS_PORT).copied(),
    }
}

/// The container's working directory here: the host folder mounted there, or a folder holding
/// links to whatever the image or the volumes put below it (nothing else exists there).
fn working_directory(workdir: &str, mounts: &[(String, PathBuf)], dir: &Path) -> PathBuf {
    if let Some((_, host)) = mounts.iter().find(|(c, _)| c == workdir) {
        return host.clone();
    }
    fs::create_dir_all(dir).unwrap();
    for (container, host) in mounts {
        let Ok(rel) = Path::new(container).strip_prefix(workdir) else {
            continue;
        };
        let link = dir.join(rel);
        if link.symlink_metadata().is_ok() {
            continue; // a longer (more specific) mount came first
        }
        fs::create_dir_all(link.parent().expect("below dir")).unwrap();
        std::os::unix::fs::symlink(host, &link).unwrap();
    }
    dir.to_path_buf()
}

fn start(plan: &Plan, scratch: &Path) -> Running {
    let log = scratch.join(format!("{}.log", plan.name));
    let out = fs::File::create(&log).unwrap();
    let child = ChildProcess::spawn(
        &plan.name,
        Command::new(&plan.program)
            .args(&plan.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&plan.cwd)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
    );
    Running {
        name: plan.name.clone(),
        child,
        shown: format!("{} {:?}", plan.program.display(), plan.args),
        log,
        metrics_port: plan.metrics_port,
    }
}

/// One-shot services: those another service waits for with `service_completed_successfully`.
fn one_shots(services: &Mapping) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, s) in services {
        if let Some(Value::Mapping(deps)) = s.get("depends_on") {
            for (dep, cond) in deps {
                if cond.get("condition").and_then(Value::as_str)
                    == Some("service_completed_successfully")
                {
                    out.insert(dep.as_str().unwrap().to_owned());
                }
            }
        }
    }
    out
}

/// Orders `names` so that each comes after the services it depends on.
fn dependency_order(services: &Mapping, names: &BTreeSet<String>) -> Vec<String> {
    let deps = |n: &str| -> Vec<String> {
        match services.get(n).and_then(|s| s.get("depends_on")) {
            Some(Value::Mapping(m)) => m
                .keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            Some(Value::Sequence(seq)) => seq
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut order: Vec<String> = Vec::new();
    while order.len() < names.len() {
        let before = order.len();
        for n in names {
            if !order.contains(n)
                && deps(n)
                    .iter()
                    .all(|d| !names.contains(d) || order.contains(d))
            {
                order.push(n.clone());
            }
        }
        assert!(
            order.len() > before,
            "depends_on has a cycle among {names:?}"
        );
    }
    order
}

async fn readyz(port: u16) -> Option<u16> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .ok()?;
    Some(r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_vigil_services_start_as_written() {
    let root = repo_root();
    let services = load_compose(&root);
    let image = parse_dockerfile(&fs::read_to_string(root.join("Dockerfile")).unwrap(), &root);
    let scratch = tempfile::tempdir().unwrap();
    let mut errors: Vec<String> = Vec::new();

    // The Vigil services are those built from this repository.
    let vigil: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "topology",
        "verifier",
        "correlator",
        "alerter",
        "audit-sink",
    ] {
        assert!(
            vigil.contains(expected),
            "docker-compose.yml has no Vigil service {expected} (found {vigil:?})"
        );
    }
    for name in &vigil {
        let build = services[name.as_str()].get("build").unwrap();
        assert!(
            build.as_str() == Some("."),
            "{name}.build: expected \".\" (this repository's Dockerfile), got {build:?}"
        );
    }
    let one_shot = one_shots(&services);
    let (once, long): (BTreeSet<String>, BTreeSet<String>) =
        vigil.iter().cloned().partition(|n| one_shot.contains(n));

    // One-shots first, in dependency order; each must exit 0 (and must not be restarted).
    for name in dependency_order(&services, &once) {
        let service = &services[name.as_str()];
        if let Some(policy) = service.get("restart").and_then(Value::as_str)
            && policy != "no"
            && policy != "on-failure"
        {
            errors.push(format!(
                "{name}: a one-shot with restart: {policy} never completes"
            ));
        }
        let p = plan(&name, service, &image, &root, scratch.path(), &mut errors);
        let mut run = start(&p, scratch.path());
        match run.wait_exit(ONE_SHOT_TIMEOUT) {
            Some(s) if s.success() => {}
            Some(s) => errors.push(format!("{name}: exited with {s}:\n{}", run.log_tail())),
            None => errors.push(format!(
                "{name}: still running after {ONE_SHOT_TIMEOUT:?}:\n{}",
                run.log_tail()
            )),
        }
    }

    // Then every long-running service at once, as `docker compose up` starts them.
    let mut running: Vec<Running> = Vec::new();
    for name in &long {
        let p = plan(
            name,
            &services[name.as_str()],
            &image,
            &root,
            scratch.path(),
            &mut errors,
        );
        if p.metrics_port.is_none() {
            errors.push(format!(
                "{name}: nothing listens on 0.0.0.0:{METRICS_PORT}, so /readyz and /metrics are \
                 unreachable from outside the container"
            ));
            continue;
        }
        running.push(start(&p, scratch.path()));
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut pending: BTreeSet<usize> = (0..running.len()).collect();
    while !pending.is_empty() {
        for i in pending.clone() {
            let r = &mut running[i];
            if readyz(r.metrics_port.unwrap()).await == Some(200) {
                pending.remove(&i);
            } else if let Some(s) = r.child.try_wait() {
                errors.push(format!(
                    "{}: exited with {s} before ready:\n{}",
                    r.name,
                    r.log_tail()
                ));
                pending.remove(&i);
            } else if Instant::now() >= deadline {
                errors.push(format!(
                    "{}: /readyz not 200 within {READY_TIMEOUT:?}:\n{}",
                    r.name,
                    r.log_tail()
                ));
                pending.remove(&i);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // SIGTERM each one still running; each must exit 0.
    for r in &mut running {
        if r.child.try_wait().is_none() {
            r.child.signal("TERM");
        }
    }
    for r in &mut running {
        match r.wait_exit(STOP_TIMEOUT) {
            Some(s) if s.success() => {}
            // Exited before ready: already reported.
            Some(_)
                if errors
                    .iter()
                    .any(|e| e.starts_with(&format!("{}:", r.name))) => {}
            Some(s) => errors.push(format!(
                "{}: exited with {s} after SIGTERM:\n{}",
                r.name,
                r.log_tail()
            )),
            None => errors.push(format!(
                "{}: still running {STOP_TIMEOUT:?} after SIGTERM:\n{}",
                r.name,
                r.log_tail()
            )),
        }
    }

    assert!(
        errors.is_empty(),
        "docker-compose.yml does not start as written:\n\n{}",
        errors.join("\n\n")
    );
}
