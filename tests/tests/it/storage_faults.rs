//! Fault 4 of issue 8: the object store fails — unreachable, answering errors, or slow.
//! The app talks to S3 through a fault-injecting proxy. Requests are retried with
//! back-off within a bounded time; a job that cannot finish fails with an error that
//! names the store; nothing is listed complete with data missing; once the store is back
//! the next backup succeeds, verifies and restores byte-identical.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::faulty_proxy::{FaultyProxy, Mode};
use strata_tests::tree::{assert_same_tree, assert_tree_matches, snapshot, write_noise};
use strata_tests::{s3_endpoint, Backend, Options, TestApp};

/// Tries per S3 request, and the longest one try may take, in these tests.
const S3_ATTEMPTS: u32 = 3;
const ATTEMPT_SECS: u64 = 2;
const OPERATION_SECS: u64 = 10;

/// An app on S3 behind a proxy (passing for now), with short S3 limits and one attempt
/// per job, so a failure shows in the job at once.
async fn spawn() -> (TestApp, FaultyProxy) {
    let proxy = FaultyProxy::start(&s3_endpoint()).await;
    let app = TestApp::spawn(Options {
        backend: Backend::S3,
        env: vec![
            ("STRATA_S3_ENDPOINT".into(), proxy.url()),
            ("STRATA_S3_MAX_ATTEMPTS".into(), S3_ATTEMPTS.to_string()),
            ("STRATA_S3_CONNECT_TIMEOUT_SECS".into(), "2".into()),
            (
                "STRATA_S3_ATTEMPT_TIMEOUT_SECS".into(),
                ATTEMPT_SECS.to_string(),
            ),
            (
                "STRATA_S3_OPERATION_TIMEOUT_SECS".into(),
                OPERATION_SECS.to_string(),
            ),
            ("STRATA_JOB_MAX_ATTEMPTS".into(), "1".into()),
        ],
        ..Options::default()
    })
    .await;
    (app, proxy)
}

/// A source of a few MiB: a big file, a small one, a subdirectory.
fn write_source(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    write_noise(&root.join("big.bin"), seed, 3_000_000);
    write_noise(&root.join("small.txt"), seed + 1, 5_000);
    write_noise(&root.join("sub/mid.bin"), seed + 2, 400_000);
}

async fn backup_ok(app: &TestApp, source: &str, backup_type: &str) -> String {
    let accepted = app.backup(source, backup_type).await;
    app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    accepted["backup_id"].as_str().unwrap().to_string()
}

