//! `crates/ingest/openapi.json` against the router: the served document is
//! the repository's; every route the source registers is documented; every
//! documented operation answers a running ingest with a documented status
//! (the request examples are accepted, a wrong method gets its documented
//! 405), and error bodies have the documented shape.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use sluice_ingest::openapi::DOCUMENT;

use crate::helpers::*;

fn document() -> Value {
    serde_json::from_str(DOCUMENT).unwrap()
}

/// Every `.rs` file under `dir`, its folders included.
fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(path, method)` of every `.route("…", method(…))` in ingest's sources.
fn registered_routes() -> Vec<(String, String)> {
    let mut files = Vec::new();
    sources(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for (_, rest) in text
            .match_indices(".route(\"")
            .map(|(i, _)| text.split_at(i + 8))
        {
            let (path, after) = rest.split_once('"').unwrap();
            let after = after.trim_start_matches([',', ' ', '\n']);
            let (methods, _) = after.split_once('(').unwrap();
            // `get(a).post(b)` chains are not used; one method per route.
            routes.push((path.to_owned(), methods.trim().to_owned()));
        }
    }
    routes.sort();
    routes
}

#[test]
fn every_registered_route_is_documented() {
    let doc = document();
    let routes = registered_routes();
    assert!(
        routes.len() >= 5,
        "the route scan finds the router: {routes:?}"
    );
    for (path, method) in &routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is registered but not in openapi.json"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "openapi.json documents an operation the router does not register: {routes:?}"
    );
}

/// Headers, body and the status they are refused with.
type Refusal<'a> = (&'a [(&'a str, &'a str)], &'a str, u16);

/// Checks an answer against the operation's documented responses.
fn conforms(doc: &Value, path: &str, method: &str, answer: &Answer) {
    let operation = &doc["paths"][path][method];
    let response = &operation["responses"][answer.status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} answered {} (body {}), which is not documented",
        answer.status,
        answer.text
    );
    let content_type = answer.headers["content-type"].to_str().unwrap();
    let documented = response["content"].as_object().unwrap();
    assert!(
        documented
            .keys()
            .any(|k| content_type.starts_with(k.as_str())),
        "{method} {path} {}: content type {content_type} not among {:?}",
        answer.status,
        documented.keys().collect::<Vec<_>>()
    );
    if answer.status >= 400 {
        let code = answer.error(answer.status);
        let allowed = response["content"]["application/json"]["schema"]["allOf"][1]["properties"]
            ["error"]["enum"]
            .as_array()
            .unwrap();
        assert!(
            allowed.iter().any(|c| c == code.as_str()),
            "{method} {path} {}: code {code} not among {allowed:?}",
            answer.status
        );
    }
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        if header["required"] == true {
            assert!(
                answer.headers.contains_key(name.as_str()),
                "{method} {path} {}: header {name} missing",
                answer.status
            );
        }
    }
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let queue = TestQueue::embedded();
    // Every example must be accepted: give the embedded queue's synced
    // commits room on a busy machine (a 503 here is load, not the document).
    let mut settings = test_settings();
    settings.batch.enqueue_timeout = Duration::from_secs(60);
    settings.request_timeout = Duration::from_secs(90);
    let ingest = RunningIngest::start(queue.shared(), settings).await;
    let doc = document();

    let served = ingest.get("/openapi.json").await;
    conforms(&doc, "/openapi.json", "get", &served);
    assert_eq!(
        served.text, DOCUMENT,
        "the served document is the repository's"
    );

    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = ingest.get(path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        conforms(&doc, path, "get", &answer);
    }

    // Every request example is accepted, as JSON and gzip- and deflate-
    // compressed (the documented encodings).
    let body = &doc["paths"]["/events"]["post"]["requestBody"]["content"];
    let mut examples: Vec<(&str, String)> = body["application/json"]["examples"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| ("application/json", e["value"].to_string()))
        .collect();
    // NDJSON is documented by the schema of each line: two lines.
    let line = body["application/x-ndjson"]["example"].to_string();
    examples.push(("application/x-ndjson", format!("{line}\n{line}\n")));
    assert_eq!(examples.len(), 4, "object, array, envelope and NDJSON");
    for (content_type, example) in &examples {
        let plain = ingest
            .post(example.clone(), &[("content-type", content_type)])
            .await;
        assert_eq!(
            plain.status, 202,
            "{content_type} {example}: {}",
            plain.text
        );
        conforms(&doc, "/events", "post", &plain);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(example.as_bytes()).unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(example.as_bytes()).unwrap();
        for (encoding, bytes) in [
            ("gzip", gz.finish().unwrap()),
            ("deflate", zlib.finish().unwrap()),
        ] {
            let headers = [
                ("content-type", *content_type),
                ("content-encoding", encoding),
            ];
            let answer = ingest.post(bytes, &headers).await;
            assert_eq!(answer.status, 202, "{encoding} {example}: {}", answer.text);
        }
    }

    // Refusals: each status answered as documented.
    let refusals: [Refusal; 6] = [
        (&[], "{", 400),
        (&[], "[]", 400),
        (&[("idempotency-key", "")], "{}", 400),
        (&[("content-encoding", "gzip")], "{}", 400),
        (&[("content-encoding", "br")], "{}", 415),
        (&[("content-type", "text/plain")], "{}", 415),
    ];
    for (headers, body, status) in refusals {
        let answer = ingest.post(body, headers).await;
        assert_eq!(answer.status, status, "{headers:?} {body}: {}", answer.text);
        conforms(&doc, "/events", "post", &answer);
    }

    // A method a path does not serve: the documented 405.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let wrong = if item.get("get").is_some() {
            "DELETE"
        } else {
            "GET"
        };
        let answer = Answer::from(
            ingest
                .client
                .request(wrong.parse().unwrap(), ingest.url(path))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, 405, "{wrong} {path}: {}", answer.text);
        let method = item.as_object().unwrap().keys().next().unwrap();
        conforms(&doc, path, method, &answer);
    }
    ingest.stop().await;
}

/// With `INGEST_TOKEN` set, the documented 401 and its `WWW-Authenticate`.
#[tokio::test]
async fn the_documented_401() {
    let queue = TestQueue::embedded();
    let mut settings = test_settings();
    settings.token = Some(sluice_ingest::auth::Token::new("s3cret"));
    let ingest = RunningIngest::start(queue.shared(), settings).await;
    let answer = ingest.post("{}", &[]).await;
    conforms(&document(), "/events", "post", &answer);
    assert_eq!(answer.status, 401);
    let ok = ingest
        .post("{}", &[("authorization", "Bearer s3cret")])
        .await;
    assert_eq!(ok.status, 202, "{}", ok.text);
    ingest.stop().await;
}
