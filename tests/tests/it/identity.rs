//! The catalog and the repository must agree (issue 16, item 12): a repository has an
//! identity (its `config`'s `repository_id`, recorded in the catalog); a process whose
//! catalog and storage disagree says so in `/health` and refuses every job that needs
//! the repository, with what to do; `rebuild-catalog` adopts a repository's identity.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::tree::{assert_same_tree, write_noise};
use strata_tests::{Options, TestApp};

fn id(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_string()
}

async fn backup_ok(app: &TestApp, source: &str) -> String {
    let accepted = app.backup(source, "full").await;
    app.wait_success(&id(&accepted, "job_id")).await;
    id(&accepted, "backup_id")
}

async fn health_at(base: &str, app: &TestApp) -> Value {
    let res = app
        .client
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The repository's identity as its `config` object says.
fn config_id(repo: &Path) -> Option<String> {
    let raw = std::fs::read(repo.join("config")).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v["repository_id"].as_str().map(str::to_string)
}

/// The identity the catalog records.
async fn recorded_id(app: &TestApp) -> Option<String> {
    let mut db = app.db().await;
    sqlx::query_scalar("SELECT value FROM settings WHERE key = 'repository_id'")
        .fetch_optional(&mut db)
        .await
        .unwrap()
}

/// Asserts that the job ended `failed` at once with `repository_mismatch`, its message
/// saying what to do.
async fn assert_refused(app: &TestApp, job_id: &str) -> Value {
    let job = app.wait_job(job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed", "{job}\n{}", app.logs());
    assert_eq!(job["error"]["code"], "repository_mismatch", "{job}");
    assert_eq!(job["attempts"], 1, "a mismatch is not retried: {job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("STRATA_STORAGE") && message.contains("rebuild-catalog"),
        "{message}"
    );
    job
}

fn assert_mismatch(health: &Value) {
    assert_eq!(health["canBackup"], false, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    let repo = &health["checks"]["repository"];
    assert_eq!(repo["status"], "error", "{health}");
    assert_eq!(repo["code"], "repository_mismatch", "{health}");
    assert!(
        repo["error"].as_str().unwrap().contains("rebuild-catalog"),
        "{health}"
    );
}

/// The regression: a repository emptied behind Strata's back (as the restore of item 2
/// did, 122 MB → 8 KB) left the catalog listing every backup and health saying all was
/// well. Now health reports the mismatch, backup, restore and garbage collection jobs
/// are refused (nothing is written: no new repository appears over the lost one),
/// a restarted worker does the same, and `rebuild-catalog --new-repository` is the way
/// out once the data is known to be lost.
#[tokio::test]
async fn a_wiped_repository_is_reported_and_every_job_is_refused() {
    let mut app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("a.bin"), 1, 200_000);
    app.create_source("src", &src).await;
    let old = backup_ok(&app, "src").await;
    let repo = app.dir.path().join("data/repo");
    let identity = config_id(&repo).expect("a repository config");
    assert_eq!(recorded_id(&app).await.as_deref(), Some(identity.as_str()));
    let h = health_at(&app.base, &app).await;
    assert_eq!(h["checks"]["repository"]["status"], "ok", "{h}");

    // Wiped while everything runs.
    std::fs::remove_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    assert_mismatch(&health_at(&app.base, &app).await);
    let b = app.backup("src", "full").await;
    assert_refused(&app, &id(&b, "job_id")).await;
    let r = app.restore(&old, &app.dir.path().join("out")).await;
    assert_refused(&app, &id(&r, "job_id")).await;
    let (status, gc) = app.post("/api/v1/repository/gc", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{gc}");
    assert_refused(&app, &id(&gc, "job_id")).await;
    assert!(!app.dir.path().join("out").exists());
    assert_eq!(
        std::fs::read_dir(&repo).unwrap().count(),
        0,
        "something was written into the emptied repository"
    );

    // A worker started now neither creates a repository nor runs the jobs.
    app.kill_worker(0);
    app.spawn_worker();
    let b = app.backup("src", "full").await;
    assert_refused(&app, &id(&b, "job_id")).await;
    assert!(config_id(&repo).is_none());
    assert_eq!(recorded_id(&app).await.as_deref(), Some(identity.as_str()));

    // The data is lost for good: start a new repository; the catalog forgets the old
    // backups and keeps its sources.
    app.kill_worker(1);
    let (status, log) = app.run_worker_command(&["rebuild-catalog"], &[]);
    assert!(
        !status.success(),
        "rebuild-catalog from nothing must refuse:\n{log}"
    );
    assert!(log.contains("--new-repository"), "{log}");
    let (status, log) = app.run_worker_command(&["rebuild-catalog", "--new-repository"], &[]);
    assert!(status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("rebuild-catalog done"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains(&old),
        "the old backup is not listed as forgotten: {line}"
    );
    let new_identity = config_id(&repo).expect("a new repository");
    assert_ne!(new_identity, identity);
    assert_eq!(
        recorded_id(&app).await.as_deref(),
        Some(new_identity.as_str())
    );
    let h = health_at(&app.base, &app).await;
    assert_eq!(h["checks"]["repository"]["status"], "ok", "{h}");
    assert_eq!(h["canBackup"], true, "{h}");
    app.spawn_worker();
    let (status, _) = app.get(&format!("/api/v1/backup/{old}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let fresh = backup_ok(&app, "src").await;
    let out = app.dir.path().join("out");
    let r = app.restore(&fresh, &out).await;
    app.wait_success(&id(&r, "job_id")).await;
    assert_same_tree(&src, &out);
}

/// `STRATA_STORAGE` pointed at another installation's repository: health says so, jobs
/// are refused and write nothing there; `rebuild-catalog` from it makes this catalog
/// describe it (its backups restore, this catalog's own are forgotten).
#[tokio::test]
async fn another_repository_is_a_mismatch_until_the_catalog_is_rebuilt_from_it() {
    let other = TestApp::spawn(Options::default()).await;
    let theirs = other.dir.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    write_noise(&theirs.join("t.bin"), 9, 300_000);
    other.create_source("theirs", &theirs).await;
    let their_backup = backup_ok(&other, "theirs").await;
    let other_repo = other.dir.path().join("data/repo");
    let other_identity = config_id(&other_repo).unwrap();
    let snapshots = |repo: &Path| std::fs::read_dir(repo.join("snapshots")).unwrap().count();
    let their_snapshots = snapshots(&other_repo);
    // Its processes stop; its directory (and repository) stays until the end.
    let _other_dir = other_processes(other);

    let mut app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("a.bin"), 1, 100_000);
    app.create_source("src", &src).await;
    let mine = backup_ok(&app, "src").await;
    app.kill_worker(0);
    let elsewhere = format!("file://{}", other_repo.display());
    let env = [("STRATA_STORAGE", elsewhere.as_str())];
    let (base, _api) = app.start_api_with(&env).await;
    assert_mismatch(&health_at(&base, &app).await);
    let h = health_at(&base, &app).await;
    assert!(
        h["checks"]["repository"]["error"]
            .as_str()
            .unwrap()
            .contains(&other_identity),
        "{h}"
    );
    app.spawn_worker_with(&env);
    let b = app.backup("src", "full").await;
    assert_refused(&app, &id(&b, "job_id")).await;
    assert_eq!(snapshots(&other_repo), their_snapshots);
    let idx = app.process_count() - 1;
    app.kill_worker(idx);

    let (status, log) = app.run_worker_command(&["rebuild-catalog"], &env);
    assert!(status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("rebuild-catalog done"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(&mine), "{line}");
    assert!(line.contains(r#""backups_added":1"#), "{line}");
    assert_eq!(
        recorded_id(&app).await.as_deref(),
        Some(other_identity.as_str())
    );
    let h = health_at(&base, &app).await;
    assert_eq!(h["checks"]["repository"]["status"], "ok", "{h}");
    app.spawn_worker_with(&env);
    let client_base = base.clone();
    let res = app
        .client
        .post(format!(
            "{client_base}/api/v1/backup/restore/{their_backup}"
        ))
        .json(&json!({ "target": app.dir.path().join("theirs-back") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let r: Value = res.json().await.unwrap();
    app.wait_success(&id(&r, "job_id")).await;
    assert_same_tree(&theirs, &app.dir.path().join("theirs-back"));
}

/// Stops every process of an app but keeps its directory (and so its repository).
fn other_processes(mut app: TestApp) -> tempfile::TempDir {
    app.kill_api();
    for i in 0..app.process_count() {
        app.kill_worker(i);
    }
    std::mem::replace(&mut app.dir, tempfile::tempdir().unwrap())
}

/// A catalog made before identities were recorded adopts the repository it finds when
/// that repository holds its backups, and refuses one that does not.
#[tokio::test]
async fn a_catalog_without_a_recorded_identity_adopts_only_a_repository_that_holds_its_backups() {
    let mut app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("a.bin"), 1, 100_000);
    app.create_source("src", &src).await;
    backup_ok(&app, "src").await;
    let repo = app.dir.path().join("data/repo");
    let identity = config_id(&repo).unwrap();
    app.kill_worker(0);
    let forget = |app: &TestApp| {
        let url = app.database_url.clone();
        async move {
            let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query("DELETE FROM settings WHERE key LIKE 'repository_%'")
                .execute(&mut db)
                .await
                .unwrap();
        }
    };

    // An empty repository elsewhere: it lacks the catalog's backups.
    forget(&app).await;
    let empty = app.dir.path().join("empty-repo");
    let elsewhere = format!("file://{}", empty.display());
    app.spawn_worker_with(&[("STRATA_STORAGE", elsewhere.as_str())]);
    let b = app.backup("src", "full").await;
    assert_refused(&app, &id(&b, "job_id")).await;
    assert!(config_id(&empty).is_none(), "a repository was created");
    assert_eq!(recorded_id(&app).await, None);
    let idx = app.process_count() - 1;
    app.kill_worker(idx);

    // Its own repository: adopted.
    app.spawn_worker();
    backup_ok(&app, "src").await;
    assert_eq!(recorded_id(&app).await.as_deref(), Some(identity.as_str()));
}

/// Workers starting together on a new installation create one repository and record
/// one identity.
#[tokio::test]
async fn workers_starting_together_record_one_identity() {
    let app = TestApp::spawn(Options {
        workers: 4,
        ..Options::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "a").unwrap();
    app.create_source("src", &src).await;
    backup_ok(&app, "src").await;
    let repo = app.dir.path().join("data/repo");
    let identity = config_id(&repo).unwrap();
    assert_eq!(recorded_id(&app).await.as_deref(), Some(identity.as_str()));
    let logs = app.full_logs();
    assert_eq!(
        logs.matches("created repository").count(),
        1,
        "more than one repository was created"
    );
    let h = health_at(&app.base, &app).await;
    assert_eq!(h["checks"]["repository"]["status"], "ok", "{h}");
}
