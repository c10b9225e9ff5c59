//! Issue 16, item 7: archives. A zip naming one entry twice is refused (the last used
//! to win); a name too long for the file system is a `400`, never a retried job; an
//! import that ends without a backup leaves no upload behind, and garbage collection
//! removes uploads no job needs; zip downloads never hold a name a Windows extractor
//! would follow out of its target.

use std::io::{Cursor, Read, Write};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::tree::write_noise;
use strata_tests::{Options, TestApp};

fn id(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

async fn upload(app: &TestApp, bytes: Vec<u8>, ctype: &str, query: &str) -> (StatusCode, Value) {
    let res = app
        .client
        .post(format!("{}/api/v1/backup/upload{query}", app.base))
        .header(CONTENT_TYPE, ctype)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A zip whose central directory names `dup` twice (written as two names of the same
/// length, then one renamed in the raw bytes: no writer produces it, an attacker does).
fn zip_naming_one_entry_twice() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in [("cfg/dup1", &b"harmless"[..]), ("cfg/dup2", b"evil")] {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    let mut bytes = w.finish().unwrap().into_inner();
    let (from, to) = (b"cfg/dup2", b"cfg/dup1");
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(from.len()).position(|w| w == from) {
        bytes[i + at..i + at + to.len()].copy_from_slice(to);
        i += at + to.len();
    }
    bytes
}

fn uploads_in(app: &TestApp) -> Vec<String> {
    std::fs::read_dir(app.dir.path().join("data/repo/uploads"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The defects: a zip naming an entry twice was imported with the last one; a tar whose
/// entry name was too long for the file system was accepted and its import failed three
/// times (`extract_failed`, retried). Both are refused at once, nothing stored.
#[tokio::test]
async fn a_zip_naming_an_entry_twice_and_a_name_too_long_are_refused_at_upload() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    app.create_source("src", &src).await;

    let (status, body) = upload(&app, zip_naming_one_entry_twice(), "application/zip", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "duplicate_entry", "{body}");
    assert_eq!(body["error"]["field"], "file", "{body}");

    let long_name = |name: &str| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    };
    for name in [
        format!("dir/{}", "n".repeat(300)),
        vec!["d".repeat(250); 20].join("/"),
    ] {
        let (status, body) = upload(&app, long_name(&name), "application/x-tar", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "name_too_long", "{body}");
        assert_eq!(body["error"]["field"], "file", "{body}");
    }
    let (_, jobs) = app.get("/api/v1/jobs?kind=import").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 0, "{jobs}");
    assert_eq!(uploads_in(&app), Vec::<String>::new());
}

/// An import cancelled while queued, and one that fails for good (its source deleted
/// meanwhile), delete their uploaded archive; a collection deletes an upload no job
/// needs once it is a day old, and keeps a fresh one and one a queued import needs.
#[tokio::test]
async fn uploads_of_imports_that_end_without_a_backup_are_deleted_and_old_ones_collected() {
    let mut app = TestApp::spawn(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    app.create_source("src", &src).await;
    let tar = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        b.append_data(&mut h, "f.txt", &b"data"[..]).unwrap();
        b.into_inner().unwrap()
    };

    // Cancelled while queued.
    let (status, accepted) = upload(&app, tar.clone(), "application/x-tar", "?name=one").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(uploads_in(&app).len(), 1);
    let (status, job) = app
        .post(
            &format!("/api/v1/jobs/{}/cancel", id(&accepted, "job_id")),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(
        uploads_in(&app),
        Vec::<String>::new(),
        "cancelled: upload left"
    );

    // Fails for good: the backup record it should fill is gone when the worker runs it.
    let (status, accepted) = upload(&app, tar.clone(), "application/x-tar", "?name=two").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let mut conn = app.db().await;
    sqlx::query("DELETE FROM backups WHERE id = 'two'")
        .execute(&mut conn)
        .await
        .unwrap();
    app.spawn_worker();
    let job = app
        .wait_job(&id(&accepted, "job_id"), Duration::from_secs(60))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        job["attempts"], 1,
        "a permanent failure is not retried: {job}"
    );
    assert_eq!(
        uploads_in(&app),
        Vec::<String>::new(),
        "failed: upload left"
    );

    // Garbage collection: an old orphan goes, a fresh one and a needed old one stay.
    let dir = app.dir.path().join("data/repo/uploads");
    std::fs::create_dir_all(&dir).unwrap();
    let days_ago = |days: i64| {
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (chrono::Utc::now().timestamp() - days * 86400) as u64,
            0,
        ))
    };
    let old_orphan = format!("{}.zip", days_ago(2));
    let fresh_orphan = format!("{}.tar", uuid::Uuid::now_v7());
    let old_needed = format!("{}.tar", days_ago(3));
    for name in [&old_orphan, &fresh_orphan, &old_needed] {
        std::fs::write(dir.join(name), &tar).unwrap();
    }
    sqlx::query(
        "INSERT INTO jobs (id, kind, status, payload, max_attempts, phase)
         VALUES ($1, 'import', 'queued', $2, 3, 'queued')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(sqlx::types::Json(
        json!({"upload_key": format!("uploads/{old_needed}")}),
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let (status, gc) = app.post("/api/v1/repository/gc", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{gc}");
    let job = app.wait_success(&id(&gc, "job_id")).await;
    assert_eq!(job["result"]["uploads_deleted"], 1, "{job}");
    let mut left = uploads_in(&app);
    left.sort();
    let mut expected = vec![fresh_orphan, old_needed];
    expected.sort();
    assert_eq!(left, expected);
}

/// A backup of files whose names hold `\` and `..` (legal on Unix): in the zip download
/// no entry name has a `\` or a `..` component, names stay distinct, and the content is
/// all there; the tar keeps the names as they are.
#[tokio::test]
async fn zip_downloads_never_hold_a_name_a_windows_extractor_would_follow() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let names = [
        "sub/..\\..\\..\\evil.txt",
        "sub/a\\b",
        "sub/a%5Cb",
        "..\\up.txt",
        "sub/100%.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        write_noise(&src.join(name), 50 + i as u64, 1000 + i);
    }
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    app.wait_success(&id(&b, "job_id")).await;
    let bytes = app
        .client
        .get(format!(
            "{}/api/v1/backup/{}/download?format=zip",
            app.base,
            id(&b, "backup_id")
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
    let mut seen = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        assert!(!name.contains('\\'), "{name}");
        assert!(name.split('/').all(|c| c != ".."), "{name}");
        if f.is_file() {
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            seen.push((name, data.len()));
        }
    }
    seen.sort();
    let mut expected: Vec<(String, usize)> = vec![
        ("sub/..%5C..%5C..%5Cevil.txt".into(), 1000),
        ("sub/a%5Cb".into(), 1001),
        ("sub/a%255Cb".into(), 1002),
        ("..%5Cup.txt".into(), 1003),
        ("sub/100%25.txt".into(), 1004),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    assert!(!zip.is_empty());
}
