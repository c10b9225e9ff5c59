//! Issue 16, item 8: bad input never gets a 500 or a non-JSON answer. Every refusal is
//! `{"error": {"code", "message", "field"?}}` with `application/json`, whatever the
//! route and however the body is wrong: too large (with or without a length), a NUL
//! character in any string, a wrong type, a missing or unknown field.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strata_api::routes::ROUTES;
use strata_tests::tree::write_noise;
use strata_tests::{raw_http, Options, TestApp};

fn id(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

/// An answer: status, content type, body text.
struct Answer {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The wire error shape, with the code and, when asked, the field.
    fn assert_wire_error(&self, what: &str) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "{what}: {} answered {:?}: {}",
            self.status,
            self.content_type,
            self.text
        );
        let body = self.json();
        let err = &body["error"];
        assert!(
            err["code"].is_string() && err["message"].is_string(),
            "{what}: not the wire error shape: {}",
            self.text
        );
        assert!(
            err["field"].is_null() || err["field"].is_string(),
            "{what}: {}",
            self.text
        );
        body
    }
}

async fn send(app: &TestApp, method: &str, path: &str, body: reqwest::Body) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let res = app
        .client
        .request(method, format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = res.text().await.unwrap_or_default();
    Answer {
        status,
        content_type,
        text,
    }
}

/// The body in chunks of 64 KiB (`Transfer-Encoding: chunked`: no length announced).
async fn send_chunked(app: &TestApp, method: &str, path: &str, body: &[u8]) -> Answer {
    let addr = app.base.trim_start_matches("http://");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.admin_key
    )
    .into_bytes();
    for chunk in body.chunks(64 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let raw = raw_http::exchange(&app.base, request).await;
    Answer {
        status: StatusCode::from_u16(raw.status).unwrap(),
        content_type: raw.header("content-type").unwrap_or("").to_string(),
        text: raw.body.clone(),
    }
}

async fn send_json(app: &TestApp, method: &str, path: &str, body: &Value) -> Answer {
    send(app, method, path, reqwest::Body::from(body.to_string())).await
}

