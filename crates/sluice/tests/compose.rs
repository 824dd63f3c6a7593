//! The container set-up, checked without a Docker engine (our machines have
//! none): docker-compose.yml parsed as YAML, the Dockerfile read stage by
//! stage, and LocalStack's init script run against a stand-in `awslocal`
//! that records what it is asked to create.
//!
//! What is checked is what would break `docker compose up --scale writer=N`
//! or leak a secret: the services and their wiring, the variables each gets
//! (known to the binaries, pointing at the right services), a PII key that
//! must come from the host, writers that can be replicated, and an image that
//! runs both binaries as a non-root user.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

const QUEUE_URL: &str = "http://localstack:4566/000000000000/login-queue";
const INIT_SCRIPT: &str = "deploy/localstack/init-sqs.sh";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// docker-compose.yml as JSON values (it holds nothing YAML-only).
fn compose() -> Value {
    serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses as YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("no service {name} in docker-compose.yml"))
}

/// A service's `environment`, in either of Compose's two spellings.
fn environment(service: &Value) -> BTreeMap<String, String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match &service["environment"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Value::Array(list) => list
            .iter()
            .map(|item| {
                let item = item.as_str().expect("environment entries are strings");
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Value::Null => BTreeMap::new(),
        other => panic!("environment is neither a map nor a list: {other}"),
    }
}

/// `NAME=` lines of `.env.example`, commented out or not: the variables the
/// binaries read (another test keeps that list exact).
fn known_variables() -> BTreeSet<String> {
    let line = Regex::new(r"^#?\s*([A-Z][A-Z0-9_]+)=").unwrap();
    read(".env.example")
        .lines()
        .filter_map(|l| line.captures(l).map(|c| c[1].to_owned()))
        .collect()
}

fn depends_on_condition(service: &Value, on: &str) -> Option<String> {
    service["depends_on"][on]["condition"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn compose_has_the_services_and_wires_them_together() {
    let compose = compose();
    for name in ["localstack", "postgres", "migrate", "ingest", "writer"] {
        service(&compose, name);
    }
    // Only healthy dependencies are waited for, so those must say when they are.
    for name in ["localstack", "postgres"] {
        assert!(
            service(&compose, name)["healthcheck"]["test"].is_array(),
            "{name} has no healthcheck"
        );
    }

    let ingest = service(&compose, "ingest");
    assert_eq!(
        depends_on_condition(ingest, "localstack").as_deref(),
        Some("service_healthy")
    );
    let writer = service(&compose, "writer");
    for (on, condition) in [
        ("localstack", "service_healthy"),
        ("postgres", "service_healthy"),
        ("migrate", "service_completed_successfully"),
    ] {
        assert_eq!(
            depends_on_condition(writer, on).as_deref(),
            Some(condition),
            "writer depends on {on}"
        );
    }
    let migrate = service(&compose, "migrate");
    assert_eq!(
        migrate["command"],
        serde_json::json!(["sluice-writer", "migrate"])
    );
    assert_eq!(
        depends_on_condition(migrate, "postgres").as_deref(),
        Some("service_healthy")
    );
    assert_eq!(ingest["command"], serde_json::json!(["sluice-ingest"]));
    assert_eq!(
        writer["command"],
        serde_json::json!(["sluice-writer", "serve"])
    );
    // One image for all three, built from the Dockerfile.
    for s in [ingest, writer, migrate] {
        assert_eq!(s["image"], compose["services"]["ingest"]["image"]);
        assert!(
            !s["build"].is_null(),
            "every service of ours can build the image"
        );
    }
}

#[test]
fn ingest_and_writer_get_the_queue_and_the_database() {
    let compose = compose();
    for name in ["ingest", "writer"] {
        let env = environment(service(&compose, name));
        assert_eq!(
            env.get("QUEUE_URL").map(String::as_str),
            Some(QUEUE_URL),
            "{name}"
        );
        assert_eq!(
            env.get("AWS_ENDPOINT_URL").map(String::as_str),
            Some("http://localstack:4566"),
            "{name}"
        );
        assert!(
            env.get("AWS_REGION").is_some_and(|r| !r.is_empty()),
            "{name} has no AWS_REGION"
        );
        // LocalStack's dummy credentials, so the SDK never looks further.
        for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            assert!(env.contains_key(key), "{name} has no {key}");
        }
    }
    let ingest = environment(service(&compose, "ingest"));
    let writer = environment(service(&compose, "writer"));
    let migrate = environment(service(&compose, "migrate"));
    // Listening beyond the container's loopback, on the ports the health
    // checks ask.
    assert_eq!(ingest["INGEST_ADDR"], "0.0.0.0:8080");
    assert_eq!(writer["WRITER_ADDR"], "0.0.0.0:9090");
    let probe = |name: &str| service(&compose, name)["healthcheck"]["test"].to_string();
    assert!(probe("ingest").contains("/8080") && probe("ingest").contains("/healthz"));
    assert!(probe("writer").contains("/9090") && probe("writer").contains("/readyz"));

    // The database is the postgres service, for the writer and migrations alike.
    let database = Regex::new(r"^postgres://[^@/]+@postgres:5432/\w+$").unwrap();
    for (name, env) in [("writer", &writer), ("migrate", &migrate)] {
        let url = env
            .get("DATABASE_URL")
            .unwrap_or_else(|| panic!("{name} has no DATABASE_URL"));
        assert!(database.is_match(url), "{name} DATABASE_URL: {url}");
    }
    assert_eq!(writer["DATABASE_URL"], migrate["DATABASE_URL"]);
}

#[test]
fn the_pii_key_comes_from_the_host_and_is_required() {
    let compose = compose();
    let writer = environment(service(&compose, "writer"));
    // `${PII_KEY:?message}`: Compose refuses to start without it; no default.
    let required = Regex::new(r"^\$\{PII_KEY:\?[^}$]+\}$").unwrap();
    let key = writer.get("PII_KEY").expect("the writer gets PII_KEY");
    assert!(
        required.is_match(key),
        "PII_KEY must be required from the host: {key}"
    );
    // And nowhere is a key written down (a default or a literal value).
    let text = read("docker-compose.yml");
    for line in text
        .lines()
        .filter(|l| l.contains("PII_KEY") && !l.trim_start().starts_with('#'))
    {
        assert!(
            !line.contains("PII_KEY:-") && !line.contains("PII_KEY-") && !line.contains("PII_KEY="),
            "a PII key default or value in docker-compose.yml: {line}"
        );
    }
    assert!(!read("Dockerfile").lines().any(|l| {
        let l = l.trim_start();
        (l.starts_with("ENV") || l.starts_with("ARG")) && l.contains("PII_KEY")
    }));
}

#[test]
fn writers_can_be_replicated() {
    let compose = compose();
    let writer = service(&compose, "writer");
    assert_eq!(writer["deploy"]["replicas"], serde_json::json!(3));
    // A fixed name or a host port would let only one replica start.
    assert!(writer.get("container_name").is_none());
    assert!(writer.get("ports").is_none());
    // Shutdown commits what a writer holds: more than Docker's default 10 s.
    assert!(writer["stop_grace_period"].as_str().is_some());
}

#[test]
fn compose_sets_only_variables_the_binaries_read() {
    let compose = compose();
    let known = known_variables();
    assert!(
        known.contains("QUEUE_URL"),
        "the .env.example scan found nothing"
    );
    for name in ["ingest", "writer", "migrate"] {
        for key in environment(service(&compose, name)).keys() {
            assert!(
                known.contains(key),
                "{name} sets {key}, which no binary reads (not in .env.example)"
            );
        }
    }
}

#[test]
fn localstack_runs_the_init_script_and_it_is_executable() {
    let compose = compose();
    let mounts: Vec<&str> = service(&compose, "localstack")["volumes"]
        .as_array()
        .expect("localstack mounts the init script")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with(&format!("./{INIT_SCRIPT}:/etc/localstack/init/ready.d/"))),
        "{mounts:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(workspace().join(INIT_SCRIPT))
            .unwrap()
            .permissions()
            .mode();
        assert_ne!(mode & 0o111, 0, "{INIT_SCRIPT} is not executable");
    }
}

