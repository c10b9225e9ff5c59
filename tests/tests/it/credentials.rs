//! Credentials: who the failure limiter blames (behind a proxy too), what a file token
//! is worth once its key is gone, roles that match the documentation, and the way back
//! in after losing every admin key.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strata_tests::{authed_client, Options, TestApp};

async fn key(app: &TestApp, name: &str, role: &str, expires_at: Option<String>) -> Value {
    let mut body = json!({ "name": name, "role": role });
    if let Some(at) = expires_at {
        body["expires_at"] = json!(at);
    }
    let (status, key) = app.post("/api/v1/keys", body).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    key
}

async fn status_of(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut req = client.get(url);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limiter_and_the_audit_log_see_the_forwarded_client() {
    let app = TestApp::spawn(Options {
        workers: 0,
        env: vec![
            ("STRATA_AUTH_MAX_FAILURES".into(), "3".into()),
            ("STRATA_AUTH_LOCKOUT_SECS".into(), "60".into()),
            ("STRATA_TRUSTED_PROXIES".into(), "127.0.0.0/8, ::1".into()),
        ],
        ..Default::default()
    })
    .await;
    let url = format!("{}/api/v1/sources", app.base);
    let wrong = authed_client(&strata_auth::keys::generate().token);
    let attacker = [("x-forwarded-for", "203.0.113.7")];
    for _ in 0..3 {
        assert_eq!(
            status_of(&wrong, &url, &attacker).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        status_of(&wrong, &url, &attacker).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy is not locked out...
    let neighbour = [("x-forwarded-for", "198.51.100.9")];
    assert_eq!(
        status_of(&wrong, &url, &neighbour).await,
        StatusCode::UNAUTHORIZED
    );
    // ...and a client cannot pick its address: entries it wrote itself (left of what the
    // proxy appended) are not believed.
    let spoofed = [("x-forwarded-for", "198.51.100.10, 203.0.113.7")];
    assert_eq!(
        status_of(&wrong, &url, &spoofed).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The audit log names the forwarded client.
    let (_, audit) = app.get("/api/v1/audit?outcome=denied&limit=100").await;
    let clients: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["client"].as_str().unwrap())
        .collect();
    assert!(clients.contains(&"203.0.113.7"), "{audit}");
    assert!(clients.contains(&"198.51.100.9"), "{audit}");
    assert!(!clients.contains(&"127.0.0.1"), "{audit}");
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_header_changes_nothing() {
    let app = TestApp::spawn(Options {
        workers: 0,
        env: vec![("STRATA_AUTH_MAX_FAILURES".into(), "3".into())],
        ..Default::default()
    })
    .await;
    let url = format!("{}/api/v1/sources", app.base);
    let wrong = authed_client(&strata_auth::keys::generate().token);
    // A new made-up address each time does not escape the limiter.
    for i in 0..3 {
        let xff = format!("192.0.2.{i}");
        assert_eq!(
            status_of(&wrong, &url, &[("x-forwarded-for", &xff)]).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        status_of(&wrong, &url, &[("x-forwarded-for", "192.0.2.99")]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let (_, audit) = app.get("/api/v1/audit?outcome=denied").await;
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["client"] == "127.0.0.1"));
}

#[tokio::test]
async fn a_file_token_dies_with_its_key_and_opens_only_its_backup() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    app.create_source("app", &src).await;
    let mut backups = Vec::new();
    for _ in 0..2 {
        let accepted = app.backup("app", "full").await;
        app.wait_success(accepted["job_id"].as_str().unwrap()).await;
        backups.push(accepted["backup_id"].as_str().unwrap().to_string());
    }
    let download = |id: &str, token: &str| {
        format!(
            "{}/api/v1/backup/{id}/download?token={token}",
            app.base.clone()
        )
    };
    let plain = reqwest::Client::new();

    // A token of an operator's key works until that key is revoked.
    let operator = key(&app, "operator", "backup_operator", None).await;
    let op_client = authed_client(operator["key"].as_str().unwrap());
    let res = op_client
        .post(format!("{}/api/v1/files/token", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let token: Value = res.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    assert_eq!(
        status_of(&plain, &download(&backups[0], &token), &[]).await,
        StatusCode::OK
    );
    let (status, _) = app
        .request(
            Method::DELETE,
            &format!("/api/v1/keys/{}", operator["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        status_of(&plain, &download(&backups[0], &token), &[]).await,
        StatusCode::UNAUTHORIZED,
        "a revoked key's file token still works"
    );

    // A token never outlives its key.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(20)).to_rfc3339();
    let short = key(&app, "short", "admin", Some(soon.clone())).await;
    let res = authed_client(short["key"].as_str().unwrap())
        .post(format!("{}/api/v1/files/token", app.base))
        .send()
        .await
        .unwrap();
    let issued: Value = res.json().await.unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        issued["expires_at"].as_str().unwrap().parse().unwrap();
    let key_expires: chrono::DateTime<chrono::Utc> = soon.parse().unwrap();
    assert!(expires <= key_expires, "{issued}");

    // A token for one backup opens that backup only.
    let (status, scoped) = app
        .post("/api/v1/files/token", json!({ "backup_id": backups[1] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{scoped}");
    assert_eq!(scoped["backup_id"], backups[1].as_str());
    let scoped = scoped["token"].as_str().unwrap();
    assert_eq!(
        status_of(&plain, &download(&backups[1], scoped), &[]).await,
        StatusCode::OK
    );
    let res = plain
        .get(download(&backups[0], scoped))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_scope", "{body}");
    // Naming a backup that does not exist is a 404 naming the field.
    let (status, body) = app
        .post(
            "/api/v1/files/token",
            json!({ "backup_id": "no-such-backup" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["field"], "backup_id", "{body}");
    let (status, body) = app
        .post("/api/v1/files/token", json!({ "backup": backups[0] }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "backup", "{body}");
}

#[tokio::test]
async fn roles_match_the_documentation_for_upload_and_cancel() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    app.create_source("app", &src).await;
    let operator = key(&app, "operator", "backup_operator", None).await;
    let op = authed_client(operator["key"].as_str().unwrap());

    // An upload becomes the source's newest full backup: admins only.
    let res = op
        .post(format!("{}/api/v1/backup/upload?source=app", app.base))
        .header("content-type", "application/x-tar")
        .body(vec![0u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // An operator cancels the backups and verifies it may start, nothing else. No worker
    // runs, so every job stays queued.
    let backup = app.backup("app", "full").await;
    let cancel = |id: &str| format!("{}/api/v1/jobs/{id}/cancel", app.base);
    let res = op
        .post(cancel(backup["job_id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.text().await);
    let (status, gc) = app.post("/api/v1/repository/gc", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{gc}");
    let res = op
        .post(cancel(gc["job_id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("admin"),
        "{body}"
    );
    // The job is untouched, and an admin may cancel it.
    let job = app.job(gc["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "queued", "{job}");
    let (status, _) = app
        .post(
            &format!("/api/v1/jobs/{}/cancel", gc["job_id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_bootstrap_key_is_reported_and_create_key_lets_an_admin_back_in() {
    let mut app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    // The only admin key revokes itself: nobody can get in any more.
    let (_, keys) = app.get("/api/v1/keys").await;
    let id = keys["items"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = app
        .request(Method::DELETE, &format!("/api/v1/keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/api/v1/sources").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // At its next start, the API says why the configured key does not work.
    app.kill_api();
    app.restart_api().await;
    let logs = app.full_logs();
    assert!(
        logs.contains("STRATA_BOOTSTRAP_ADMIN_KEY was revoked")
            && logs.contains("strata-api create-key --role admin"),
        "{}",
        app.logs()
    );

    // Bad arguments are a usage error naming the problem.
    let (status, out, log) = app.run_api_command(&["create-key"], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(out.is_empty());
    assert!(log.contains("--role is required"), "{log}");
    let (status, _, log) = app.run_api_command(&["create-key", "--role", "root"], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(log.contains("\"root\" is not valid"), "{log}");

    // `create-key` writes a new admin key straight into the database.
    let (status, out, log) =
        app.run_api_command(&["create-key", "--role", "admin", "--name", "rescue"], &[]);
    assert!(status.success(), "{log}");
    let token = out.trim();
    assert!(token.starts_with("strata_"), "{out}");
    let rescued = authed_client(token);
    let res = rescued
        .get(format!("{}/api/v1/keys", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let listed: Value = res.json().await.unwrap();
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["name"] == "rescue" && k["role"] == "admin"));
    // The rescue is in the audit log, and the key itself is in no log.
    let res = rescued
        .get(format!("{}/api/v1/audit?action=CLI%20create-key", app.base))
        .send()
        .await
        .unwrap();
    let audit: Value = res.json().await.unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert!(!app.full_logs().contains(token));
}