/// A route's pattern with its parameters filled in.
fn concrete(pattern: &str, ids: &[(&str, &str)]) -> String {
    let mut path = pattern.to_string();
    for (name, value) in ids {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    assert!(!path.contains('{'), "unfilled parameter in {pattern}");
    path
}

/// An app with a source, a complete backup and a schedule, for routes that need them.
async fn app_with_a_backup() -> (TestApp, Vec<(&'static str, String)>) {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write_noise(&src.join("sub/x"), 1, 10_000);
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    app.wait_success(&id(&b, "job_id")).await;
    let (status, schedule) = app
        .post(
            "/api/v1/backup/schedule",
            json!({"source": "src", "cron": "0 3 * * *", "enabled": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let ids = vec![
        ("backup_id", id(&b, "backup_id")),
        ("job_id", id(&b, "job_id")),
        ("schedule_id", id(&schedule, "id")),
        ("id", "nope".to_string()),
        ("user_id", "nope".to_string()),
        ("key", "nope.zip".to_string()),
    ];
    (app, ids)
}

/// The routes of Strata's own API whose OpenAPI operation takes a JSON body. (The
/// PocketBase-compatible routes read bodies as PocketBase does, ignoring unknown fields,
/// and answer in its shape: checked in `pocketbase_routes_answer_bad_bodies_in_their_shape`.)
async fn json_body_routes(app: &TestApp) -> Vec<(String, String)> {
    let (status, spec) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut out = Vec::new();
    for route in ROUTES.iter().filter(|r| !r.pocketbase()) {
        let op = &spec["paths"][route.path][route.method.to_ascii_lowercase()];
        if !op["requestBody"]["content"]["application/json"].is_null() {
            out.push((route.method.to_string(), route.path.to_string()));
        }
    }
    out
}

/// The defect: a body over the 1 MiB limit sent to a route that reads its body by hand
/// answered `413` in `text/plain`. Every JSON route of the route table now answers `413
/// payload_too_large` in the wire shape, whether the body's length is announced or
/// streamed (chunked); no route taking no body answers a 5xx or a non-JSON error.
#[tokio::test]
async fn an_oversized_body_to_any_route_is_a_413_in_the_wire_shape() {
    let (app, ids) = app_with_a_backup().await;
    let ids: Vec<(&str, &str)> = ids.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let json_routes = json_body_routes(&app).await;
    assert!(
        json_routes.len() >= 10,
        "the OpenAPI document lists the JSON bodies: {json_routes:?}"
    );
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(2 << 20));
    for route in ROUTES {
        if !matches!(route.method, "POST" | "PUT" | "DELETE")
            || route.path == "/api/v1/backup/upload"
        {
            continue;
        }
        let takes_json = json_routes
            .iter()
            .any(|(m, p)| m == route.method && p == route.path);
        let path = concrete(route.path, &ids);
        let what = format!("{} {}", route.method, route.path);
        let known = send(&app, route.method, &path, reqwest::Body::from(big.clone())).await;
        let streamed = send_chunked(&app, route.method, &path, big.as_bytes()).await;
        for (how, answer) in [("with a length", &known), ("chunked", &streamed)] {
            let what = format!("{what} ({how})");
            assert!(!answer.status.is_server_error(), "{what}: {}", answer.text);
            if route.pocketbase() {
                // PocketBase's shape: `{status, message, data}`.
                let body = answer.json();
                assert!(
                    answer.status.is_client_error()
                        && body["status"] == answer.status.as_u16()
                        && body["data"].is_object(),
                    "{what}: {} {}",
                    answer.status,
                    answer.text
                );
            } else if takes_json {
                assert_eq!(
                    answer.status,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "{what}: {}",
                    answer.text
                );
                let body = answer.assert_wire_error(&what);
                assert_eq!(body["error"]["code"], "payload_too_large", "{what}");
            } else if answer.status.is_client_error() {
                answer.assert_wire_error(&what);
            }
        }
    }
}

/// The defect: `include: ["sub\u0000x"]` in a restore request answered `500` (PostgreSQL
/// text cannot hold a NUL). It is a `400` naming the field.
#[tokio::test]
async fn a_nul_character_in_a_restore_include_is_a_400_naming_the_field() {
    let (app, ids) = app_with_a_backup().await;
    let backup_id = &ids[0].1;
    let target = app.dir.path().join("restored");
    let answer = send_json(
        &app,
        "POST",
        &format!("/api/v1/backup/restore/{backup_id}"),
        &json!({ "target": target, "include": ["sub\u{0}x"] }),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    let body = answer.assert_wire_error("include with a NUL");
    assert_eq!(body["error"]["field"], "include[0]", "{body}");
    // Nothing was queued.
    let (_, jobs) = app.get("/api/v1/jobs?kind=restore").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 0, "{jobs}");
}

/// Every string value of a body put through each JSON route with a NUL character in
/// it, one at a time, and a NUL in the string parameters of the lists: always a 4xx in
/// the wire shape, never a 5xx.
#[tokio::test]
async fn a_nul_character_in_any_string_of_a_request_is_a_4xx_never_a_500() {
    let (app, ids) = app_with_a_backup().await;
    let ids: Vec<(&str, &str)> = ids.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let tmp = app.dir.path().display().to_string();
    let bodies: Vec<(&str, &str, Value)> = vec![
        (
            "POST",
            "/api/v1/sources",
            json!({"name": "s2", "files": {"path": format!("{tmp}/s2"), "exclude": ["*.tmp"]}}),
        ),
        (
            "POST",
            "/api/v1/sources",
            json!({"name": "s3", "database": {"postgres": "postgres://u@127.0.0.1/db", "schemas": ["public"]}}),
        ),
        (
            "POST",
            "/api/v1/sources",
            json!({"name": "s4", "database": {"sqlite": format!("{tmp}/a.db")}}),
        ),
        (
            "POST",
            "/api/v1/backup/create",
            json!({"source": "src", "type": "full", "name": "n1"}),
        ),
        (
            "POST",
            "/api/v1/backup/restore/{backup_id}",
            json!({"target": format!("{tmp}/t1"), "include": ["sub"]}),
        ),
        (
            "POST",
            "/api/v1/backup/restore/{backup_id}",
            json!({"target": {"files": format!("{tmp}/t2"), "database": "d"}}),
        ),
        (
            "POST",
            "/api/v1/backup/{backup_id}/verify",
            json!({"mode": "data"}),
        ),
        (
            "POST",
            "/api/v1/backup/prune",
            json!({"source": "src", "keep_last": 1, "dry_run": true}),
        ),
        (
            "POST",
            "/api/v1/backup/schedule",
            json!({"source": "src", "type": "full", "cron": "0 2 * * *", "timezone": "Europe/Paris", "enabled": false}),
        ),
        (
            "PUT",
            "/api/v1/backup/schedule/{schedule_id}",
            json!({"source": "src", "cron": "0 4 * * *", "timezone": "UTC", "enabled": false}),
        ),
        (
            "POST",
            "/api/v1/config/import",
            json!({"config": {"sources": {"src": {"files": {"path": format!("{tmp}/src"), "exclude": ["*.x"]}}}}, "exportedAt": "2026-01-01T00:00:00Z"}),
        ),
        (
            "POST",
            "/api/v1/keys",
            json!({"name": "k", "role": "viewer"}),
        ),
        (
            "POST",
            "/api/v1/files/token",
            json!({"backup_id": "{backup_id}"}),
        ),
    ];
    let mut tried = 0;
    for (method, pattern, body) in bodies {
        let path = concrete(pattern, &ids);
        let body = fill_ids(&body, &ids);
        for poisoned in with_a_nul_in_each_string(&body) {
            let what = format!("{method} {pattern} {poisoned}");
            let answer = send_json(&app, method, &path, &poisoned).await;
            assert!(
                !answer.status.is_server_error(),
                "{what}: {} {}",
                answer.status,
                answer.text
            );
            if !answer.status.is_success() {
                answer.assert_wire_error(&what);
            }
            tried += 1;
        }
    }
    assert!(tried >= 25, "{tried}");
    for query in [
        "/api/v1/jobs?source=a%00b",
        "/api/v1/backup/list?source=a%00b",
        "/api/v1/backup/schedule?source=a%00b",
        "/api/v1/audit?actor=a%00b",
        "/api/v1/sources/a%00b",
        "/api/v1/backup/a%00b",
    ] {
        let answer = send(&app, "GET", query, reqwest::Body::from("")).await;
        assert!(
            answer.status.is_client_error(),
            "{query}: {} {}",
            answer.status,
            answer.text
        );
        answer.assert_wire_error(query);
    }
    // Nothing was done by any of them.
    let (_, sources) = app.get("/api/v1/sources").await;
    assert_eq!(sources["items"].as_array().unwrap().len(), 1, "{sources}");
    let (_, jobs) = app.get("/api/v1/jobs").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1, "{jobs}");
}

/// `{"name": 123}` names the field `name` (serde's message alone names the value):
/// wrong types, missing and unknown fields are `400 invalid_body` naming the field by
/// its path, on routes parsed by actix's JSON extractor and on those parsed by hand.
#[tokio::test]
async fn a_wrong_type_a_missing_or_an_unknown_field_is_named_by_its_path() {
    let (app, ids) = app_with_a_backup().await;
    let backup_id = &ids[0].1;
    let cases: Vec<(&str, String, Value, &str)> = vec![
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": 123}),
            "name",
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "files": {"path": 5}}),
            "files.path",
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "files": {"path": "/srv", "exclude": ["a", 7]}}),
            "files.exclude[1]",
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"files": {"path": "/srv"}}),
            "name",
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "files": {"path": "/srv"}, "colour": "red"}),
            "colour",
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "files": {"path": "/srv", "colour": 1}}),
            "files.colour",
        ),
        (
            "POST",
            "/api/v1/keys".into(),
            json!({"name": "k", "role": 7}),
            "role",
        ),
        (
            "POST",
            "/api/v1/backup/create".into(),
            json!({"source": "src", "type": 5}),
            "type",
        ),
        (
            "POST",
            "/api/v1/backup/create".into(),
            json!({"source": ["src"]}),
            "source",
        ),
        (
            "POST",
            format!("/api/v1/backup/restore/{backup_id}"),
            json!({"include": ["a", 1]}),
            "include[1]",
        ),
        (
            "POST",
            format!("/api/v1/backup/{backup_id}/verify"),
            json!({"mode": false}),
            "mode",
        ),
        (
            "POST",
            "/api/v1/config/import".into(),
            json!({"config": {}, "version": "one"}),
            "version",
        ),
        (
            "POST",
            "/api/v1/files/token".into(),
            json!({"backup_id": 3}),
            "backup_id",
        ),
    ];
    for (method, path, body, field) in cases {
        let what = format!("{method} {path} {body}");
        let answer = send_json(&app, method, &path, &body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            answer.text
        );
        let err = answer.assert_wire_error(&what);
        assert_eq!(err["error"]["field"], field, "{what}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field.rsplit('.').next().unwrap().split('[').next().unwrap()),
            "{what}: the message names the field: {err}"
        );
    }
}