/// Runs the init script with `awslocal` replaced by a recorder; returns the
/// calls and the attributes the main queue was created with.
fn run_init_script() -> (Vec<String>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let attributes = dir.path().join("attributes.json");
    let fake = dir.path().join("awslocal");
    std::fs::write(
        &fake,
        r#"#!/bin/sh
echo "$*" >> "$CALLS"
case "$*" in
  *"create-queue --queue-name login-queue-dlq"*) echo "http://localhost:4566/000000000000/login-queue-dlq" ;;
  *get-queue-attributes*) echo "arn:aws:sqs:us-east-1:000000000000:login-queue-dlq" ;;
esac
for a; do
  case "$a" in file://*) cp "${a#file://}" "$ATTRIBUTES" ;; esac
done
"#,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .arg(workspace().join(INIT_SCRIPT))
        .env("PATH", path)
        .env("CALLS", &calls)
        .env("ATTRIBUTES", &attributes)
        .env_remove("SLUICE_QUEUE_NAME")
        .env_remove("SLUICE_MAX_RECEIVE_COUNT")
        .output()
        .expect("run the init script");
    assert!(
        out.status.success(),
        "init script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&calls)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let attributes = serde_json::from_str(&std::fs::read_to_string(&attributes).unwrap())
        .expect("the queue attributes are JSON");
    (calls, attributes)
}

