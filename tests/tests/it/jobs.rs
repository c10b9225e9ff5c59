//! The job pipeline loses nothing: worker crashes, a broker the API cannot reach,
//! duplicate and garbage messages, replicas starting together.

use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use reqwest::StatusCode;
use serde_json::json;
use strata_tests::tree::{assert_same_tree, write_noise};
use strata_tests::{amqp_url, Options, TestApp};

#[tokio::test]
async fn a_job_survives_its_worker_being_killed_mid_backup() {
    // Uploads limited to 16 MiB/s: the 96 MiB backup runs for seconds on any machine,
    // long enough to be interrupted part-way.
    let mut app = TestApp::spawn(Options {
        workers: 1,
        lease_secs: 3,
        env: vec![("STRATA_LIMIT_UPLOAD_KIB".into(), "16384".into())],
        ..Default::default()
    })
    .await;
    let src = app.create_big_source("big", 6, 100).await;
    let accepted = app.backup("big", "full").await;
    let job_id = accepted["job_id"].as_str().unwrap().to_string();
    let backup_id = accepted["backup_id"].as_str().unwrap().to_string();

    // Kill the worker once it is visibly part-way through.
    app.wait_progress(&job_id).await;
    app.kill_worker(0);

    // While nobody runs it, the backup is not listed as complete.
    let (_, backup) = app.get(&format!("/api/v1/backup/{backup_id}")).await;
    assert_eq!(backup["status"], "pending", "{backup}");
    let (_, complete) = app.get("/api/v1/backup/list?status=complete").await;
    assert_eq!(complete["items"].as_array().unwrap().len(), 0, "{complete}");

    app.spawn_worker();
    let job = app.wait_success(&job_id).await;
    assert!(job["attempts"].as_i64().unwrap() >= 2, "{job}");
    let (_, backup) = app.get(&format!("/api/v1/backup/{backup_id}")).await;
    assert_eq!(backup["status"], "complete", "{backup}");

    let target = app.dir.path().join("restored");
    let r = app.restore(&backup_id, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&src, &target);
}

#[tokio::test]
async fn jobs_accepted_while_rabbitmq_is_unreachable_run_once_it_is_back() {
    // An API whose broker is unreachable still accepts jobs: the outbox keeps them.
    let mut app = TestApp::spawn(Options {
        workers: 1,
        ..Default::default()
    })
    .await;
    let (cut_off, mut cut_off_api) = app
        .start_api_with(&[("STRATA_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")])
        .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("a.bin"), 1, 200_000);
    app.create_source("src", &src).await;

    let client = app.client.clone();
    let res = client
        .post(format!("{cut_off}/api/v1/backup/create"))
        .json(&json!({ "source": "src", "type": "full" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: serde_json::Value = res.json().await.unwrap();
    let health: serde_json::Value = client
        .get(format!("{cut_off}/api/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["checks"]["queue"]["status"], "error", "{health}");
    assert_eq!(health["canBackup"], false, "{health}");

    // The cut-off API crashes before it could ever publish; nothing is lost: the
    // connected API's relay publishes the outbox row.
    cut_off_api.kill().unwrap();
    cut_off_api.wait().unwrap();
    let job = app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    assert_eq!(job["attempts"], 1, "{job}");
}

async fn publish_raw(queue: &str, payload: &[u8]) {
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        payload,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    conn.close(200, "bye".into()).await.ok();
}

async fn message_count(queue: &str) -> u32 {
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    conn.close(200, "bye".into()).await.ok();
    q.message_count()
}

#[tokio::test]
async fn duplicate_messages_run_a_job_once_and_garbage_goes_to_the_dead_letter_queue() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "a").unwrap();
    app.create_source("src", &src).await;
    let accepted = app.backup("src", "full").await;
    let job_id = accepted["job_id"].as_str().unwrap();
    app.wait_success(job_id).await;

    let topo = strata_jobs::queue::Topology::new(&app.queue);
    // The same job message again, twice: a redelivery must not run the job again.
    let msg = serde_json::to_vec(&json!({ "job_id": job_id })).unwrap();
    publish_raw(&topo.queue, &msg).await;
    publish_raw(&topo.queue, &msg).await;
    publish_raw(&topo.queue, b"\x00 definitely not json").await;

    let deadline = Instant::now() + Duration::from_secs(20);
    while message_count(&topo.dead_letter_queue).await < 1 {
        assert!(
            Instant::now() < deadline,
            "garbage never reached the dead-letter queue\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(message_count(&topo.queue).await, 0);
    assert_eq!(message_count(&topo.dead_letter_queue).await, 1);
    let job = app.job(job_id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["attempts"], 1, "the job ran again: {job}");
    assert!(
        app.full_logs().contains("dead-letter"),
        "no log line for the garbage message"
    );
}

#[tokio::test]
async fn several_replicas_starting_at_once_migrate_one_database() {
    let mut app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    // Three APIs race to create and migrate a fresh database: all start, and every
    // migration is applied exactly once.
    let fresh = format!("strata_race_{}", uuid::Uuid::new_v4().simple());
    let (base, _) = app.database_url.rsplit_once('/').unwrap();
    let fresh_url = format!("{base}/{fresh}");
    let launched: Vec<_> = (0..3)
        .map(|_| app.launch_api(&[("STRATA_DATABASE_URL", fresh_url.as_str())]))
        .collect();
    let mut children = Vec::new();
    for pending in launched {
        children.push(app.api_ready(pending).await);
    }
    for (b, _) in &children {
        let res = app.client.get(format!("{b}/readyz")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let mut conn: sqlx::PgConnection =
        <sqlx::PgConnection as sqlx::Connection>::connect(&fresh_url)
            .await
            .unwrap();
    // Every migration applied exactly once.
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(applied as usize, strata_catalog::MIGRATOR.iter().count());
    for (_, mut child) in children {
        child.kill().ok();
        child.wait().ok();
    }
    let admin = strata_tests::admin_database_url();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin.as_str())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{fresh}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Reads server-sent events until the stream ends (or `max` events): `(id, event, job)`.
async fn read_events(
    mut res: reqwest::Response,
    max: usize,
) -> Vec<(i64, String, serde_json::Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse::<i64>().unwrap());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).unwrap());
                }
            }
            if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                out.push((id, event, data));
                if out.len() == max {
                    return out;
                }
            }
        }
    }
    out
}

