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

/// Restores `backup_id` into a new directory: it must hold exactly `src`.
async fn assert_restores_to(app: &TestApp, backup_id: &str, src: &std::path::Path) {
    let target = app.dir.path().join(format!("restored-{backup_id}"));
    let r = app.restore(backup_id, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_eq!(
        snapshot(&target),
        snapshot(src),
        "the restored tree differs"
    );
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
    let src = app.create_big_source("big", 6, 700).await;
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
    assert_restores_to(&app, &backup_id, &src).await;
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
    assert_restores_to(&app, b["backup_id"].as_str().unwrap(), &src).await;
}

/// An `Idempotency-Key` answers the same way for `STRATA_IDEMPOTENCY_TTL_SECS`; after
/// that it is a new request (a backup named again is refused as a name, not replayed).
/// Expired keys and schedule fires older than `STRATA_SCHEDULE_FIRES_KEEP_DAYS` (except
/// each schedule's newest) are deleted by the API's housekeeping, at start and hourly.
#[tokio::test]
async fn idempotency_keys_expire_and_old_schedule_fires_are_pruned() {
    use reqwest::StatusCode;
    use serde_json::{json, Value};
    let mut app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("f.bin"), 1, 10_000);
    app.create_source("src", &src).await;
    let post =
        |key: &'static str, body: Value| app.post_with_key("/api/v1/backup/create", key, body);
    let (status, first) = post("k", json!({"source": "src", "name": "one"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    app.wait_success(first["job_id"].as_str().unwrap()).await;

    // The key's answer ages past the default 24 hours.
    let mut db = app.db().await;
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&mut db)
        .await
        .unwrap();
    // Another body with the same key is no longer `idempotency_key_reused`: a new request.
    let (status, second) = post("k", json!({"source": "src", "name": "two"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_ne!(second["job_id"], first["job_id"]);
    app.wait_success(second["job_id"].as_str().unwrap()).await;
    // And the key now answers with the new request's job.
    let (status, again) = post("k", json!({"source": "src", "name": "two"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["job_id"], second["job_id"]);

    // Schedule fires: 200 and 100 days old go, a recent one and the newest stay.
    let (status, schedule) = app
        .post(
            "/api/v1/backup/schedule",
            json!({"cron": "0 3 * * *", "type": "full"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let schedule_id: uuid::Uuid = schedule["id"].as_str().unwrap().parse().unwrap();
    for days in [200, 100, 10] {
        sqlx::query(
            "INSERT INTO schedule_fires (schedule_id, fire_at, outcome, recorded_by)
             VALUES ($1, now() - make_interval(days => $2), 'missed', 'test')",
        )
        .bind(schedule_id)
        .bind(days)
        .execute(&mut db)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '2 days'")
        .execute(&mut db)
        .await
        .unwrap();
    app.kill_api();
    app.restart_api().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
            .fetch_one(&mut db)
            .await
            .unwrap();
        let fires: Vec<i32> = sqlx::query_scalar(
            "SELECT EXTRACT(DAY FROM now() - fire_at)::int FROM schedule_fires
              WHERE schedule_id = $1 ORDER BY fire_at",
        )
        .bind(schedule_id)
        .fetch_all(&mut db)
        .await
        .unwrap();
        if keys == 0 && fires == [10] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not pruned: {keys} keys, fires {fires:?} days old\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A restore and a verify accepted while their backup was complete, whose backup is
/// being deleted by the time a worker takes them, fail `backup_not_complete` at once
/// (the job re-checks the backup in its own transaction) and never read it.
#[tokio::test]
async fn restore_and_verify_recheck_that_their_backup_is_still_complete() {
    let mut app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("f.bin"), 3, 50_000);
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    app.wait_success(b["job_id"].as_str().unwrap()).await;
    let backup_id = b["backup_id"].as_str().unwrap().to_string();

    app.kill_worker(0);
    let target = app.dir.path().join("target");
    let restore = app.restore(&backup_id, &target).await;
    let (status, verify) = app
        .post(
            &format!("/api/v1/backup/{backup_id}/verify"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{verify}");
    let mut db = app.db().await;
    sqlx::query("UPDATE backups SET status = 'deleting' WHERE id = $1")
        .bind(&backup_id)
        .execute(&mut db)
        .await
        .unwrap();
    app.spawn_worker();
    for job in [&restore, &verify] {
        let ended = app
            .wait_job(job["job_id"].as_str().unwrap(), Duration::from_secs(60))
            .await;
        assert_eq!(ended["status"], "failed", "{ended}");
        assert_eq!(ended["error"]["code"], "backup_not_complete", "{ended}");
        assert_eq!(
            ended["attempts"], 1,
            "a permanent failure is not retried: {ended}"
        );
    }
    assert!(!target.exists(), "the restore wrote its target");
}

/// A job the sweeper ends (its worker died, no attempt left) is counted in
/// `strata_job_duration_seconds` by the worker whose sweeper ended it, like a job a
/// runner ends; its backup is `failed`, not left `pending`.
#[tokio::test]
async fn a_job_the_sweeper_fails_is_counted_and_its_backup_is_failed() {
    let mut app = TestApp::spawn(Options {
        workers: 1,
        lease_secs: 3,
        env: vec![
            ("STRATA_LIMIT_UPLOAD_KIB".into(), "8192".into()),
            ("STRATA_JOB_MAX_ATTEMPTS".into(), "1".into()),
        ],
        ..Options::default()
    })
    .await;
    app.create_big_source("big", 4, 900).await;
    let b = app.backup("big", "full").await;
    let job_id = b["job_id"].as_str().unwrap().to_string();
    app.wait_progress(&job_id).await;
    app.kill_worker(0);
    let sweeper = app.spawn_worker();
    let job = app.wait_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "lease_expired", "{job}");
    let (_, backup) = app
        .get(&format!(
            "/api/v1/backup/{}",
            b["backup_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(backup["status"], "failed", "{backup}");
    let metrics = app.worker_metrics(sweeper).await;
    assert!(
        metrics.contains(r#"strata_job_duration_seconds_count{kind="backup",status="failed"} 1"#),
        "the swept job is not counted:\n{metrics}"
    );
}

/// A restore over the source whose job fails (here: its backup is being deleted by the
/// time a worker takes it) leaves its pre-restore backup `failed`, never `pending`.
#[tokio::test]
async fn a_failed_restore_never_leaves_its_pre_restore_backup_pending() {
    let mut app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("f.bin"), 4, 50_000);
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    app.wait_success(b["job_id"].as_str().unwrap()).await;
    let backup_id = b["backup_id"].as_str().unwrap().to_string();

    app.kill_worker(0);
    let (status, r) = app
        .post(
            &format!("/api/v1/backup/restore/{backup_id}"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{r}");
    let pre = r["pre_restore_backup_id"]
        .as_str()
        .expect("a pre-restore backup")
        .to_string();
    let mut db = app.db().await;
    sqlx::query("UPDATE backups SET status = 'deleting' WHERE id = $1")
        .bind(&backup_id)
        .execute(&mut db)
        .await
        .unwrap();
    app.spawn_worker();
    let job = app
        .wait_job(r["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    let status: String = sqlx::query_scalar("SELECT status FROM backups WHERE id = $1")
        .bind(&pre)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(
        status, "failed",
        "the pre-restore backup {pre} was left {status}"
    );
}
