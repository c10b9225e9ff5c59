//! What clients see on bad input and conflicts.

use reqwest::StatusCode;
use serde_json::json;
use strata_tests::tree::write_noise;
use strata_tests::{Options, TestApp};

#[tokio::test]
async fn bad_input_gets_clear_errors_naming_the_field() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    app.create_source("src", &src).await;

    let (status, body) = app
        .post(
            "/api/v1/backup/create",
            json!({ "source": "nope", "type": "full" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "source_not_found");

    let (status, body) = app
        .post(
            "/api/v1/backup/create",
            json!({ "source": "src", "type": "weekly" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_backup_type");
    assert_eq!(body["error"]["field"], "type");
    let msg = body["error"]["message"].as_str().unwrap();
    for valid in ["full", "incremental", "differential"] {
        assert!(msg.contains(valid), "{msg}");
    }

    let res = app
        .client
        .post(format!("{}/api/v1/backup/create", app.base))
        .header("content-type", "application/json")
        .body("{\"source\": \"src\",")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json");

    // With more than one source, leaving `source` out is an error naming it.
    let other = app.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    app.create_source("other", &other).await;
    let (status, body) = app
        .post("/api/v1/backup/create", json!({ "type": "full" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "source_required");
    assert_eq!(body["error"]["field"], "source");

    let (status, body) = app
        .post("/api/v1/backup/restore/no-such-backup", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "backup_not_found");

    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "rel", "files": { "path": "relative/path" } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "files.path");

    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "src", "files": { "path": "/tmp" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "source_name_taken");

    let (status, body) = app
        .post(
            "/api/v1/backup/create",
            json!({ "source": "src", "type": "full", "name": "Bad Name" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "name");

    let (status, body) = app.get("/api/v1/jobs/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.get("/api/v1/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "route_not_found");
}

#[tokio::test]
async fn two_restores_of_one_source_at_once_one_accepted_one_conflict() {
    let mut app = TestApp::spawn(Options {
        workers: 1,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("f.bin"), 3, 1024 * 1024);
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    app.wait_success(b["job_id"].as_str().unwrap()).await;
    // No worker: the accepted restore stays queued while the second arrives.
    app.kill_worker(0);

    let backup_id = b["backup_id"].as_str().unwrap().to_string();
    let requests = (0..2).map(|i| {
        let target = app.dir.path().join(format!("out{i}"));
        let path = format!("/api/v1/backup/restore/{backup_id}");
        let app = &app;
        async move { app.post(&path, json!({ "target": target })).await }
    });
    let results = futures::future::join_all(requests).await;
    let accepted: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .collect();
    let conflicts: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .collect();
    assert_eq!((accepted.len(), conflicts.len()), (1, 1), "{results:?}");
    let winner = accepted[0].1["job_id"].as_str().unwrap();
    assert_eq!(conflicts[0].1["error"]["code"], "job_in_progress");
    assert_eq!(
        conflicts[0].1["error"]["job_id"], winner,
        "{:?}",
        conflicts[0]
    );

    // A backup of the same source is refused too while the restore waits.
    let (status, body) = app
        .post(
            "/api/v1/backup/create",
            json!({ "source": "src", "type": "full" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    app.spawn_worker();
    app.wait_success(winner).await;
}

#[tokio::test]
async fn health_reports_every_dependency() {
    let app = TestApp::spawn(Options::default()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, body) = app.get("/api/v1/health").await;
        assert_eq!(status, StatusCode::OK);
        if body["status"] == "ok" {
            assert_eq!(body["canBackup"], true, "{body}");
            for dep in ["database", "queue", "storage", "repository"] {
                assert_eq!(body["checks"][dep]["status"], "ok", "{body}");
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (status, _) = app.get("/livez").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
}
