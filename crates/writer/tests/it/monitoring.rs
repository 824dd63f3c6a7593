//! What deploy/ ships to watch Sluice is held to the services: every metric
//! an alert rule (deploy/prometheus/rules) or a dashboard panel
//! (deploy/grafana/dashboards) queries is exported, with the labels it
//! selects on, by a running `sluice-ingest` and `sluice-writer` (binaries,
//! on fauxqs and SQLite, after some traffic); every alert has a firing and
//! a quiet promtool test case; Compose's `monitoring` profile wires
//! Prometheus and Grafana to them. The depth gauges' dead-letter count comes
//! from SQS's redrive policy and from the embedded queue's own table.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde_json::{Value, json};
use sluice_core::queue::Queue;

use crate::binary::{aws_env, run};
use crate::disk_full::IngestProcess;
use crate::helpers::*;
use crate::processes::WriterProcess;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is YAML: {e}"))
}

fn files(dir: &str, extension: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(workspace().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(extension))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no *{extension} in {dir}");
    found
}

/// Every alert rule: (name, expression).
fn alerts() -> Vec<(String, String)> {
    let mut alerts = Vec::new();
    for path in files("deploy/prometheus/rules", ".yml") {
        for group in yaml(&path)["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                if let Some(name) = rule["alert"].as_str() {
                    alerts.push((name.to_owned(), rule["expr"].as_str().unwrap().to_owned()));
                }
            }
        }
    }
    alerts
}

/// Every query of every dashboard panel (rows' nested panels too).
fn panel_queries() -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let title = panel["title"].as_str().unwrap_or_default().to_owned();
                out.push((title, target["expr"].as_str().unwrap().to_owned()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut queries = Vec::new();
    for path in files("deploy/grafana/dashboards", ".json") {
        let dashboard: Value = serde_json::from_str(&read(&path)).unwrap();
        walk(&dashboard["panels"], &mut queries);
    }
    queries
}

/// The Sluice metric selectors of a PromQL expression: (name, label names).
fn selectors(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let selector = Regex::new(r"\b(sluice_[a-z0-9_]+)(\{([^}]*)\})?").unwrap();
    let label = Regex::new(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)").unwrap();
    selector
        .captures_iter(expr)
        .map(|c| {
            let labels = c.get(3).map_or("", |m| m.as_str());
            let names = label
                .captures_iter(labels)
                .map(|l| l[1].to_owned())
                .collect();
            (c[1].to_owned(), names)
        })
        .collect()
}

/// A `/metrics` text: each series name with the label names it carries.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let sample = Regex::new(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ").unwrap();
    let label = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)=""#).unwrap();
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(c) = sample.captures(line) {
            let labels = c.get(3).map_or("", |m| m.as_str());
            series
                .entry(c[1].to_owned())
                .or_default()
                .extend(label.captures_iter(labels).map(|l| l[1].to_owned()));
        }
    }
    series
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test_case() {
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for path in files("deploy/prometheus/tests", ".yml") {
        for test in yaml(&path)["tests"].as_array().unwrap() {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_owned();
                match case["exp_alerts"].as_array() {
                    Some(expected) if !expected.is_empty() => firing.insert(name),
                    _ => quiet.insert(name),
                };
            }
        }
    }
    let alerts = alerts();
    let required = [
        "backlog", "lag", "commit", "dead", "rejected", "503", "down",
    ];
    for word in required {
        assert!(
            alerts
                .iter()
                .any(|(name, _)| name.to_lowercase().contains(word)),
            "no alert about {word}: {alerts:?}"
        );
    }
    for (name, _) in &alerts {
        assert!(firing.contains(name), "{name} has no firing test case");
        assert!(quiet.contains(name), "{name} has no quiet test case");
    }
}

/// Compose's `monitoring` profile: Prometheus and Grafana, only with the
/// profile, given the files in deploy/ and pointed at the services' ports.
#[test]
fn the_monitoring_profile_provisions_prometheus_and_grafana() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().unwrap();
    for (name, service) in services {
        let monitoring = ["prometheus", "grafana"].contains(&name.as_str());
        let expected = if monitoring {
            json!(["monitoring"])
        } else {
            Value::Null
        };
        assert_eq!(service["profiles"], expected, "profiles of {name}");
    }
    // Every bind mount of theirs names a file or folder of the repository.
    let mut mounts = BTreeMap::new();
    for name in ["prometheus", "grafana"] {
        for volume in services[name]["volumes"].as_array().unwrap() {
            let volume = volume.as_str().unwrap();
            let mut parts = volume.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().unwrap());
            if let Some(path) = source.strip_prefix("./") {
                assert!(workspace().join(path).exists(), "{name} mounts {source}");
                mounts.insert(path.to_owned(), target.to_owned());
            }
        }
    }
    assert_eq!(mounts["deploy/prometheus"], "/etc/prometheus");
    // Prometheus scrapes the ports the services listen on.
    let port_of = |service: &str, variable: &str| -> String {
        let address = services[service]["environment"][variable].as_str().unwrap();
        address.rsplit(':').next().unwrap().to_owned()
    };
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let jobs: BTreeMap<&str, &Value> = prometheus["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["job_name"].as_str().unwrap(), j))
        .collect();
    assert_eq!(
        jobs["sluice-ingest"]["static_configs"][0]["targets"],
        json!([format!("ingest:{}", port_of("ingest", "INGEST_ADDR"))])
    );
    let writers = &jobs["sluice-writer"]["dns_sd_configs"][0];
    assert_eq!(writers["names"], json!(["writer"]));
    assert_eq!(
        writers["port"].as_u64().unwrap().to_string(),
        port_of("writer", "WRITER_ADDR")
    );
    assert_eq!(prometheus["rule_files"], json!(["rules/*.yml"]));
    // Grafana: the datasource is that Prometheus; the dashboards folder is
    // where the provider looks.
    let datasources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        datasources["datasources"][0]["url"],
        "http://prometheus:9090"
    );
    assert_eq!(
        mounts["deploy/grafana/provisioning"],
        "/etc/grafana/provisioning"
    );
    let providers = yaml("deploy/grafana/provisioning/dashboards/sluice.yml");
    assert_eq!(
        providers["providers"][0]["options"]["path"].as_str(),
        Some(mounts["deploy/grafana/dashboards"].as_str())
    );
    for path in files("deploy/grafana/dashboards", ".json") {
        let dashboard: Value = serde_json::from_str(&read(&path)).unwrap();
        let variable = &dashboard["templating"]["list"][0];
        assert_eq!(
            (&variable["name"], &variable["query"]),
            (&json!("datasource"), &json!("prometheus")),
            "{path} picks its Prometheus by a variable"
        );
    }
}

