//! Conformance: for each reference API in `../shared/seeds/`, its documented workflow
//! performed against Strata, checking the fields it documents (under Strata's names
//! where they differ; docs/API-MAPPING.md lists them).

use std::io::Read;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::downloads::{fetch, sqlite_notes, tar_files, write_sqlite_notes};
use strata_tests::tree::{assert_tree_matches, snapshot, write_noise};
use strata_tests::{Options, TestApp};

fn s(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_string()
}

fn source_with_files(app: &TestApp, name: &str) -> std::path::PathBuf {
    let src = app.dir.path().join(name);
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write_noise(&src.join("data.bin"), 7, 300_000);
    std::fs::write(src.join("sub/notes.txt"), b"hello from the seed\n").unwrap();
    src
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Seed 000 — the bot platform's Backup API: create (full / incremental / differential,
/// include_files), list, details, restore to "staging" and poll, delete; roles.
#[tokio::test]
async fn seed_000_bot_platform_backup_api() {
    let app = TestApp::spawn(Options::default()).await;
    let src = source_with_files(&app, "bot");
    app.create_source("bot", &src).await;

    // backup_options.type = "full"; include_files = true → result.backup_id
    let (status, created) = app
        .post(
            "/api/v1/backup/create",
            json!({ "source": "bot", "type": "full", "include_files": true }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let full = s(&created, "backup_id");
    app.wait_success(&s(&created, "job_id")).await;
    // A database part this source does not have is refused, naming the field.
    let (status, err) = app
        .post(
            "/api/v1/backup/create",
            json!({ "source": "bot", "include_database": true }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["field"], "include_database");
    std::fs::write(src.join("sub/notes.txt"), b"changed\n").unwrap();
    let mut chain = vec![full.clone()];
    for t in ["incremental", "differential"] {
        let b = app.backup("bot", t).await;
        app.wait_success(&s(&b, "job_id")).await;
        chain.push(s(&b, "backup_id"));
    }

    // FOR EACH backup IN backups: backup.id, backup.created_at, backup.size
    let (status, list) = app.get("/api/v1/backup/list").await;
    assert_eq!(status, StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for b in items {
        assert!(
            b["id"].is_string() && b["created_at"].is_string() && b["size"].is_i64(),
            "{b}"
        );
    }
    let types: Vec<&str> = items.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["differential", "incremental", "full"]);

    // GET /api/v1/backup/{backup_id}
    let (status, details) = app.get(&format!("/api/v1/backup/{}", chain[2])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        details["parent_id"],
        full.as_str(),
        "a differential's parent is the full"
    );

    // restore_options.target = "staging" → result.job_id, then poll its status.
    let expected = snapshot(&src);
    let (status, restore) = app
        .post(
            &format!("/api/v1/backup/restore/{}", chain[2]),
            json!({ "target": "staging" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{restore}");
    let job_id = s(&restore, "job_id");
    let (status, polled) = app
        .get(&format!("/api/v1/backup/restore/{job_id}/status"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(polled["job_id"], job_id.as_str());
    let done = app.wait_success(&job_id).await;
    let staging = format!("{}.staging", src.display());
    assert_eq!(done["result"]["target"], staging.as_str());
    assert_tree_matches(&expected, Path::new(&staging), "the staging restore");

    // 404 for an unknown backup; 403 for a backup_operator restoring (admin only).
    let (status, _) = app.get("/api/v1/backup/backup-123").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, key) = app
        .post(
            "/api/v1/keys",
            json!({ "name": "ops", "role": "backup_operator" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let operator = strata_tests::authed_client(&s(&key, "key"));
    let res = operator
        .post(format!("{}/api/v1/backup/restore/{full}", app.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = operator
        .post(format!("{}/api/v1/backup/create", app.base))
        .json(&json!({ "source": "bot", "type": "incremental" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let op_job: Value = res.json().await.unwrap();
    app.wait_success(&s(&op_job, "job_id")).await;

    // DELETE: the full has dependents → 409 listing them; cascade deletes the chain.
    let (status, refused) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/backup/{full}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]["dependents"].as_array().unwrap().len() >= 2,
        "{refused}"
    );
    let (status, deleted) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/backup/{full}?cascade=true"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deleted}");
    app.wait_success(&s(&deleted, "job_id")).await;
    let (status, _) = app.get(&format!("/api/v1/backup/{full}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Scheduling: the seed's schedule (cron, type, retention_days) → 201; list, update,
    // delete; managing schedules is the admin's (the operator is refused).
    let (status, sched) = app
        .post(
            "/api/v1/backup/schedule",
            json!({ "cron": "0 2 * * *", "type": "incremental", "retention_days": 30 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sched}");
    assert_eq!(sched["retention"], json!({ "retention_days": 30 }));
    assert!(sched["next_run_at"].is_string(), "{sched}");
    let schedule_id = s(&sched, "id");
    let (status, list) = app.get("/api/v1/backup/schedule").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["id"], json!(schedule_id), "{list}");
    let (status, updated) = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/backup/schedule/{schedule_id}"),
            Some(json!({ "cron": "0 3 * * *", "type": "differential" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (updated["cron"].as_str(), updated["type"].as_str()),
        (Some("0 3 * * *"), Some("differential"))
    );
    let res = operator
        .put(format!("{}/api/v1/backup/schedule/{schedule_id}", app.base))
        .json(&json!({ "enabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (status, _) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/backup/schedule/{schedule_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// Seed 001 — a bot's configuration backups: export (redacted, attachment), import
/// (applied / skipped / failed), list newest first, create, download, restore, prune
/// with daily / weekly.
#[tokio::test]
async fn seed_001_config_backups_api() {
    let app = TestApp::spawn(Options::default()).await;
    let src = source_with_files(&app, "volvox");
    app.create_source("volvox", &src).await;
    let (status, _) = app.post("/api/v1/files/token", json!({})).await;
    assert_eq!(status, StatusCode::OK);

    // GET export → attachment with config / exportedAt / version, secrets redacted.
    let res = app
        .client
        .get(format!("{}/api/v1/config/export", app.base))
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let export: Value = res.json().await.unwrap();
    assert!(export["config"].is_object() && export["exportedAt"].is_string());
    assert_eq!(export["version"], 1);
    assert_eq!(
        export["config"]["settings"]["file_token_secret"],
        "[REDACTED]"
    );
    // POST import of that payload → applied / skipped / failed.
    let (status, report) = app.post("/api/v1/config/import", export).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(report["applied"].is_array() && report["failed"].as_array().unwrap().is_empty());
    assert_eq!(report["skipped"], json!(["settings.file_token_secret"]));

    // POST /backups → id, size, createdAt (Strata: backup_id; size once complete).
    let mut ids = Vec::new();
    for i in 0..3 {
        std::fs::write(src.join("sub/notes.txt"), format!("version {i}\n")).unwrap();
        let b = app.backup("volvox", "full").await;
        app.wait_success(&s(&b, "job_id")).await;
        ids.push(s(&b, "backup_id"));
    }
    // GET /backups: newest first, with id, size, created time.
    let (_, list) = app.get("/api/v1/backup").await;
    let listed: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![&ids[2], &ids[1], &ids[0]]);
    assert!(list["items"][0]["size"].as_i64().unwrap() > 0);

    // GET /backups/:id/download → attachment.
    let (status, headers, body) = fetch(
        &app.client,
        &format!("{}/api/v1/backup/{}/download", app.base, ids[0]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(tar_files(&body)["sub/notes.txt"].0, b"version 0\n");

    // POST /backups/:id/restore: the live state is overwritten after a backup of it.
    let (status, restore) = app
        .post(&format!("/api/v1/backup/{}/restore", ids[0]), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{restore}");
    assert!(restore["pre_restore_backup_id"].is_string(), "{restore}");
    app.wait_success(&s(&restore, "job_id")).await;
    assert_eq!(read(&src.join("sub/notes.txt")), b"version 0\n");

    // POST /backups/prune {daily, weekly} → deleted, count. Spread the backups over
    // days so the daily rule has something to drop.
    let mut db = app.db().await;
    for (i, id) in ids.iter().enumerate() {
        sqlx::query(
            "UPDATE backups SET created_at = now() - make_interval(days => $2),
                 completed_at = now() - make_interval(days => $2) WHERE id = $1",
        )
        .bind(id)
        .bind(10 * (3 - i as i32))
        .execute(&mut db)
        .await
        .unwrap();
    }
    let (status, pruned) = app
        .post(
            "/api/v1/backup/prune",
            json!({ "source": "volvox", "daily": 1, "weekly": 0 }),
        )
        .await;
    assert!(status.is_success(), "{status} {pruned}");
    let deleted = pruned["deleted"].as_array().unwrap();
    assert_eq!(pruned["count"], deleted.len());
    assert!(deleted.iter().any(|d| d == ids[0].as_str()), "{pruned}");
    assert!(pruned["kept"].is_array(), "{pruned}");
    if let Some(job) = pruned["job_id"].as_str() {
        app.wait_success(job).await;
    }
    let (status, _) = app.get(&format!("/api/v1/backup/{}", ids[0])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Seed 002 — an SQLite application's backups by filename: `POST /api/v1/backup` with no
/// body, list, restore, download, delete.
#[tokio::test]
async fn seed_002_sqlite_app_backup_api() {
    let app = TestApp::spawn(Options::default()).await;
    let src = source_with_files(&app, "default");
    app.create_source("default", &src).await;

    // curl -s -X POST http://localhost:8080/api/v1/backup (no body: the only source)
    let res = app
        .client
        .post(format!("{}/api/v1/backup", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let created: Value = res.json().await.unwrap();
    let id = s(&created, "backup_id");
    app.wait_success(&s(&created, "job_id")).await;

    // GET /api/v1/backup → each with filename, size, created_at.
    let (status, list) = app.get("/api/v1/backup").await;
    assert_eq!(status, StatusCode::OK);
    let b = &list["items"][0];
    assert_eq!(b["id"], id.as_str());
    assert!(
        b["filename"].is_string() && b["size"].is_i64() && b["created_at"].is_string(),
        "{b}"
    );

    // GET /api/v1/backup/{filename}/download → the content.
    let (status, headers, body) = fetch(
        &app.client,
        &format!("{}/api/v1/backup/{id}/download", app.base),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().contains("tar"));
    let files = tar_files(&body);
    assert_eq!(files["data.bin"].0, read(&src.join("data.bin")));

    // POST /api/v1/backup/{filename}/restore
    std::fs::write(src.join("data.bin"), b"corrupted").unwrap();
    let (status, restored) = app
        .post(&format!("/api/v1/backup/{id}/restore"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{restored}");
    let job = app.wait_success(&s(&restored, "job_id")).await;
    assert_eq!(job["result"]["backup_id"], id.as_str());
    assert_eq!(read(&src.join("data.bin")), files["data.bin"].0);

    // DELETE /api/v1/backup/{filename}
    let (status, deleted) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/backup/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deleted}");
    app.wait_success(&s(&deleted, "job_id")).await;
    let (status, _) = app.get(&format!("/api/v1/backup/{id}/download")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Seed 002 verbatim against an SQLite-only source: every call by the `filename` the
/// list returns, the download saved as `backup.db` is the database itself.
#[tokio::test]
async fn seed_002_sqlite_only_source_by_filename_downloads_the_db_file() {
    let app = TestApp::spawn(Options::default()).await;
    let db = app.dir.path().join("app.db");
    write_sqlite_notes(&db, 3_000, 200);
    let (_, at_backup) = sqlite_notes(&db);
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "default", "database": { "sqlite": db } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = |path: &str| format!("{}/api/v1/backup{path}", app.base);

    // curl -s -X POST http://localhost:8080/api/v1/backup
    let res = app.client.post(url("")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let created: Value = res.json().await.unwrap();
    let id = s(&created, "backup_id");
    app.wait_success(&s(&created, "job_id")).await;

    // curl -s http://localhost:8080/api/v1/backup
    let res = app.client.get(url("")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let list: Value = res.json().await.unwrap();
    let b = &list["items"][0];
    let filename = s(b, "filename");
    assert_eq!(filename, format!("{id}.db"), "{b}");
    assert!(b["size"].is_i64() && b["created_at"].is_string(), "{b}");

    // curl -s http://localhost:8080/api/v1/backup/{filename}/download -o backup.db
    let (status, headers, body) = fetch(&app.client, &url(&format!("/{filename}/download"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-sqlite3");
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"{id}.db\"").as_str()
    );
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    assert!(headers.contains_key("etag"), "{headers:?}");
    let saved = app.dir.path().join("backup.db");
    std::fs::write(&saved, &body).unwrap();
    let (integrity, rows) = sqlite_notes(&saved);
    assert_eq!(integrity, "ok");
    assert_eq!(rows, at_backup);

    // curl -s -X POST http://localhost:8080/api/v1/backup/{filename}/restore
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "DELETE FROM notes WHERE id % 2 = 0; INSERT INTO notes (body) VALUES ('after');",
        )
        .unwrap();
    }
    let res = app
        .client
        .post(url(&format!("/{filename}/restore")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let restored: Value = res.json().await.unwrap();
    let job = app.wait_success(&s(&restored, "job_id")).await;
    assert_eq!(job["result"]["backup_id"], id.as_str());
    let (integrity, rows) = sqlite_notes(&db);
    assert_eq!((integrity.as_str(), rows), ("ok", at_backup));

    // curl -s -X DELETE http://localhost:8080/api/v1/backup/{filename}
    let res = app
        .client
        .delete(url(&format!("/{filename}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let deleted: Value = res.json().await.unwrap();
    app.wait_success(&s(&deleted, "job_id")).await;
    let res = app
        .client
        .get(url(&format!("/{filename}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The restore took a pre-restore backup; the deleted one is gone from the list.
    let (_, list) = app.get("/api/v1/backup").await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["id"] != id.as_str()),
        "{list}"
    );
}

/// Seeds 003 and 004 — the PocketBase-style Backups API (Rust and Go SDKs): list with
/// key / size / modified, create with a name (`.zip` allowed), upload a zip (multipart
/// field `file`), download with a file token and no Authorization header, restore,
/// delete, one operation at a time, health's `canBackup`.
#[tokio::test]
async fn seed_003_004_pocketbase_style_backups_api() {
    let mut app = TestApp::spawn(Options::default()).await;
    let src = source_with_files(&app, "pb");
    app.create_source("pb", &src).await;

    // pb.backups.create("my_backup_2024.zip")
    let (status, created) = app
        .post(
            "/api/v1/backup/create",
            json!({ "source": "pb", "name": "my_backup_2024.zip" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(created["backup_id"], "my_backup_2024");
    app.wait_success(&s(&created, "job_id")).await;
    // Names: [a-z0-9_-], at most 150, unique → 400 otherwise.
    for (name, code) in [
        ("Bad Name", "invalid_backup_name"),
        (&*"a".repeat(151), "invalid_backup_name"),
        // A route's own path segment (GET /api/v1/backup/schedule lists schedules).
        ("schedule", "invalid_backup_name"),
        ("list.zip", "invalid_backup_name"),
        ("my_backup_2024", "backup_name_taken"),
    ] {
        let (status, err) = app
            .post(
                "/api/v1/backup/create",
                json!({ "source": "pb", "name": name }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {err}");
        assert_eq!(err["error"]["code"], code);
    }

    // get_full_list → key, size, modified
    let (_, list) = app.get("/api/v1/backup").await;
    let b = &list["items"][0];
    assert_eq!(b["key"], "my_backup_2024");
    assert!(
        b["size"].as_i64().unwrap() > 0 && b["modified"].is_string(),
        "{b}"
    );

    // Download with a file token, no Authorization header.
    let (_, token) = app.post("/api/v1/files/token", json!({})).await;
    let plain = reqwest::Client::new();
    let url = format!(
        "{}/api/v1/backup/my_backup_2024/download?format=zip&token={}",
        app.base,
        s(&token, "token")
    );
    let (status, headers, body) = fetch(&plain, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains(".zip"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body.clone())).expect("a zip");
    let mut notes = String::new();
    zip.by_name("sub/notes.txt")
        .unwrap()
        .read_to_string(&mut notes)
        .unwrap();
    assert_eq!(notes, "hello from the seed\n");
    let (status, _, _) = fetch(
        &plain,
        &format!("{}/api/v1/backup/my_backup_2024/download", app.base),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Upload that zip back (multipart, field `file`, application/zip) as a new backup.
    let boundary = "strata-conformance-boundary";
    let mut form = Vec::new();
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"uploaded.zip\"\r\nContent-Type: application/zip\r\n\r\n"
        )
        .as_bytes(),
    );
    form.extend_from_slice(&body);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let res = app
        .client
        .post(format!("{}/api/v1/backup/upload?source=pb", app.base))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let uploaded: Value = res.json().await.unwrap();
    app.wait_success(&s(&uploaded, "job_id")).await;
    let (_, up) = app
        .get(&format!("/api/v1/backup/{}", s(&uploaded, "backup_id")))
        .await;
    assert_eq!(
        (up["status"].as_str(), up["type"].as_str()),
        (Some("complete"), Some("full")),
        "{up}"
    );

    // Only one operation at a time: a restore while the source is busy is refused.
    app.kill_worker(0);
    let (status, first) = app
        .post("/api/v1/backup/my_backup_2024/restore", json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, busy) = app
        .post("/api/v1/backup/create", json!({ "source": "pb" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    app.spawn_worker();
    app.wait_success(&s(&first, "job_id")).await;
    let (_, health) = app.get("/api/v1/health").await;
    assert!(health["canBackup"].is_boolean(), "{health}");

    // Delete.
    let (status, deleted) = app
        .request(
            reqwest::Method::DELETE,
            "/api/v1/backup/my_backup_2024",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deleted}");
    app.wait_success(&s(&deleted, "job_id")).await;
    let (_, list) = app.get("/api/v1/backup").await;
    assert!(!list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["key"] == "my_backup_2024"));
}
