//! The Backup API beyond the foundation: idempotent creates, list filters, the job list,
//! cancellation, pre-restore backups, configuration export and import.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::tree::{assert_same_tree, assert_tree_matches, snapshot, write_noise};
use strata_tests::{Options, TestApp};

fn id(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_string()
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_job_and_refuses_another_body() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("f.bin"), 1, 64 * 1024);
    app.create_source("src", &src).await;

    let post =
        |key: &'static str, body: Value| app.post_with_key("/api/v1/backup/create", key, body);
    let body = json!({ "source": "src", "type": "full", "name": "nightly" });
    let (s1, first) = post("key-1", body.clone()).await;
    assert_eq!(s1, StatusCode::ACCEPTED, "{first}");
    // The same request again (a client retrying after a timeout): the same job.
    let (s2, again) = post("key-1", body.clone()).await;
    assert_eq!(s2, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["job_id"], first["job_id"]);
    assert_eq!(again["backup_id"], "nightly");
    // The same key with another body: 422, and no second job.
    let (s3, other) = post("key-1", json!({ "source": "src", "type": "incremental" })).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
    assert_eq!(other["error"]["code"], "idempotency_key_reused");
    app.wait_success(&id(&first, "job_id")).await;
    let (_, jobs) = app.get("/api/v1/jobs?kind=backup").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1, "{jobs}");

    // Without a key, a repeated name is refused with 400, as the PocketBase-style API does.
    let (status, dup) = app.post("/api/v1/backup/create", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{dup}");
    assert_eq!(dup["error"]["code"], "backup_name_taken");
    assert_eq!(dup["error"]["field"], "name");
}

#[tokio::test]
async fn backups_and_jobs_list_newest_first_with_filters_and_cursors() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("f.bin"), 2, 64 * 1024);
    app.create_source("src", &src).await;
    // The only source may be left out (as in `POST /api/v1/backup` with no body).
    let (status, first) = app.post("/api/v1/backup", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    app.wait_success(&id(&first, "job_id")).await;
    let mut ids = vec![id(&first, "backup_id")];
    for (i, t) in ["incremental", "differential", "incremental"]
        .iter()
        .enumerate()
    {
        write_noise(&src.join(format!("g{i}.bin")), 10 + i as u64, 4096);
        let b = app.backup("src", t).await;
        app.wait_success(&id(&b, "job_id")).await;
        ids.push(id(&b, "backup_id"));
    }

    let (status, page1) = app.get("/api/v1/backup/list?limit=3").await;
    assert_eq!(status, StatusCode::OK, "{page1}");
    let items = page1["items"].as_array().unwrap();
    let listed: Vec<&str> = items.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![&ids[3], &ids[2], &ids[1]], "newest first");
    for b in items {
        for field in [
            "id",
            "type",
            "size",
            "created_at",
            "completed_at",
            "key",
            "modified",
        ] {
            assert!(!b[field].is_null(), "{field} missing in {b}");
        }
    }
    let next = page1["next"].as_str().expect("a next cursor");
    let (_, page2) = app
        .get(&format!("/api/v1/backup/list?limit=3&from={next}"))
        .await;
    let rest: Vec<&str> = page2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(rest, vec![&ids[0]]);
    assert!(page2["next"].is_null());

    let (_, incr) = app.get("/api/v1/backup/list?type=incremental").await;
    assert_eq!(incr["items"].as_array().unwrap().len(), 2, "{incr}");
    let (_, full) = app.get("/api/v1/backup?type=full&source=src").await;
    assert_eq!(full["items"][0]["id"], ids[0].as_str(), "{full}");
    // Time range: nothing was created before the epoch's first day; everything after it.
    let (_, none) = app
        .get("/api/v1/backup/list?created_before=1970-01-02T00:00:00Z")
        .await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0, "{none}");
    let (_, all) = app
        .get("/api/v1/backup/list?created_after=1970-01-02T00:00:00Z")
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4, "{all}");
    let (status, bad) = app.get("/api/v1/backup/list?type=weekly").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"]["field"], "type", "{bad}");

    let (status, jobs) = app
        .get("/api/v1/jobs?status=succeeded&kind=backup&limit=2")
        .await;
    assert_eq!(status, StatusCode::OK, "{jobs}");
    assert_eq!(jobs["items"].as_array().unwrap().len(), 2);
    let next = jobs["next"].as_str().expect("a next cursor");
    let (_, more) = app
        .get(&format!(
            "/api/v1/jobs?status=succeeded&kind=backup&limit=2&from={next}"
        ))
        .await;
    assert_eq!(more["items"].as_array().unwrap().len(), 2);
    assert!(more["next"].is_null(), "{more}");
    let (_, restores) = app.get("/api/v1/jobs?kind=restore").await;
    assert_eq!(restores["items"].as_array().unwrap().len(), 0);
    let (status, bad) = app.get("/api/v1/jobs?status=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"]["field"], "status", "{bad}");
}