/// The embedded queue's dead-letter queue is counted by the queue itself.
#[tokio::test]
async fn embedded_dead_letters_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let queue = sluice_testkit::fresh_embedded_queue(dir.path());
    assert_eq!(
        queue.dead_letter_counts().await.unwrap().map(|c| c.visible),
        Some(0)
    );
    let dlq = queue.dead_letter_queue();
    dlq.send_batch(&["{}".to_owned(), "{}".to_owned()])
        .await
        .unwrap();
    let counts = queue.dead_letter_counts().await.unwrap().unwrap();
    assert_eq!((counts.visible, counts.in_flight), (2, 0));
    assert_eq!(dlq.dead_letter_counts().await.unwrap(), None);
}

/// Every series an alert or a panel selects on is exported by a running
/// service, with every label it selects on; the depth gauges count what the
/// queue holds, the dead letter sent to SQS's dead-letter queue included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queried_metric_is_exported_by_a_running_service() {
    let endpoint = require!(service("SLUICE_TEST_SQS_ENDPOINT"));
    let dir = tempfile::tempdir().unwrap();
    let name = format!("monitoring-{}", uuid::Uuid::now_v7().simple());
    let queue_url = format!("{endpoint}/000000000000/{name}");
    let env = aws_env(&endpoint, &queue_url);
    let db = TestDb::Sqlite(dir.path().join("m.db"));
    let mut setup_env = env.clone();
    setup_env.push(("DATABASE_URL", db.url_string()));
    let setup = run(dir.path(), &setup_env, &["setup"], Duration::from_secs(60)).await;
    assert!(setup.status.success(), "setup: {}", setup.stderr);

    // One message straight into the dead-letter queue `setup` made.
    let client = sluice_core::queue::sqs::client(&sluice_core::queue::sqs::SqsSettings {
        queue_url: queue_url.clone(),
        endpoint_url: Some(endpoint.clone()),
        region: Some("us-east-1".into()),
        credentials: Some(("test".into(), "test".into())),
    })
    .await;
    let dlq_url = client
        .get_queue_url()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    client
        .send_message()
        .queue_url(&dlq_url)
        .message_body("{}")
        .send()
        .await
        .unwrap();

    let writer = WriterProcess::start_with(dir.path(), env.clone(), &db).await;
    let ingest = IngestProcess::start(dir.path(), &env).await;
    // A login, a record that is not one (rejected), and a refused request.
    let (status, _, body) = ingest
        .post(&[
            json!({"user_id": "mon-1", "ip": "198.51.100.7"}),
            json!({"not": "a login"}),
        ])
        .await;
    assert_eq!(status, 202, "{body}");
    let refused = reqwest::Client::new()
        .post(format!("http://{}/events", ingest.addr))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    let scrape_writer = || async {
        match writer.get("/metrics").await {
            Some((200, text)) => text,
            _ => String::new(),
        }
    };
    eventually(Duration::from_secs(60), "the envelope's lag", || async {
        metric_value(&scrape_writer().await, "sluice_writer_lag_seconds_count") >= 1.0
    })
    .await;
    let writer_text = scrape_writer().await;
    let ingest_text = ingest.metrics_text().await;
    ingest.stop().await;
    let (status, log) = writer.stop().await;
    assert!(status.success(), "{log}");

    let gauge = |state: &str| {
        metric_value(
            &writer_text,
            &format!("sluice_writer_queue_messages{{state=\"{state}\"}}"),
        )
    };
    assert_eq!(gauge("dead_letter"), 1.0, "{writer_text}");
    assert!(writer_text.contains("sluice_writer_queue_messages{state=\"visible\"}"));
    assert!(writer_text.contains("sluice_writer_queue_messages{state=\"in_flight\"}"));
    let lag = metric_value(&writer_text, "sluice_writer_lag_seconds_sum");
    assert!((0.0..60.0).contains(&lag), "lag {lag} s");

    let ingest_series = exported(&ingest_text);
    let writer_series = exported(&writer_text);
    let queries: Vec<(String, String)> = alerts().into_iter().chain(panel_queries()).collect();
    assert!(queries.len() >= 20, "found the queries: {queries:?}");
    let mut missing = Vec::new();
    for (what, expr) in &queries {
        for (metric, labels) in selectors(expr) {
            let series = if metric.starts_with("sluice_ingest_") {
                &ingest_series
            } else {
                &writer_series
            };
            match series.get(&metric) {
                None => missing.push(format!("{what}: {metric} is not exported ({expr})")),
                Some(carried) => {
                    for label in labels.difference(carried) {
                        missing.push(format!("{what}: {metric} has no label {label} ({expr})"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