#[test]
fn the_init_script_creates_the_queue_and_its_dead_letter_queue() {
    let (calls, attributes) = run_init_script();
    let creates: Vec<&String> = calls
        .iter()
        .filter(|c| c.contains("create-queue"))
        .collect();
    assert_eq!(creates.len(), 2, "{calls:?}");
    // The dead-letter queue first: the redrive policy needs its ARN.
    assert!(
        creates[0].contains("--queue-name login-queue-dlq"),
        "{calls:?}"
    );
    assert!(
        creates[1].contains("--queue-name login-queue "),
        "{calls:?}"
    );
    assert!(
        creates[0].contains("MaximumMessageSize=1048576"),
        "{calls:?}"
    );
    // Dead letters kept as long as `sluice-writer setup` keeps them (14 days,
    // longer than the queue's own default of 4).
    assert!(
        creates[0].contains(&format!(
            "MessageRetentionPeriod={}",
            sluice_core::queue::sqs::DLQ_RETENTION_SECS
        )),
        "{calls:?}"
    );
    assert!(
        !creates[1].contains("MessageRetentionPeriod")
            && !attributes
                .as_object()
                .is_some_and(|a| a.contains_key("MessageRetentionPeriod")),
        "the queue keeps the default retention, shorter than its DLQ's: {calls:?}"
    );

    assert_eq!(attributes["MaximumMessageSize"], "1048576");
    let redrive: Value = serde_json::from_str(
        attributes["RedrivePolicy"]
            .as_str()
            .expect("RedrivePolicy is a JSON string"),
    )
    .expect("the redrive policy is JSON");
    assert_eq!(
        redrive["deadLetterTargetArn"],
        "arn:aws:sqs:us-east-1:000000000000:login-queue-dlq"
    );
    // The writer's WRITER_MAX_RECEIVE_COUNT default, as `sluice-writer setup` would.
    assert_eq!(redrive["maxReceiveCount"], "5");
    // The queue the services are given is the queue the script makes.
    assert!(QUEUE_URL.ends_with("/login-queue"));
}

/// `FROM` … up to the next `FROM`: the Dockerfile's stages, in order.
fn stages(dockerfile: &str) -> Vec<Vec<String>> {
    let mut stages: Vec<Vec<String>> = Vec::new();
    // Continuation lines belong to their instruction.
    let joined = dockerfile.replace("\\\n", " ");
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.to_ascii_uppercase().starts_with("FROM ") {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(line.to_owned());
        }
    }
    stages
}

#[test]
fn the_image_is_multi_stage_and_runs_both_binaries_as_a_user() {
    let dockerfile = read("Dockerfile");
    let stages = stages(&dockerfile);
    assert!(stages.len() >= 2, "not a multi-stage build");
    let build = &stages[0];
    let build_cmd = build
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("the first stage builds");
    assert!(build_cmd.contains("--release") && build_cmd.contains("--locked"));
    for package in ["sluice-ingest", "sluice-writer"] {
        assert!(build_cmd.contains(&format!("-p {package}")), "{build_cmd}");
    }

    let runtime = stages.last().unwrap();
    let user = runtime
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("the final stage sets USER");
    let who = user["USER ".len()..].split(':').next().unwrap().trim();
    assert!(who != "root" && who != "0", "runs as root: {user}");
    let copies: Vec<&String> = runtime
        .iter()
        .filter(|l| l.starts_with("COPY --from="))
        .collect();
    for binary in ["sluice-ingest", "sluice-writer"] {
        assert!(
            copies.iter().any(|c| c.contains(&format!("/{binary} "))),
            "the final stage does not copy {binary}: {copies:?}"
        );
    }
    // Not the build image: the toolchain stays behind.
    assert!(!runtime[0].contains("rust:"), "{}", runtime[0]);

    let ignore = read(".dockerignore");
    for entry in ["target/", ".env", "data/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}