/// `GET /api/v1/jobs/{id}/events`: a backup's progress arrives as it changes, in order,
/// ending with its final state; a reconnect with `Last-Event-ID` resumes (and a finished
/// job already seen ends at once); anonymous callers and unknown jobs are refused.
#[tokio::test]
async fn job_events_stream_progress_in_order_and_resume_after_a_reconnect() {
    let app = TestApp::spawn(Options {
        workers: 1,
        env: vec![("STRATA_LIMIT_UPLOAD_KIB".into(), "8192".into())],
        ..Default::default()
    })
    .await;
    app.create_big_source("big", 3, 11).await;
    let accepted = app.backup("big", "full").await;
    let job = accepted["job_id"].as_str().unwrap().to_string();
    let url = format!("{}/api/v1/jobs/{job}/events", app.base);
    let res = app.client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // Read a few events, drop the connection, reconnect from the last id.
    let first = read_events(res, 3).await;
    assert!(!first.is_empty());
    let last_id = first.last().unwrap().0;
    let res = app
        .client
        .get(&url)
        .header("Last-Event-ID", last_id.to_string())
        .send()
        .await
        .unwrap();
    let rest = read_events(res, usize::MAX).await;
    let all: Vec<_> = first.iter().chain(rest.iter()).collect();
    for pair in all.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "ids in order: {} then {}",
            pair[0].0,
            pair[1].0
        );
    }
    assert!(
        rest.iter().all(|(id, _, _)| *id > last_id),
        "nothing replayed"
    );
    let (_, event, job_view) = all.last().unwrap();
    assert_eq!(event, "end");
    assert_eq!(job_view["status"], "succeeded", "{job_view}");
    assert!(all[..all.len() - 1].iter().all(|(_, e, _)| e == "job"));
    let bytes: Vec<i64> = all
        .iter()
        .map(|(_, _, j)| j["progress"]["bytes_done"].as_i64().unwrap())
        .collect();
    assert!(
        bytes.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {bytes:?}"
    );
    assert!(
        all.iter()
            .any(|(_, _, j)| j["status"] == "running" && j["phase"].is_string()),
        "the job was seen running, with its phase: {:?}",
        all.iter()
            .map(|(_, _, j)| (j["status"].clone(), j["phase"].clone()))
            .collect::<Vec<_>>()
    );
    // A finished job already seen: the stream ends at once, empty.
    let final_id = all.last().unwrap().0;
    let res = app
        .client
        .get(&url)
        .header("Last-Event-ID", final_id.to_string())
        .send()
        .await
        .unwrap();
    assert!(read_events(res, usize::MAX).await.is_empty());
    // Without an id, a finished job gives its final state and ends.
    let res = app.client.get(&url).send().await.unwrap();
    let again = read_events(res, usize::MAX).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, "end");
    // Who may: not anonymous; an unknown job is a 404.
    let anon = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    let (status, err) = app
        .get("/api/v1/jobs/01900000-0000-7000-8000-000000000000/events")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
}
