//! Deleting a source (`DELETE /api/v1/sources/{id}`, issue 20's `strata sources rm`):
//! admins only, never while backups or a job of it remain, its schedules with it, its
//! finished jobs kept; odd spellings and traversal name no other source.

use reqwest::{Method, StatusCode};
use serde_json::json;
use strata_tests::{authed_client, Options, TestApp};

#[tokio::test]
async fn a_source_is_deleted_only_by_an_admin_and_only_without_backups() {
    let app = TestApp::spawn(Options::default()).await;
    let (a, b) = (app.dir.path().join("a"), app.dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f.txt"), b"x").unwrap();
    }
    app.create_source("a", &a).await;
    app.create_source("b", &b).await;
    let accepted = app.backup("a", "full").await;
    let backup_job = accepted["job_id"].as_str().unwrap().to_string();
    app.wait_success(&backup_job).await;
    let backup = accepted["backup_id"].as_str().unwrap().to_string();
    let (status, schedule) = app
        .post(
            "/api/v1/backup/schedule",
            json!({"source": "b", "cron": "0 3 * * *"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let schedule_id = schedule["id"].as_str().unwrap().to_string();

    // Other roles are refused, whatever the source.
    for role in ["viewer", "backup_operator"] {
        let (_, key) = app
            .post("/api/v1/keys", json!({"name": role, "role": role}))
            .await;
        let res = authed_client(key["key"].as_str().unwrap())
            .delete(format!("{}/api/v1/sources/b", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{role}");
    }
    let res = reqwest::Client::new()
        .delete(format!("{}/api/v1/sources/b", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Unknown names, odd spellings and traversal: 404, nothing deleted.
    for path in [
        "nope",
        "B",
        "b%00",
        "..%2Fb",
        "%2E%2E",
        "b%20",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let (status, body) = app
            .request(Method::DELETE, &format!("/api/v1/sources/{path}"), None)
            .await;
        assert!(status == StatusCode::NOT_FOUND, "{path}: {status} {body}");
        // `..` is resolved by the router to another path, which no route matches.
        let code = body["error"]["code"].as_str().unwrap_or("");
        assert!(
            code == "source_not_found" || code == "route_not_found",
            "{path}: {body}"
        );
    }
    let (_, listed) = app.get("/api/v1/sources").await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        2,
        "nothing deleted: {listed}"
    );

    // A source with a backup stays: 409, saying how many.
    let (status, body) = app.request(Method::DELETE, "/api/v1/sources/a", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "source_has_backups", "{body}");
    assert_eq!(body["error"]["backups"], 1, "{body}");
    let (status, _) = app.get("/api/v1/sources/a").await;
    assert_eq!(status, StatusCode::OK);

    // Once its backup is deleted, it goes (by id); its finished job stays, detached.
    let (status, deleted) = app
        .request(Method::DELETE, &format!("/api/v1/backup/{backup}"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deleted}");
    app.wait_success(deleted["job_id"].as_str().unwrap()).await;
    let (_, source_a) = app.get("/api/v1/sources/a").await;
    let id = source_a["id"].as_str().unwrap();
    let (status, body) = app
        .request(Method::DELETE, &format!("/api/v1/sources/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = app.get("/api/v1/sources/a").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let job = app.job(&backup_job).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["source_id"].is_null(), "{job}");

    // b goes with its schedule; the name can be used again.
    let (status, body) = app.request(Method::DELETE, "/api/v1/sources/b", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = app
        .get(&format!("/api/v1/backup/schedule/{schedule_id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.create_source("b", &b).await;
    let (status, body) = app.request(Method::DELETE, "/api/v1/sources/b", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}