async fn restore_same(app: &TestApp, backup_id: &str, expected: &Path) {
    let target = app
        .dir
        .path()
        .join(format!("restored-{}", uuid::Uuid::new_v4().simple()));
    let r = app.restore(backup_id, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(expected, &target);
}

/// Runs a backup that must fail because of the store; returns the job, the time it took
/// to end, and the backup's id.
async fn backup_fails(app: &TestApp, source: &str, backup_type: &str) -> (Value, Duration, String) {
    let started = Instant::now();
    let accepted = app.backup(source, backup_type).await;
    let job = app
        .wait_job(
            accepted["job_id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(job["status"], "failed", "{job}\n{}", app.logs());
    let backup_id = accepted["backup_id"].as_str().unwrap();
    let (status, backup) = app.get(&format!("/api/v1/backup/{backup_id}")).await;
    assert_eq!(status, StatusCode::OK, "{backup}");
    assert_eq!(backup["status"], "failed", "{backup}");
    (job, took, backup_id.to_string())
}

/// The job's error says the store is unavailable, names it, and holds no secret.
fn assert_storage_error(job: &Value, proxy: &FaultyProxy, says: &str) {
    assert_eq!(job["error"]["code"], "storage_unavailable", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.contains("storage unavailable"), "{message}");
    assert!(
        message.contains(&proxy.url()),
        "names the endpoint: {message}"
    );
    assert!(message.contains(says), "says {says:?}: {message}");
    assert!(
        !message.contains(strata_tests::S3_SECRET_KEY),
        "leaks the secret: {message}"
    );
}

/// The failed backups are not listed `complete`.
async fn assert_catalog_consistent(app: &TestApp, failed: &[&str]) {
    let (status, list) = app.get("/api/v1/backup/list?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    for b in list["items"].as_array().unwrap() {
        if failed.contains(&b["id"].as_str().unwrap()) {
            assert_ne!(b["status"], "complete", "{b}");
        }
    }
}

/// After the store is back: a new backup succeeds, verifies, and restores identical.
async fn recovers(app: &TestApp, src: &Path) -> String {
    write_noise(&src.join("after.bin"), 77, 300_000);
    let id = backup_ok(app, "src", "incremental").await;
    let (status, v) = app
        .post(&format!("/api/v1/backup/{id}/verify"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let job = app.wait_success(v["job_id"].as_str().unwrap()).await;
    assert_eq!(job["result"]["ok"], true, "{job}");
    restore_same(app, &id, src).await;
    id
}

/// Intermittent 503s: every third request is refused with `503`; the client retries it
/// and every backup and restore succeeds, byte-identical.
#[tokio::test]
async fn intermittent_503s_are_retried_and_every_job_succeeds() {
    let (app, proxy) = spawn().await;
    let src = app.dir.path().join("src");
    write_source(&src, 1);
    app.create_source("src", &src).await;

    proxy.set_mode(Mode::FailEvery(3));
    let full = backup_ok(&app, "src", "full").await;
    let full_tree = snapshot(&src);
    write_noise(&src.join("small.txt"), 10, 6_000);
    let inc = backup_ok(&app, "src", "incremental").await;
    restore_same(&app, &inc, &src).await;
    let target = app.dir.path().join("restored-full");
    let r = app.restore(&full, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_tree_matches(&full_tree, &target, "the full backup");

    let counts = proxy.counts();
    eprintln!("intermittent 503s: {counts:?}");
    assert!(counts.answered_503 >= 3, "faults were injected: {counts:?}");
    assert!(
        counts.passed >= 2 * counts.answered_503,
        "every 503 was retried: {counts:?}"
    );
}

/// The store goes down in the middle of a backup: the job fails with an error naming
/// the store, after retrying; the backup is `failed`, not `complete`. Once the store is
/// back the next backup succeeds, verifies, and restores identical; so does the earlier one.
#[tokio::test]
async fn an_unreachable_store_fails_the_backup_clearly_and_the_next_one_succeeds() {
    let (app, proxy) = spawn().await;
    let src = app.dir.path().join("src");
    write_source(&src, 100);
    app.create_source("src", &src).await;
    // The worker's own start-up requests (opening, or creating, the repository) are not
    // the backup's: its metrics listener opens once they are done.
    app.worker_metrics(0).await;
    let before = proxy.connections();
    let first = backup_ok(&app, "src", "full").await;
    let requests = proxy.connections() - before;
    let first_tree = snapshot(&src);

    // The same backup again, but the store dies half-way through its requests.
    write_noise(&src.join("big.bin"), 101, 3_000_000);
    proxy.set_mode(Mode::RefuseAfter(requests / 2));
    let (job, took, failed) = backup_fails(&app, "src", "full").await;
    let counts = proxy.counts();
    eprintln!(
        "unreachable: a backup makes {requests} requests; failed after {took:?}: {counts:?}: {}",
        job["error"]["message"]
    );
    assert_storage_error(&job, &proxy, "unreachable");
    assert!(
        counts.refused >= u64::from(S3_ATTEMPTS),
        "the request was retried: {counts:?}"
    );
    assert_catalog_consistent(&app, &[&failed]).await;

    proxy.set_mode(Mode::Pass);
    recovers(&app, &src).await;
    let target = app.dir.path().join("restored-first");
    let r = app.restore(&first, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_tree_matches(&first_tree, &target, "the backup before the fault");
}

/// The store answers `503` to every request: the backup fails, after retrying, with an
/// error quoting the answer; the next backup, once the store is well, succeeds.
#[tokio::test]
async fn a_store_answering_503_fails_the_backup_clearly_and_the_next_one_succeeds() {
    let (app, proxy) = spawn().await;
    let src = app.dir.path().join("src");
    write_source(&src, 200);
    app.create_source("src", &src).await;
    backup_ok(&app, "src", "full").await;

    write_noise(&src.join("sub/mid.bin"), 201, 500_000);
    proxy.set_mode(Mode::Error503);
    let (job, took, failed) = backup_fails(&app, "src", "incremental").await;
    let counts = proxy.counts();
    eprintln!(
        "503s: failed after {took:?}: {counts:?}: {}",
        job["error"]["message"]
    );
    assert_storage_error(&job, &proxy, "HTTP 503");
    assert!(
        counts.answered_503 >= u64::from(S3_ATTEMPTS),
        "the request was retried: {counts:?}"
    );
    assert_catalog_consistent(&app, &[&failed]).await;

    proxy.set_mode(Mode::Pass);
    recovers(&app, &src).await;
}

/// The store is so slow that no try ends within the attempt timeout: the backup fails
/// within a bounded time (tries × timeout + back-off, per request) instead of hanging,
/// with an error saying the store did not answer in time; afterwards all is well.
#[tokio::test]
async fn a_store_slower_than_the_timeouts_fails_the_backup_in_bounded_time() {
    let (app, proxy) = spawn().await;
    let src = app.dir.path().join("src");
    write_source(&src, 300);
    app.create_source("src", &src).await;
    backup_ok(&app, "src", "full").await;

    write_noise(&src.join("small.txt"), 301, 7_000);
    // Each piece either way waits 1.5 s: no request gets an answer within 2 s.
    proxy.set_mode(Mode::Slow(1_500));
    let (job, took, failed) = backup_fails(&app, "src", "incremental").await;
    let counts = proxy.counts();
    eprintln!(
        "slow: failed after {took:?}: {counts:?}: {}",
        job["error"]["message"]
    );
    assert_storage_error(&job, &proxy, "did not answer in time");
    assert!(
        counts.slowed >= u64::from(S3_ATTEMPTS),
        "the request was retried: {counts:?}"
    );
    // One request gives up by the operation timeout; allow a few, and process overhead.
    assert!(
        took < Duration::from_secs(3 * OPERATION_SECS + 15),
        "took {took:?}"
    );
    assert_catalog_consistent(&app, &[&failed]).await;

    proxy.set_mode(Mode::Pass);
    recovers(&app, &src).await;
}

/// The store's server is down (connections refused) during a restore into a directory
/// that holds other data:
/// the job fails with an error naming the store, and the target is untouched, with
/// nothing left beside it; once the store is back the restore succeeds.
#[tokio::test]
async fn an_unreachable_store_fails_a_restore_and_leaves_the_target_untouched() {
    let (app, proxy) = spawn().await;
    let src = app.dir.path().join("src");
    write_source(&src, 400);
    app.create_source("src", &src).await;
    let id = backup_ok(&app, "src", "full").await;

    let target = app.dir.path().join("live");
    std::fs::create_dir_all(target.join("old")).unwrap();
    write_noise(&target.join("old/data.bin"), 401, 200_000);
    let old = snapshot(&target);

    proxy.set_mode(Mode::Down);
    let started = Instant::now();
    let r = app.restore(&id, &target).await;
    let job = app
        .wait_job(r["job_id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    let took = started.elapsed();
    assert_eq!(job["status"], "failed", "{job}\n{}", app.logs());
    eprintln!(
        "restore: failed after {took:?}: {:?}: {}",
        proxy.counts(),
        job["error"]["message"]
    );
    assert!(
        took < Duration::from_secs(OPERATION_SECS + 15),
        "took {took:?}"
    );
    assert_storage_error(&job, &proxy, "unreachable");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{job}"
    );
    assert_tree_matches(&old, &target, "the target after the failed restore");
    let leftovers: Vec<String> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    proxy.set_mode(Mode::Pass);
    let r = app.restore(&id, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&src, &target);
}

/// A download stalls half-way (the store sends the head and a little of the body, then
/// nothing while holding the connection): the restore fails within a bounded time, with
/// an error saying the store stalled, and leaves no target; then it succeeds.
#[tokio::test]
async fn a_download_that_stalls_fails_the_restore_in_bounded_time() {
    let (app, proxy) = spawn().await;
    let src = app.dir.path().join("src");
    write_source(&src, 500);
    app.create_source("src", &src).await;
    let id = backup_ok(&app, "src", "full").await;

    let target = app.dir.path().join("restored");
    proxy.set_mode(Mode::StallBody(1024));
    let started = Instant::now();
    let r = app.restore(&id, &target).await;
    let job = app
        .wait_job(r["job_id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    let took = started.elapsed();
    assert_eq!(job["status"], "failed", "{job}\n{}", app.logs());
    eprintln!(
        "stalled download: failed after {took:?}: {:?}: {}",
        proxy.counts(),
        job["error"]["message"]
    );
    assert_storage_error(
        &job,
        &proxy,
        &format!("stalled for more than {ATTEMPT_SECS}s"),
    );
    assert!(
        took < Duration::from_secs(ATTEMPT_SECS + 20),
        "took {took:?}"
    );
    assert!(!target.exists(), "a failed restore leaves no target");

    proxy.set_mode(Mode::Pass);
    let r = app.restore(&id, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&src, &target);
}
