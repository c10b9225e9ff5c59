//! The job lifecycle across process deaths and stalls: the outbox relay runs in the
//! workers too, and a job whose pipeline stalls is handed back by the watchdog.

use std::time::{Duration, Instant};

use strata_tests::faulty_proxy::{FaultyProxy, Mode};
use strata_tests::tree::{snapshot, write_noise};
use strata_tests::{s3_endpoint, Backend, Options, TestApp};

/// The job's status and error code, read from the catalog (no API process needed).
async fn job_row(app: &TestApp, job_id: &str) -> (String, Option<String>, i32) {
    let mut db = app.db().await;
    let id: uuid::Uuid = job_id.parse().unwrap();
    sqlx::query_as("SELECT status, error->>'code', attempts FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

/// An API and a worker run a backup; the worker is SIGKILLed part-way and the API is
/// stopped. A new worker alone (no API process at all) takes the job back once its
/// lease expires (its sweeper re-queues it, its relay publishes it) and finishes it;
/// an API started afterwards reports it `succeeded`, and the backup restores whole.
#[tokio::test]
async fn a_job_whose_worker_died_is_finished_by_another_worker_with_no_api_running() {
    // Uploads limited to 16 MiB/s: the 96 MiB backup runs for seconds.
    let mut app = TestApp::spawn(Options {
        workers: 1,
        lease_secs: 3,
        env: vec![("STRATA_LIMIT_UPLOAD_KIB".into(), "16384".into())],
        ..Options::default()
    })
    .await;
    let src = app.dir.path().join("big");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        write_noise(
            &src.join(format!("part-{i}.bin")),
            700 + i,
            16 * 1024 * 1024,
        );
    }
    app.create_source("big", &src).await;
    let b = app.backup("big", "full").await;
    let job_id = b["job_id"].as_str().unwrap().to_string();
    let backup_id = b["backup_id"].as_str().unwrap().to_string();
    app.wait_progress(&job_id).await;

    app.kill_worker(0);
    app.kill_api();
    let (status, _, _) = job_row(&app, &job_id).await;
    assert_eq!(status, "running", "the job was interrupted part-way");

    app.spawn_worker();
    let deadline = Instant::now() + Duration::from_secs(120);
    let attempts = loop {
        let (status, code, attempts) = job_row(&app, &job_id).await;
        if status == "succeeded" {
            break attempts;
        }
        assert!(
            !matches!(status.as_str(), "failed" | "cancelled"),
            "the job ended {status} ({code:?}):\n{}",
            app.logs()
        );
        assert!(
            Instant::now() < deadline,
            "no worker finished the job without an API ({status}, {code:?}):\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(attempts >= 2, "the job ran again: {attempts} attempts");

    app.restart_api().await;
    let job = app.job(&job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let target = app.dir.path().join("restored");
    let r = app.restore(&backup_id, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_eq!(
        snapshot(&target),
        snapshot(&src),
        "the restored tree differs"
    );
}

/// Storage stops answering without erroring (every request hangs): a running backup
/// makes no progress, the watchdog stops it after `STRATA_JOB_STALL_SECS` and hands it
/// back as a transient failure (`job_stalled`, the log saying what it waited on); once
/// storage answers again the retry succeeds.
#[tokio::test]
async fn a_stalled_job_is_handed_back_and_finishes_once_storage_answers() {
    const STALL: u64 = 3;
    const LEASE: u64 = 3;
    let proxy = FaultyProxy::start(&s3_endpoint()).await;
    let app = TestApp::spawn(Options {
        backend: Backend::S3,
        lease_secs: LEASE,
        env: vec![
            ("STRATA_S3_ENDPOINT".into(), proxy.url()),
            ("STRATA_JOB_STALL_SECS".into(), STALL.to_string()),
        ],
        ..Options::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        write_noise(&src.join(format!("f{i}.bin")), 40 + i, 2 * 1024 * 1024);
    }
    app.create_source("src", &src).await;
    // The worker has opened the repository (it listens for metrics only after that).
    app.worker_metrics(0).await;

    // A 10-minute pause before each piece passed along: every request hangs, none fails.
    proxy.set_mode(Mode::Slow(600_000));
    let b = app.backup("src", "full").await;
    let job_id = b["job_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(STALL + LEASE + 20);
    loop {
        let (status, code, _) = job_row(&app, &job_id).await;
        if code.as_deref() == Some("job_stalled") {
            break;
        }
        assert!(
            !matches!(status.as_str(), "succeeded" | "failed" | "cancelled"),
            "the job ended {status} ({code:?}) while storage hung:\n{}",
            app.logs()
        );
        assert!(
            Instant::now() < deadline,
            "the stalled job was not handed back within {:?} ({status}, {code:?}):\n{}",
            deadline - started,
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(proxy.counts().slowed > 0, "{:?}", proxy.counts());
    proxy.set_mode(Mode::Pass);

    let job = app.wait_success(&job_id).await;
    assert!(job["attempts"].as_i64().unwrap() >= 2, "{job}");
    let logs = app.logs();
    assert!(
        logs.contains("made no progress for STRATA_JOB_STALL_SECS") && logs.contains("waiting_on"),
        "the log does not say the job stalled, nor on what:\n{logs}"
    );
    let target = app.dir.path().join("restored");
    let r = app.restore(b["backup_id"].as_str().unwrap(), &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_eq!(
        snapshot(&target),
        snapshot(&src),
        "the restored tree differs"
    );
}
