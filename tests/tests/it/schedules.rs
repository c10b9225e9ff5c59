//! Schedules through the real services: the API's validation, exactly one job per fire
//! with several API replicas, downtime with and without catch-up, and retention after
//! scheduled backups over simulated days.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Timelike, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;
use strata_jobs::schedule::{fire_due, FireOptions};
use strata_tests::tree::{assert_tree_matches, snapshot, write_noise};
use strata_tests::{Options, TestApp};
use uuid::Uuid;

async fn create_schedule(app: &TestApp, body: Value) -> Value {
    let (status, created) = app.post("/api/v1/backup/schedule", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// A small source with a few files.
async fn small_source(app: &TestApp, name: &str) -> std::path::PathBuf {
    let dir = app.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..3 {
        write_noise(&dir.join(format!("f{i}.bin")), i, 20_000);
    }
    app.create_source(name, &dir).await;
    dir
}

#[derive(Debug, Clone)]
struct Fire {
    fire_at: DateTime<Utc>,
    outcome: String,
    covers: i32,
    job_id: Option<Uuid>,
    recorded_at: DateTime<Utc>,
    recorded_by: String,
}

async fn fires(app: &TestApp, schedule_id: &str) -> Vec<Fire> {
    let mut db = app.db().await;
    sqlx::query(
        "SELECT fire_at, outcome, covers, job_id, recorded_at, recorded_by FROM schedule_fires
          WHERE schedule_id = $1 ORDER BY fire_at",
    )
    .bind(Uuid::parse_str(schedule_id).unwrap())
    .fetch_all(&mut db)
    .await
    .unwrap()
    .into_iter()
    .map(|r| Fire {
        fire_at: r.get(0),
        outcome: r.get(1),
        covers: r.get(2),
        job_id: r.get(3),
        recorded_at: r.get(4),
        recorded_by: r.get(5),
    })
    .collect()
}

/// Waits until no job of the app is queued or running.
async fn wait_idle(app: &TestApp, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut db = app.db().await;
        let active: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
                .fetch_one(&mut db)
                .await
                .unwrap();
        if active == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "jobs still active\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn schedule_api_validates_fields_and_computes_the_next_run_in_its_zone() {
    let app = TestApp::spawn(Options::default()).await;
    small_source(&app, "app").await;

    for (body, code, field) in [
        (json!({"type": "full"}), "cron_required", "cron"),
        (json!({"cron": "0 2 * *"}), "invalid_cron", "cron"),
        (json!({"cron": "0 25 * * *"}), "invalid_cron", "cron"),
        (json!({"cron": "0 0 30 2 *"}), "invalid_cron", "cron"),
        (json!({"cron": 5}), "invalid_body", "cron"),
        (
            json!({"cron": "0 2 * * *", "timezone": "Europe/Atlantis"}),
            "invalid_timezone",
            "timezone",
        ),
        (
            json!({"cron": "0 2 * * *", "type": "weekly"}),
            "invalid_backup_type",
            "type",
        ),
        (
            json!({"cron": "0 2 * * *", "retention": {"daily": -1}}),
            "invalid_body",
            "retention.daily",
        ),
        (
            json!({"cron": "0 2 * * *", "retention": {"hourly": 3}}),
            "invalid_body",
            "retention.hourly",
        ),
        (
            json!({"cron": "0 2 * * *", "retention": {"keep_last": 0}}),
            "policy_keeps_nothing",
            "retention",
        ),
        (
            json!({"cron": "0 2 * * *", "catch_up": "yes"}),
            "invalid_body",
            "catch_up",
        ),
        (
            json!({"cron": "0 2 * * *", "every": "day"}),
            "invalid_body",
            "every",
        ),
        (
            json!({"cron": "0 2 * * *", "source": "nope"}),
            "source_not_found",
            "source",
        ),
    ] {
        let (status, err) = app.post("/api/v1/backup/schedule", body.clone()).await;
        let expected = if code == "source_not_found" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, expected, "{body} → {err}");
        assert_eq!(err["error"]["code"], code, "{body} → {err}");
        assert_eq!(err["error"]["field"], field, "{body} → {err}");
    }
    let (status, list) = app.get("/api/v1/backup/schedule").await;
    assert_eq!(
        (status, list["count"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{list}"
    );

    // The seed's schedule: 02:00 every day, incremental, 30 days of retention; in Paris.
    let s = create_schedule(
        &app,
        json!({"cron": "0 2 * * *", "type": "incremental", "retention_days": 30, "timezone": "Europe/Paris"}),
    )
    .await;
    assert_eq!(s["type"], "incremental");
    assert_eq!(s["source"], "app");
    assert_eq!(s["retention"], json!({"retention_days": 30}));
    assert_eq!(
        (s["catch_up"].as_bool(), s["enabled"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(s["last_run_at"], Value::Null);
    assert_eq!(s["last_status"], Value::Null);
    let next: DateTime<Utc> = s["next_run_at"].as_str().unwrap().parse().unwrap();
    let local = next.with_timezone(&chrono_tz::Europe::Paris);
    assert_eq!(
        (local.hour(), local.minute(), local.second()),
        (2, 0, 0),
        "{s}"
    );
    assert!(
        next > Utc::now() && next < Utc::now() + chrono::Duration::hours(25),
        "{s}"
    );
    let id = s["id"].as_str().unwrap().to_string();

    // Update: disable (no next run), then a six-field cron in UTC.
    let path = format!("/api/v1/backup/schedule/{id}");
    let (status, s) = app
        .request(Method::PUT, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        (s["enabled"].as_bool(), &s["next_run_at"]),
        (Some(false), &Value::Null)
    );
    assert_eq!(s["cron"], "0 2 * * *", "fields left out keep their values");
    let (status, s) = app
        .request(
            Method::PUT,
            &path,
            Some(json!({"enabled": true, "cron": "30 15 3 * * 1", "timezone": "UTC", "retention": {"daily": 7, "weekly": 4}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let next: DateTime<Utc> = s["next_run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        (
            next.weekday_num(),
            next.hour(),
            next.minute(),
            next.second()
        ),
        (1, 3, 15, 30),
        "{s}"
    );
    assert_eq!(s["retention"], json!({"daily": 7, "weekly": 4}));
    let (status, err) = app
        .request(Method::PUT, &path, Some(json!({"timezone": "Nowhere"})))
        .await;
    assert_eq!(
        (status, &err["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("timezone"))
    );

    let (status, got) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["recent_fires"], json!([]));
    let (status, list) = app.get("/api/v1/backup/schedule?source=app").await;
    assert_eq!(
        (status, list["count"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{list}"
    );

    // Schedules need an admin to change; a viewer may read them.
    let (status, key) = app
        .post("/api/v1/keys", json!({"name": "ro", "role": "viewer"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let viewer = strata_tests::authed_client(key["key"].as_str().unwrap());
    let res = viewer
        .post(format!("{}/api/v1/backup/schedule", app.base))
        .json(&json!({"cron": "0 2 * * *"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = viewer
        .get(format!("{}/api/v1/backup/schedule", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let (status, _) = app.request(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = app.get(&path).await;
    assert_eq!(
        (status, &err["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("schedule_not_found"))
    );
    let (status, _) = app.get("/api/v1/backup/schedule/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

trait Weekday {
    fn weekday_num(&self) -> u32;
}

impl Weekday for DateTime<Utc> {
    fn weekday_num(&self) -> u32 {
        use chrono::Datelike;
        self.weekday().num_days_from_sunday()
    }
}

#[tokio::test]
async fn three_api_replicas_fire_every_second_exactly_once() {
    let mut app = TestApp::spawn(Options {
        workers: 2,
        ..Options::default()
    })
    .await;
    let second = app.start_api().await;
    let second_index = app.process_count() - 1;
    app.start_api().await;
    let third_index = app.process_count() - 1;
    small_source(&app, "busy").await;
    let s = create_schedule(
        &app,
        json!({"source": "busy", "cron": "* * * * * *", "type": "incremental"}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_string();
    let started = Utc::now();

    // Halfway, the replica that recorded the most fires dies (SIGKILL): the others take
    // over and no fire is lost.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for f in fires(&app, &id).await {
        *counts.entry(f.recorded_by).or_default() += 1;
    }
    let top = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(r, _)| r.clone())
        .unwrap();
    let top_pid: u32 = top.rsplit(':').next().unwrap().parse().unwrap();
    if app.api_pid() == Some(top_pid) {
        app.kill_api();
        app.base = second;
    } else if app.process_pid(second_index) == Some(top_pid) {
        app.kill_worker(second_index);
    } else {
        assert_eq!(app.process_pid(third_index), Some(top_pid), "{counts:?}");
        app.kill_worker(third_index);
    }
    let killed_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let path = format!("/api/v1/backup/schedule/{id}");
    let (status, body) = app
        .request(Method::PUT, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stopped = Utc::now();
    wait_idle(&app, Duration::from_secs(120)).await;

    let fires = fires(&app, &id).await;
    assert!(
        fires.len() >= 10,
        "only {} fires in 12 s: {fires:?}",
        fires.len()
    );
    // Every second from the first fire to the last has exactly one record: none missed.
    let first = fires[0].fire_at;
    let last = fires[fires.len() - 1].fire_at;
    assert!(first >= started - chrono::Duration::seconds(1) && last <= stopped);
    assert_eq!(
        (last - first).num_seconds() + 1,
        fires.len() as i64,
        "a second without a fire record: {fires:?}"
    );
    for f in &fires {
        assert_eq!(f.covers, 1, "{f:?}");
        assert_eq!(f.fire_at.nanosecond(), 0, "{f:?}");
        assert!(
            f.outcome == "queued" || f.outcome == "skipped_busy",
            "unexpected outcome: {f:?}"
        );
        // Fired on time, not caught up later.
        assert!(
            f.recorded_at - f.fire_at < chrono::Duration::seconds(5),
            "{f:?}"
        );
    }
    // One job per queued fire, each different, all of this schedule, all succeeded.
    let queued: Vec<Uuid> = fires.iter().filter_map(|f| f.job_id).collect();
    assert_eq!(
        queued.len(),
        fires.iter().filter(|f| f.outcome == "queued").count()
    );
    assert_eq!(queued.iter().collect::<HashSet<_>>().len(), queued.len());
    assert!(queued.len() >= 2, "{fires:?}");
    let mut db = app.db().await;
    let jobs: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, kind, status FROM jobs WHERE schedule_id = $1 ORDER BY id")
            .bind(Uuid::parse_str(&id).unwrap())
            .fetch_all(&mut db)
            .await
            .unwrap();
    let job_ids: BTreeSet<Uuid> = jobs.iter().map(|j| j.0).collect();
    assert_eq!(job_ids, queued.iter().copied().collect::<BTreeSet<_>>());
    for (job, kind, status) in &jobs {
        assert_eq!(
            (kind.as_str(), status.as_str()),
            ("backup", "succeeded"),
            "job {job}"
        );
    }
    let after_kill: Vec<&Fire> = fires.iter().filter(|f| f.recorded_at > killed_at).collect();
    assert!(after_kill.len() >= 4, "{fires:?}");
    assert!(
        after_kill.iter().all(|f| f.recorded_by != top),
        "a dead replica recorded a fire"
    );
    let busy = fires.iter().filter(|f| f.outcome == "skipped_busy").count();
    let mut by_replica: BTreeMap<String, usize> = BTreeMap::new();
    for f in &fires {
        *by_replica.entry(f.recorded_by.clone()).or_default() += 1;
    }
    println!(
        "fires: {} over {} s, jobs: {}, skipped (source busy): {busy}, recorded by replica: {by_replica:?}",
        fires.len(),
        (last - first).num_seconds() + 1,
        queued.len()
    );

    // What the schedule shows, and its metrics.
    let (status, got) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(
        got["last_run_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        last
    );
    assert!(got["last_success_at"].is_string(), "{got}");
    assert_eq!(got["next_run_at"], Value::Null);
    let (_, job) = app.get("/api/v1/jobs?kind=backup&limit=1").await;
    assert_eq!(job["items"][0]["schedule_id"], json!(id), "{job}");
    let metrics = app.metrics().await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("strata_schedule_last_success_timestamp_seconds{") && l.contains(&id)
        })
        .unwrap_or_else(|| panic!("no last-success metric for {id}:\n{metrics}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (value - Utc::now().timestamp() as f64).abs() < 300.0,
        "{line}"
    );
    assert!(
        metrics.contains(&format!(
            "strata_schedule_fires{{schedule_id=\"{id}\",source=\"busy\",outcome=\"queued\"}} {}",
            queued.len()
        )),
        "{metrics}"
    );
    // Jobs, the queue and the source's last success, from the same scrape.
    assert!(
        metrics.contains(&format!(
            "strata_jobs{{kind=\"backup\",status=\"succeeded\"}} {}",
            queued.len()
        )),
        "{metrics}"
    );
    assert!(metrics.contains("strata_queue_depth 0"), "{metrics}");
    assert!(
        metrics.contains("strata_queue_oldest_age_seconds 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_source_last_success_timestamp_seconds{source=\"busy\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn downtime_across_a_fire_catches_up_once_or_skips_per_schedule() {
    let mut app = TestApp::spawn(Options {
        env: vec![("STRATA_SCHEDULE_MISFIRE_GRACE_SECS".into(), "2".into())],
        ..Options::default()
    })
    .await;
    small_source(&app, "catchup").await;
    small_source(&app, "skip").await;
    let every = "*/4 * * * * *";
    let yes = create_schedule(
        &app,
        json!({"source": "catchup", "cron": every, "catch_up": true}),
    )
    .await;
    let no = create_schedule(
        &app,
        json!({"source": "skip", "cron": every, "catch_up": false}),
    )
    .await;
    let (yes, no) = (
        yes["id"].as_str().unwrap().to_string(),
        no["id"].as_str().unwrap().to_string(),
    );

    // Every API replica down for ~10 s: two or three fires pass unseen.
    app.kill_api();
    let down_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let up_at = Utc::now();
    app.restart_api().await;
    // Until a fire after the restart has been recorded on time for both.
    tokio::time::sleep(Duration::from_secs(9)).await;
    wait_idle(&app, Duration::from_secs(60)).await;

    for (id, catch_up) in [(&yes, true), (&no, false)] {
        let all = fires(&app, id).await;
        let after: Vec<&Fire> = all.iter().filter(|f| f.fire_at > down_at).collect();
        let first = after
            .first()
            .unwrap_or_else(|| panic!("no fire after the downtime: {all:?}"));
        // The missed fires are one record at the newest of them, covering them all.
        assert!(first.fire_at < up_at, "{first:?}");
        assert!(
            first.covers >= 2,
            "9 s down with a fire every 4 s: {first:?}"
        );
        assert!(
            first.recorded_at - first.fire_at > chrono::Duration::seconds(1),
            "{first:?}"
        );
        if catch_up {
            assert_eq!(first.outcome, "queued", "{first:?}");
            let job = app.wait_success(&first.job_id.unwrap().to_string()).await;
            assert_eq!(job["schedule_id"], json!(id));
        } else {
            assert_eq!(
                (first.outcome.as_str(), first.job_id),
                ("missed", None),
                "{first:?}"
            );
        }
        // No record for the individual missed times, and firing goes on afterwards.
        let missed_window: Vec<&&Fire> =
            after.iter().filter(|f| f.fire_at < first.fire_at).collect();
        assert!(missed_window.is_empty());
        let later: Vec<&&Fire> = after.iter().skip(1).collect();
        assert!(
            later
                .iter()
                .any(|f| f.outcome == "queued" && f.fire_at > up_at),
            "no on-time fire after the restart: {all:?}"
        );
        let (_, s) = app.get(&format!("/api/v1/backup/schedule/{id}")).await;
        assert!(!s["recent_fires"].as_array().unwrap().is_empty(), "{s}");
    }
}

/// Policy of the simulated weeks: the newest backup of each of the last 4 days and of
/// the last 2 ISO weeks.
const POLICY: &str = r#"{"daily": 4, "weekly": 2}"#;

#[tokio::test]
async fn retention_after_scheduled_backups_over_simulated_days_keeps_the_policy_and_chains() {
    // The ticker is off: the test drives the same firing code with a simulated clock.
    let app = TestApp::spawn(Options {
        workers: 2,
        env: vec![("STRATA_SCHEDULER".into(), "off".into())],
        ..Options::default()
    })
    .await;
    let src = app.dir.path().join("site");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("base.bin"), 1, 300_000);
    app.create_source("site", &src).await;
    let policy: Value = serde_json::from_str(POLICY).unwrap();
    // Full on Sundays, differential on Wednesdays, incremental the other days, 03:00 UTC.
    let mut schedule_ids = Vec::new();
    for (cron, t) in [
        ("0 3 * * 0", "full"),
        ("0 3 * * 3", "differential"),
        ("0 3 * * 1,2,4,5,6", "incremental"),
    ] {
        let s = create_schedule(
            &app,
            json!({"source": "site", "cron": cron, "type": t, "retention": policy}),
        )
        .await;
        schedule_ids.push(Uuid::parse_str(s["id"].as_str().unwrap()).unwrap());
    }
    // Day 0 is Sunday 3 January 2027; the simulated clock starts just before it.
    let day0 = Utc.with_ymd_and_hms(2027, 1, 3, 3, 0, 0).unwrap();
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    for id in &schedule_ids {
        // What the schedules' next runs would be had they been created that Saturday.
        let when = strata_jobs::schedule::When::parse(
            &sqlx::query_scalar::<_, String>("SELECT cron FROM schedules WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap(),
            "UTC",
        )
        .unwrap();
        let next = when.next_after(day0 - chrono::Duration::hours(1)).unwrap();
        sqlx::query("UPDATE schedules SET next_run_at = $2 WHERE id = $1")
            .bind(id)
            .bind(next)
            .execute(&pool)
            .await
            .unwrap();
    }
    let opts = FireOptions {
        misfire_grace: chrono::Duration::seconds(60),
        max_attempts: 3,
        replica: "test-clock".into(),
    };

    let days = 15;
    let mut by_day: Vec<(String, String)> = Vec::new(); // (backup id, type)
    let mut trees = HashMap::new();
    for day in 0..days {
        // The application changes every day: a new file, one rewritten, one removed.
        write_noise(&src.join(format!("day-{day:02}.bin")), 100 + day, 50_000);
        write_noise(&src.join("changing.bin"), 1000 + day, 80_000);
        if day >= 3 {
            std::fs::remove_file(src.join(format!("day-{:02}.bin", day - 3))).ok();
        }
        let now = day0 + chrono::Duration::days(day as i64) + chrono::Duration::seconds(1);
        let report = fire_due(&pool, now, &opts).await.unwrap();
        assert_eq!(report.queued, 1, "day {day}: {report:?}");
        let (job_id, backup_id, t): (Uuid, String, String) = sqlx::query_as(
            "SELECT j.id, j.backup_id, b.requested_type FROM jobs j JOIN backups b ON b.id = j.backup_id
              WHERE j.kind = 'backup' ORDER BY j.created_at DESC, j.id DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let job = app.wait_success(&job_id.to_string()).await;
        // Retention ran as the backup completed; its prune job, if any, finishes too.
        let retention = &job["result"]["retention"];
        assert!(retention.is_object(), "day {day}: {job}");
        if let Some(prune) = retention["job_id"].as_str() {
            app.wait_success(prune).await;
        }
        trees.insert(backup_id.clone(), snapshot(&src));
        by_day.push((backup_id, t));
    }
    let types: Vec<&str> = by_day.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "full",
            "incremental",
            "incremental",
            "differential",
            "incremental",
            "incremental",
            "incremental",
            "full",
            "incremental",
            "incremental",
            "differential",
            "incremental",
            "incremental",
            "incremental",
            "full"
        ]
    );

    // As of day 14 (a Sunday): daily 4 keeps days 11–14; weekly 2 keeps the newest of
    // ISO weeks Mon 4–Sun 10 (day 7) and Mon 11–Sun 17 (day 14). Chains: day 13 → 12 →
    // 11 → 10 (the differential) → 7 (its full), so days 7 and 10 stay as ancestors.
    let expected: BTreeSet<&str> = [7, 10, 11, 12, 13, 14]
        .iter()
        .map(|d| by_day[*d].0.as_str())
        .collect();
    let mut db = app.db().await;
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, status, parent_id FROM backups ORDER BY created_at")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let complete: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.1 == "complete")
        .map(|r| r.0.as_str())
        .collect();
    assert_eq!(complete, expected, "catalog: {rows:?}");
    assert_eq!(
        rows.len(),
        expected.len(),
        "deleted backups leave the catalog: {rows:?}"
    );
    let parent = |d: usize| rows.iter().find(|r| r.0 == by_day[d].0).unwrap().2.clone();
    assert_eq!(parent(13).as_deref(), Some(by_day[12].0.as_str()));
    assert_eq!(parent(11).as_deref(), Some(by_day[10].0.as_str()));
    assert_eq!(parent(10).as_deref(), Some(by_day[7].0.as_str()));
    assert_eq!(parent(14), None);

    // Every kept backup restores its day's tree exactly.
    for id in &expected {
        let target = app.dir.path().join(format!("restored-{id}"));
        let r = app.restore(id, &target).await;
        app.wait_success(r["job_id"].as_str().unwrap()).await;
        assert_tree_matches(&trees[*id], &target, id);
    }
    // The fires were recorded once each, by the test's clock.
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM schedule_fires WHERE outcome = 'queued'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(recorded, days as i64);
}

#[tokio::test]
async fn a_fire_while_the_source_is_busy_is_skipped_and_recorded_not_queued() {
    // No worker yet: a backup asked for through the API stays queued, the source busy.
    let mut app = TestApp::spawn(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    small_source(&app, "db").await;
    let manual = app.backup("db", "full").await;
    let manual_job = manual["job_id"].as_str().unwrap().to_string();
    let s = create_schedule(&app, json!({"source": "db", "cron": "* * * * * *"})).await;
    let id = s["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let busy = fires(&app, &id).await;
    assert!(busy.len() >= 2, "{busy:?}");
    for f in &busy {
        assert_eq!(
            (f.outcome.as_str(), f.job_id),
            ("skipped_busy", None),
            "{f:?}"
        );
    }
    let (_, got) = app.get(&format!("/api/v1/backup/schedule/{id}")).await;
    assert_eq!(got["last_status"], "skipped_busy", "{got}");
    let fire = &got["recent_fires"][0];
    assert_eq!(fire["error"]["code"], "job_in_progress", "{got}");
    assert_eq!(fire["error"]["job_id"], json!(manual_job), "{got}");
    // Nothing was queued behind the running job.
    let (_, jobs) = app.get("/api/v1/jobs?kind=backup").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1, "{jobs}");

    // A worker arrives: the manual backup runs, then the schedule's fires make jobs.
    app.spawn_worker();
    app.wait_success(&manual_job).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let queued = loop {
        let all = fires(&app, &id).await;
        if let Some(f) = all.iter().find(|f| f.outcome == "queued") {
            break f.clone();
        }
        assert!(Instant::now() < deadline, "no fire queued a job: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (status, _) = app
        .request(
            Method::DELETE,
            &format!("/api/v1/backup/schedule/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let job = app.wait_success(&queued.job_id.unwrap().to_string()).await;
    // Deleting the schedule keeps its jobs, now without a schedule.
    assert_eq!(job["schedule_id"], Value::Null, "{job}");
}