#[tokio::test]
async fn a_queued_job_cancelled_never_starts() {
    let mut app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("f.bin"), 3, 64 * 1024);
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    let job_id = id(&b, "job_id");
    let (status, job) = app
        .post(&format!("/api/v1/jobs/{job_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "cancelled");
    // A worker arriving now finds nothing to do.
    app.spawn_worker();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let job = app.job(&job_id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(job["started_at"].is_null(), "{job}");
    let (_, backup) = app
        .get(&format!("/api/v1/backup/{}", id(&b, "backup_id")))
        .await;
    assert_eq!(backup["status"], "failed", "{backup}");
    // Cancelling again: the job has ended.
    let (status, again) = app
        .post(&format!("/api/v1/jobs/{job_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "job_already_finished");
    // The source is free for the next backup.
    let next = app.backup("src", "full").await;
    app.wait_success(&id(&next, "job_id")).await;
    let (status, _) = app
        .post(
            "/api/v1/jobs/00000000-0000-0000-0000-000000000000/cancel",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_running_backup_cancelled_stops_and_leaves_no_backup() {
    // Uploads limited to 16 MiB/s: the 96 MiB backup still runs when the cancel (seen
    // within ~0.1 s) lands, on any machine.
    let app = TestApp::spawn(Options {
        env: vec![("STRATA_LIMIT_UPLOAD_KIB".into(), "16384".into())],
        ..Options::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        write_noise(&src.join(format!("big{i}.bin")), 100 + i, 16 * 1024 * 1024);
    }
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    let job_id = id(&b, "job_id");
    // Wait until it is really working.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = app.job(&job_id).await;
        if job["status"] == "running" && job["progress"]["bytes_done"].as_i64() > Some(0) {
            break;
        }
        assert!(
            job["status"] != "succeeded",
            "the backup finished before it could be cancelled"
        );
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, job) = app
        .post(&format!("/api/v1/jobs/{job_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert!(!job["cancel_requested_at"].is_null(), "{job}");
    let job = app.wait_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["error"]["code"], "cancelled");
    let backup_id = id(&b, "backup_id");
    let (_, backup) = app.get(&format!("/api/v1/backup/{backup_id}")).await;
    assert_eq!(backup["status"], "failed", "{backup}");
    // No manifest: nothing a reader could mistake for a backup.
    let manifest = app.dir.path().join("data/repo/snapshots").join(&backup_id);
    assert!(!manifest.exists(), "{} exists", manifest.display());
    let (status, _) = app
        .post(&format!("/api/v1/backup/restore/{backup_id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn restoring_over_the_source_backs_up_its_current_state_first() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("a.bin"), 4, 200_000);
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    app.wait_success(&id(&b, "job_id")).await;
    let v1 = app.dir.path().join("v1");
    // Into another directory: no pre-restore backup.
    let r1 = app.restore(&id(&b, "backup_id"), &v1).await;
    assert!(r1["pre_restore_backup_id"].is_null(), "{r1}");
    app.wait_success(&id(&r1, "job_id")).await;
    // The source moves on.
    write_noise(&src.join("a.bin"), 5, 300_000);
    write_noise(&src.join("new.bin"), 6, 1000);
    let v2 = snapshot(&src);

    let (status, r) = app
        .post(
            &format!("/api/v1/backup/restore/{}", id(&b, "backup_id")),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let pre = id(&r, "pre_restore_backup_id");
    let job = app.wait_success(&id(&r, "job_id")).await;
    assert_eq!(job["result"]["pre_restore_backup_id"], pre.as_str());
    assert_same_tree(&v1, &src);
    // The state the restore replaced is a complete backup of its own.
    let (_, pre_backup) = app.get(&format!("/api/v1/backup/{pre}")).await;
    assert_eq!(pre_backup["status"], "complete", "{pre_backup}");
    let back = app.dir.path().join("back");
    let rr = app.restore(&pre, &back).await;
    app.wait_success(&id(&rr, "job_id")).await;
    assert_tree_matches(&v2, &back, "the pre-restore backup");

    // Opting out takes no backup.
    let (status, r) = app
        .post(
            &format!("/api/v1/backup/restore/{}", id(&b, "backup_id")),
            json!({ "pre_restore_backup": false }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    assert!(r["pre_restore_backup_id"].is_null(), "{r}");
    app.wait_success(&id(&r, "job_id")).await;
}

#[tokio::test]
async fn config_export_redacts_secrets_and_import_keeps_live_ones() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    app.create_source("app", &src).await;
    // A file token makes sure the installation's token secret exists.
    let (status, _) = app.post("/api/v1/files/token", json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let res = app
        .client
        .get(format!("{}/api/v1/config/export", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"strata-config-")
            && disposition.ends_with(".json\""),
        "{disposition}"
    );
    let export: Value = res.json().await.unwrap();
    assert_eq!(export["version"], 1);
    assert!(
        export["exportedAt"].as_str().unwrap().ends_with('Z'),
        "{export}"
    );
    assert_eq!(
        export["config"]["sources"]["app"]["files"]["path"],
        src.to_str().unwrap()
    );
    assert_eq!(
        export["config"]["settings"]["file_token_secret"],
        "[REDACTED]"
    );
    let text = export.to_string();
    let mut db = app.db().await;
    let live_secret: String =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'file_token_secret'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(!text.contains(&live_secret), "the export leaks the secret");

    // Edit the export: a retention policy for `app`, a new source, a broken one.
    let mut edited = export.clone();
    edited["config"]["sources"]["app"]["retention"] = json!({ "daily": 3, "weekly": 1 });
    edited["config"]["sources"]["docs"] =
        json!({ "kind": "directory", "files": { "path": "/srv/docs", "exclude": ["*.tmp"] } });
    edited["config"]["sources"]["broken"] = json!({ "files": { "path": "relative" } });
    let (status, report) = app.post("/api/v1/config/import", edited).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let applied = strings(&report["applied"]);
    assert!(
        applied.contains(&"sources.app.retention.daily".to_string()),
        "{report}"
    );
    assert!(
        applied.contains(&"sources.docs.files.path".to_string()),
        "{report}"
    );
    assert_eq!(
        strings(&report["skipped"]),
        vec!["settings.file_token_secret".to_string()]
    );
    assert_eq!(report["failed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["failed"][0]["path"], "sources.broken");

    let still: String =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'file_token_secret'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(
        still, live_secret,
        "a redacted value must not replace the live secret"
    );
    let (_, docs) = app.get("/api/v1/sources/docs").await;
    assert_eq!(docs["files"]["exclude"][0], "*.tmp", "{docs}");
    let (status, _) = app.get("/api/v1/sources/broken").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let retention: Value = sqlx::query_scalar("SELECT retention FROM sources WHERE name = 'app'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(retention, json!({ "daily": 3, "weekly": 1 }));

    let (status, bad) = app
        .post(
            "/api/v1/config/import",
            json!({ "config": {}, "version": 9 }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"]["field"], "version", "{bad}");
}

#[tokio::test]
async fn cancelling_a_queued_prune_gives_its_backups_back_as_they_were() {
    let mut app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("f.bin"), 8, 64 * 1024);
    app.create_source("src", &src).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let b = app.backup("src", "full").await;
        app.wait_success(&id(&b, "job_id")).await;
        ids.push(id(&b, "backup_id"));
    }
    // The middle one failed (as a backup whose worker died would have).
    let mut db = app.db().await;
    sqlx::query("UPDATE backups SET status = 'failed', completed_at = NULL WHERE id = $1")
        .bind(&ids[1])
        .execute(&mut db)
        .await
        .unwrap();
    app.kill_worker(0);
    let (status, pruned) = app
        .post(
            "/api/v1/backup/prune",
            json!({ "source": "src", "keep_last": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pruned}");
    assert_eq!(pruned["count"], 2, "{pruned}");
    let job_id = id(&pruned, "job_id");
    let (status, job) = app
        .post(&format!("/api/v1/jobs/{job_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    for (backup, expected) in [
        (&ids[0], "complete"),
        (&ids[1], "failed"),
        (&ids[2], "complete"),
    ] {
        let (_, b) = app.get(&format!("/api/v1/backup/{backup}")).await;
        assert_eq!(b["status"], expected, "{b}");
    }
}
