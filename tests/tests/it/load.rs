//! Load (issue 8): many backup jobs created at once run exactly once each; concurrent
//! restores of one source admit exactly one.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::tree::write_noise;
use strata_tests::{Options, TestApp};

/// Jobs of the load test: 1,000 by default; `STRATA_TEST_LOAD_JOBS` changes it (a
/// longer soak, or a quick local run).
fn load_jobs() -> usize {
    std::env::var("STRATA_TEST_LOAD_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test]
async fn a_thousand_backup_jobs_created_at_once_all_succeed_exactly_once() {
    let app = TestApp::spawn(Options {
        workers: 4,
        ..Options::default()
    })
    .await;
    let n = load_jobs();
    // Small sources: each its own directory with two small files.
    let root = app.dir.path().join("sources");
    let mut conn = app.db().await;
    for i in 0..n {
        let dir = root.join(format!("s{i:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        write_noise(&dir.join("a.bin"), i as u64, 4_000);
        std::fs::write(dir.join("b.txt"), format!("source {i}\n")).unwrap();
    }
    // Registered through the API, a few at a time.
    let sources: Vec<String> = (0..n).map(|i| format!("s{i:04}")).collect();
    for chunk in sources.chunks(50) {
        let mut set = tokio::task::JoinSet::new();
        for name in chunk {
            let client = app.client.clone();
            let url = format!("{}/api/v1/sources", app.base);
            let body = json!({"name": name, "files": {"path": root.join(name)}});
            set.spawn(async move { client.post(url).json(&body).send().await });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap().unwrap().status(), StatusCode::CREATED);
        }
    }

    // Every backup requested at once, by 64 concurrent clients.
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(sources.clone()));
    for _ in 0..64 {
        let (client, base, queue) = (app.client.clone(), app.base.clone(), queue.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let Some(name) = queue.lock().await.pop() else {
                    return out;
                };
                let t = Instant::now();
                let res = client
                    .post(format!("{base}/api/v1/backup/create"))
                    .json(&json!({"source": name, "type": "full"}))
                    .send()
                    .await
                    .unwrap();
                let latency = t.elapsed();
                assert_eq!(res.status(), StatusCode::ACCEPTED);
                let body: Value = res.json().await.unwrap();
                out.push((latency, body["job_id"].as_str().unwrap().to_string()));
            }
        });
    }
    let mut latencies = Vec::new();
    let mut job_ids = Vec::new();
    while let Some(r) = set.join_next().await {
        for (latency, id) in r.unwrap() {
            latencies.push(latency);
            job_ids.push(id);
        }
    }
    let accepted_in = started.elapsed();
    assert_eq!(job_ids.len(), n);

    // All succeed; each ran to completion exactly once.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (succeeded, other): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),
                    count(*) FILTER (WHERE status IN ('failed', 'cancelled'))
               FROM jobs WHERE kind = 'backup'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(other, 0, "a job failed\n{}", app.logs());
        if succeeded as usize == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{succeeded} of {n} done\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all_done_in = started.elapsed();
    let (jobs, attempts_over_1, complete, distinct_backups): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM jobs WHERE kind = 'backup'),
                    (SELECT count(*) FROM jobs WHERE kind = 'backup' AND attempts <> 1),
                    (SELECT count(*) FROM backups WHERE status = 'complete'),
                    (SELECT count(DISTINCT source_id) FROM backups WHERE status = 'complete')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (jobs, attempts_over_1, complete, distinct_backups),
        (n as i64, 0, n as i64, n as i64)
    );
    // One manifest per backup in storage: nothing written twice, nothing missing.
    let manifests = std::fs::read_dir(app.dir.path().join("data/repo/snapshots"))
        .unwrap()
        .count();
    assert_eq!(manifests, n);

    latencies.sort();
    let figures = json!({
        "jobs": n,
        "workers": 4,
        "accepted_in_s": accepted_in.as_secs_f64(),
        "all_succeeded_in_s": all_done_in.as_secs_f64(),
        "jobs_per_s": n as f64 / all_done_in.as_secs_f64(),
        "create_latency_ms": {
            "p50": percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
            "p95": percentile(&latencies, 0.95).as_secs_f64() * 1000.0,
            "p99": percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            "max": latencies.last().unwrap().as_secs_f64() * 1000.0,
        },
        "lost": 0,
        "duplicates": 0,
    });
    println!("load: {figures}");
}

#[tokio::test]
async fn fifty_concurrent_restores_of_one_source_admit_exactly_one() {
    let mut app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("data.bin"), 1, 2_000_000);
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    app.wait_success(b["job_id"].as_str().unwrap()).await;
    let id = b["backup_id"].as_str().unwrap().to_string();
    // No worker while the requests arrive: the admitted restore stays queued, so every
    // other request meets it (a fast restore could otherwise end between two requests).
    app.kill_worker(0);

    let mut set = tokio::task::JoinSet::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    for i in 0..50 {
        let (client, base, id, barrier) = (
            app.client.clone(),
            app.base.clone(),
            id.clone(),
            barrier.clone(),
        );
        let target = app.dir.path().join(format!("r{i}"));
        set.spawn(async move {
            barrier.wait().await;
            let res = client
                .post(format!("{base}/api/v1/backup/restore/{id}"))
                .json(&json!({"target": target}))
                .send()
                .await
                .unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap())
        });
    }
    let mut accepted = Vec::new();
    let mut conflicts = 0;
    while let Some(r) = set.join_next().await {
        let (status, body) = r.unwrap();
        match status {
            StatusCode::ACCEPTED => accepted.push(body),
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "job_in_progress", "{body}");
                conflicts += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((accepted.len(), conflicts), (1, 49));
    app.spawn_worker();
    app.wait_success(accepted[0]["job_id"].as_str().unwrap())
        .await;
    let (_, jobs) = app.get("/api/v1/jobs?kind=restore").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1, "{jobs}");
}
