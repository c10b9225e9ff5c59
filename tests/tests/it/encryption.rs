//! Encrypted repositories: nothing readable in storage, a wrong key refuses to start
//! (losing nothing), and the master key rotates without touching the data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_tests::tree::{assert_same_tree, noise};
use strata_tests::{Options, TestApp};

const KEY: &str = "correct horse battery staple";
const SECRET_NAME: &str = "quarterly-payroll-do-not-share.csv";
const MARKER: &str = "STRATA-PLAINTEXT-MARKER-9f1c2a";

fn stored_objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(stored_objects(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn encrypted_app() -> TestApp {
    TestApp::spawn(Options {
        env: vec![("STRATA_ENCRYPTION_KEY".into(), KEY.into())],
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn no_plaintext_of_a_known_file_or_name_appears_in_any_stored_object() {
    let app = encrypted_app().await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join(SECRET_NAME),
        format!("{MARKER} salary data\n").repeat(2000),
    )
    .unwrap();
    let random = noise(77, 3 * 1024 * 1024);
    std::fs::write(src.join("random.bin"), &random).unwrap();
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    let id = b["backup_id"].as_str().unwrap();
    app.wait_success(b["job_id"].as_str().unwrap()).await;

    let repo = app.dir.path().join("data/repo");
    let objects = stored_objects(&repo);
    assert!(objects.len() >= 3, "{objects:?}");
    for object in &objects {
        let bytes = std::fs::read(object).unwrap();
        assert!(
            !contains(&bytes, MARKER.as_bytes()),
            "{} holds file content",
            object.display()
        );
        assert!(
            !contains(&bytes, SECRET_NAME.as_bytes()),
            "{} holds a file name",
            object.display()
        );
        assert!(
            !contains(&bytes, &random[1_000_000..1_000_064]),
            "{} holds raw file bytes",
            object.display()
        );
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap();
    assert_eq!(config["format_version"], 2, "{config}");
    assert_eq!(
        config["id_key"], "",
        "the chunk-id key must be wrapped, not stored: {config}"
    );
    assert_eq!(
        config["encryption"]["key_slots"].as_array().unwrap().len(),
        1
    );
    assert!(!contains(
        &std::fs::read(repo.join("config")).unwrap(),
        KEY.as_bytes()
    ));

    let target = app.dir.path().join("out");
    let r = app.restore(id, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&src, &target);
    assert!(
        !app.full_logs().contains(KEY),
        "the master key reached a log"
    );
}

#[tokio::test]
async fn a_wrong_key_refuses_to_start_and_a_rotated_key_opens_the_same_data() {
    let mut app = encrypted_app().await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "alpha").unwrap();
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    let id = b["backup_id"].as_str().unwrap().to_string();
    app.wait_success(b["job_id"].as_str().unwrap()).await;
    app.kill_worker(0);

    // A worker with the wrong key exits with a clear error and never takes the job.
    let target = app.dir.path().join("out");
    let r = app.restore(&id, &target).await;
    let restore_job = r["job_id"].as_str().unwrap().to_string();
    let wrong = app.spawn_worker_with(&[("STRATA_ENCRYPTION_KEY", "this is not the right key")]);
    let status = app.wait_worker_exit(wrong, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "the wrong-key worker kept running"
    );
    assert!(
        app.full_logs().contains("does not open this repository"),
        "{}",
        app.logs()
    );
    assert_eq!(app.job(&restore_job).await["status"], "queued");

    // A worker without a key refuses too: the repository is encrypted.
    let keyless = app.spawn_worker_with(&[("STRATA_ENCRYPTION_KEY", "")]);
    let status = app.wait_worker_exit(keyless, Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| !s.success()));
    assert!(
        app.logs()
            .contains("is encrypted: set STRATA_ENCRYPTION_KEY"),
        "{}",
        app.logs()
    );

    // Rotate to a new master key; the old one stops working, the data stays.
    let new_key = "a brand new master key 2026";
    let (status, log) =
        app.run_worker_command(&["rotate-key"], &[("STRATA_NEW_ENCRYPTION_KEY", new_key)]);
    assert!(status.success(), "{log}");
    assert!(
        !log.contains(new_key) && !log.contains(KEY),
        "a key reached the log"
    );
    let old = app.spawn_worker_with(&[]);
    let status = app.wait_worker_exit(old, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "the old key still opens the repository"
    );

    app.spawn_worker_with(&[("STRATA_ENCRYPTION_KEY", new_key)]);
    app.wait_success(&restore_job).await;
    assert_eq!(
        std::fs::read_to_string(target.join("a.txt")).unwrap(),
        "alpha"
    );
}