/// A copy of `body` with `{name}` placeholders in strings replaced by `ids`.
fn fill_ids(body: &Value, ids: &[(&str, &str)]) -> Value {
    match body {
        Value::String(s) => {
            let mut s = s.clone();
            for (name, value) in ids {
                s = s.replace(&format!("{{{name}}}"), value);
            }
            Value::String(s)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_ids(v, ids)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_ids(v, ids)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One copy of `body` per string in it, with a NUL in the middle of that string.
fn with_a_nul_in_each_string(body: &Value) -> Vec<Value> {
    fn count(v: &Value) -> usize {
        match v {
            Value::String(_) => 1,
            Value::Array(items) => items.iter().map(count).sum(),
            Value::Object(map) => map.values().map(count).sum(),
            _ => 0,
        }
    }
    fn poison(v: &Value, target: usize, seen: &mut usize) -> Value {
        match v {
            Value::String(s) => {
                let mine = *seen == target;
                *seen += 1;
                if mine {
                    let mid = s.len() / 2;
                    let cut = (0..=mid)
                        .rev()
                        .find(|i| s.is_char_boundary(*i))
                        .unwrap_or(0);
                    Value::String(format!("{}\u{0}{}", &s[..cut], &s[cut..]))
                } else {
                    v.clone()
                }
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| poison(i, target, seen)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), poison(v, target, seen)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    (0..count(body)).map(|t| poison(body, t, &mut 0)).collect()
}

/// Issue 17: request bodies are parsed one way (typed, unknown fields refused), so the
/// same mistake gets the same code everywhere: an unknown field sent to every route of
/// the route table that takes a JSON body is `400 invalid_body` naming the field.
#[tokio::test]
async fn an_unknown_field_is_the_same_invalid_body_on_every_json_route() {
    let (app, ids) = app_with_a_backup().await;
    let ids: Vec<(&str, &str)> = ids.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let routes = json_body_routes(&app).await;
    assert!(routes.len() >= 10, "{routes:?}");
    for (method, pattern) in &routes {
        let path = concrete(pattern, &ids);
        let what = format!("{method} {pattern}");
        let answer = send_json(&app, method, &path, &json!({"zz_unknown": 1})).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            answer.text
        );
        let err = answer.assert_wire_error(&what);
        assert_eq!(err["error"]["code"], "invalid_body", "{what}: {err}");
        assert_eq!(err["error"]["field"], "zz_unknown", "{what}: {err}");
    }
}

/// The PocketBase-compatible routes answer bad bodies as PocketBase does: `400` with the
/// field in `data`, `413` for a body over 1 MiB, never a 5xx or Strata's own shape.
#[tokio::test]
async fn pocketbase_routes_answer_bad_bodies_in_their_shape() {
    let (app, _) = app_with_a_backup().await;
    for (path, body, status) in [
        ("/api/backups", "{not json", 400),
        ("/api/backups", r#"{"name": 7}"#, 400),
        ("/api/backups", r#"{"name": "x\u0000y.zip"}"#, 400),
        ("/api/collections/_superusers/auth-with-password", "[]", 400),
        (
            "/api/collections/_superusers/auth-with-password",
            r#"{"identity": "a@b.c"}"#,
            400,
        ),
        ("/api/admins/auth-with-password", r#"{"password": 1}"#, 400),
        ("/api/files/token", r#"{"backup_id": 5}"#, 400),
    ] {
        let answer = send(&app, "POST", path, reqwest::Body::from(body)).await;
        let json = answer.json();
        assert_eq!(
            answer.status.as_u16(),
            status,
            "{path} {body}: {}",
            answer.text
        );
        assert!(
            json["status"] == status && json["message"].is_string() && json["data"].is_object(),
            "{path} {body}: {}",
            answer.text
        );
    }
}
