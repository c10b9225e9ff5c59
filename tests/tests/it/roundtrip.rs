//! A directory goes in through the API and comes back identical, on both backends.

use reqwest::StatusCode;
use strata_tests::tree::{assert_same_tree, build_sample_tree};
use strata_tests::{Backend, Options, TestApp};

async fn round_trip(backend: Backend) {
    let app = TestApp::spawn(Options {
        backend,
        ..Default::default()
    })
    .await;
    let source = app.dir.path().join("app");
    build_sample_tree(&source, 50 * 1024 * 1024);
    app.create_source("app", &source).await;

    let accepted = app.backup("app", "full").await;
    let job_id = accepted["job_id"].as_str().unwrap();
    let backup_id = accepted["backup_id"].as_str().unwrap();
    assert_eq!(
        accepted["status_url"],
        format!("/api/v1/backup/restore/{job_id}/status")
    );
    let job = app.wait_success(job_id).await;
    assert_eq!(job["kind"], "backup");
    assert_eq!(
        job["progress"]["bytes_done"], job["progress"]["bytes_total"],
        "{job}"
    );
    assert!(job["progress"]["bytes_total"].as_i64().unwrap() > 50 * 1024 * 1024);

    let (status, backup) = app.get(&format!("/api/v1/backup/{backup_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backup["status"], "complete", "{backup}");
    assert_eq!(backup["type"], "full");
    assert!(backup["file_count"].as_i64().unwrap() >= 9, "{backup}");
    let (_, list) = app.get("/api/v1/backup/list").await;
    assert_eq!(list["items"][0]["id"], backup_id, "{list}");

    let target = app.dir.path().join("restored");
    let restore = app.restore(backup_id, &target).await;
    let restore_job = restore["job_id"].as_str().unwrap();
    let (status, polled) = app
        .get(&format!("/api/v1/backup/restore/{restore_job}/status"))
        .await;
    assert_eq!(status, StatusCode::OK, "{polled}");
    let done = app.wait_success(restore_job).await;
    assert_eq!(done["kind"], "restore");
    assert_same_tree(&source, &target);
    // Nothing of the staging directory is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".strata-restore-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn round_trip_local_storage_restores_every_file_identical() {
    round_trip(Backend::Local).await;
}

#[tokio::test]
async fn round_trip_s3_storage_restores_every_file_identical() {
    round_trip(Backend::S3).await;
}

#[tokio::test]
async fn restore_over_an_existing_directory_replaces_it_whole() {
    let app = TestApp::spawn(Options::default()).await;
    let source = app.dir.path().join("site");
    build_sample_tree(&source, 1024 * 1024);
    app.create_source("site", &source).await;
    let b = app.backup("site", "full").await;
    app.wait_success(b["job_id"].as_str().unwrap()).await;
    let expected = app.dir.path().join("expected");
    let status = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&source)
        .arg(&expected)
        .status()
        .unwrap();
    assert!(status.success());

    // The user damages the live directory, then restores to the original path.
    std::fs::write(source.join("docs/readme.txt"), "overwritten").unwrap();
    std::fs::write(source.join("new-file.txt"), "should disappear").unwrap();
    std::fs::remove_file(source.join("empty.txt")).unwrap();
    let (status, r) = app
        .post(
            &format!(
                "/api/v1/backup/restore/{}",
                b["backup_id"].as_str().unwrap()
            ),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&expected, &source);
}
