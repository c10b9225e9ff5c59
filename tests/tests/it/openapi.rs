//! The OpenAPI document served by a running API: version 3.1, an operation for every
//! route of the route table (and none for a route that does not exist), each with a
//! success response, the security its access needs, declared path parameters, and the
//! shared error body on its error responses; and the human-readable page made from it.

use reqwest::StatusCode;
use serde_json::Value;
use strata_api::routes::{Access, ROUTES};
use strata_tests::{Options, TestApp};

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch", "head", "options"];

/// Fetches a public page without any credential.
async fn fetch(base: &str, path: &str) -> reqwest::Response {
    let res = reqwest::get(format!("{base}{path}"))
        .await
        .expect("request");
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "GET {path} without credentials"
    );
    res
}

async fn spec(app: &TestApp) -> Value {
    fetch(&app.base, "/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("the spec is JSON")
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    doc["paths"][path]
        .get(method.to_lowercase())
        .filter(|op| op.is_object())
}

/// Every `(METHOD, path, operation)` of the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(*m) {
                out.push((m.to_uppercase(), path.clone(), op));
            }
        }
    }
    out
}

fn response_schema_ref<'a>(doc: &'a Value, res: &'a Value) -> Option<&'a str> {
    let res = match res["$ref"].as_str() {
        Some(r) => &doc["components"]["responses"][r.rsplit('/').next()?],
        None => res,
    };
    res["content"]["application/json"]["schema"]["$ref"].as_str()
}

#[tokio::test]
async fn spec_documents_every_route() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let doc = spec(&app).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi version {version:?}");
    assert_eq!(doc["info"]["title"], "Strata");

    let missing: Vec<String> = ROUTES
        .iter()
        .filter(|r| operation(&doc, r.method, r.path).is_none())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:#?}"
    );
    let mut problems = Vec::new();
    for (method, path, op) in operations(&doc) {
        let name = format!("{method} {path}");
        let Some(route) = ROUTES.iter().find(|r| r.method == method && r.path == path) else {
            problems.push(format!("{name}: documented but not in the route table"));
            continue;
        };
        let responses = op["responses"].as_object().expect("responses");
        if !responses.keys().any(|s| s.starts_with('2')) {
            problems.push(format!("{name}: no 2xx response"));
        }
        let schemes: Vec<&str> = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|req| req.as_object())
            .flat_map(|req| req.keys().map(String::as_str))
            .collect();
        match route.access {
            Access::Public | Access::Login | Access::Optional if !schemes.is_empty() => {
                problems.push(format!("{name}: public but declares {schemes:?}"))
            }
            Access::Role(_) | Access::Download(_) => {
                if !schemes.contains(&"bearer") {
                    problems.push(format!("{name}: no bearer security"));
                }
                for status in ["401", "403", "429"] {
                    if !responses.contains_key(status) {
                        problems.push(format!("{name}: no {status} response"));
                    }
                }
            }
            _ => {}
        }
        if matches!(route.access, Access::Download(_)) && !schemes.contains(&"file_token") {
            problems.push(format!(
                "{name}: a download route without file_token security"
            ));
        }
        for (status, res) in responses {
            let is_error = status.starts_with('4') || status.starts_with('5');
            // `/readyz` answers 503 with its own status body: a probe, not an error.
            if is_error && path != "/readyz" {
                let r = response_schema_ref(&doc, res);
                // The PocketBase-compatible routes answer in PocketBase's error shape.
                let want = if route.pocketbase() {
                    "#/components/schemas/PbErrorBody"
                } else {
                    "#/components/schemas/ErrorBody"
                };
                if r != Some(want) {
                    problems.push(format!("{name}: {status} is not a {want} ({r:?})"));
                }
            }
        }
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let param = segment.trim_matches(|c| c == '{' || c == '}');
            let declared = op["parameters"].as_array().into_iter().flatten().any(|p| {
                p["in"] == "path" && p["name"] == param && p["required"] == Value::Bool(true)
            });
            if !declared {
                problems.push(format!("{name}: path parameter {param} not declared"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["file_token"]["in"], "query", "{schemes}");
    assert_eq!(schemes["file_token"]["name"], "token", "{schemes}");
}

#[tokio::test]
async fn docs_page_is_self_contained_and_lists_every_operation() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let doc = spec(&app).await;
    let res = fetch(&app.base, "/api/v1/docs").await;
    let ctype = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/html"), "{ctype}");
    let page = res.text().await.unwrap();
    for (method, path, _) in operations(&doc) {
        let shown = format!("<span class=\"m {method}\">{method}</span> <code>{path}</code>");
        assert!(page.contains(&shown), "the page lacks {method} {path}");
    }
    for schema in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            page.contains(&format!("id=\"schema-{schema}\"")),
            "no schema {schema}"
        );
    }
    // Nothing to fetch from elsewhere: no script, stylesheet link or image.
    for needle in ["<script", "<link", "<img", "src=", "@import", "url("] {
        assert!(!page.contains(needle), "the page contains {needle}");
    }
}

/// The documented response shapes are what the handlers send: a typed struct now
/// replaces each ad-hoc JSON object, so check the fields clients already rely on.
#[tokio::test]
async fn typed_responses_keep_their_fields() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, health) = app.get("/api/v1/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    for field in [
        "status",
        "canBackup",
        "backupInProgress",
        "checks",
        "version",
    ] {
        assert!(
            health.get(field).is_some(),
            "health lacks {field}: {health}"
        );
    }
    assert_eq!(
        health["checks"]["database"],
        serde_json::json!({"status": "ok"})
    );

    let (status, key) = app
        .post(
            "/api/v1/keys",
            serde_json::json!({"name": "ci", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert!(key["key"].as_str().unwrap().starts_with("strata_"), "{key}");
    assert_eq!(key["role"], "viewer");
    assert!(
        key["id"].is_string() && key["created_at"].is_string(),
        "{key}"
    );

    let (status, page) = app
        .get("/api/v1/audit?action=POST%20/api/v1/keys&limit=1")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["limit"], 1);
    // The key's creation is the only entry of that action, so no next page, and `next`
    // is present as null.
    assert_eq!(page.get("next"), Some(&Value::Null), "{page}");
    assert_eq!(page["items"][0]["action"], "POST /api/v1/keys", "{page}");

    let (status, token) = app.post("/api/v1/files/token", serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert!(
        token["token"].is_string() && token["expires_at"].is_string(),
        "{token}"
    );
    assert!(token["usage"].is_string(), "{token}");
}
