//! In-process metrics: the worker's job durations, backup bytes and storage requests,
//! and the API's HTTP requests, as Prometheus scrapes them.

use std::time::Duration;

use serde_json::Value;
use strata_tests::tree::write_noise;
use strata_tests::{Options, TestApp};

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| {
            let value = v.split(' ').next().unwrap_or(v);
            value
                .parse()
                .unwrap_or_else(|e| panic!("{series}: {value:?}: {e}"))
        })
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

fn job_id(v: &Value) -> String {
    v["job_id"].as_str().expect("job_id").to_string()
}

const SIZES: [usize; 3] = [100_000, 200_000, 300_000];

#[tokio::test]
async fn workers_and_the_api_report_jobs_bytes_storage_and_requests() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (i, size) in SIZES.iter().enumerate() {
        write_noise(&src.join(format!("f{i}.bin")), 100 + i as u64, *size);
    }
    let total: usize = SIZES.iter().sum();
    app.create_source("metered", &src).await;

    // A first full backup reads and stores everything.
    let first = app.backup("metered", "full").await;
    let job = app.wait_success(&job_id(&first)).await;
    assert_eq!(job["result"]["read_bytes"], total, "{job}");
    let worker = app.worker_metrics(0).await;
    assert!(
        value(
            &worker,
            r#"strata_job_duration_seconds_count{kind="backup",status="succeeded"}"#
        ) >= 1.0
    );
    let read = r#"strata_backup_bytes_read_total{source="metered"}"#;
    let stored = r#"strata_backup_bytes_stored_total{source="metered"}"#;
    let dedup = r#"strata_backup_bytes_deduplicated_total{source="metered"}"#;
    assert_eq!(value(&worker, read), total as f64, "{worker}");
    let stored_1 = value(&worker, stored);
    assert!(
        stored_1 >= total as f64 * 0.9,
        "noise does not compress: {stored_1}"
    );
    assert_eq!(value(&worker, dedup), 0.0, "{worker}");
    assert!(
        value(
            &worker,
            r#"strata_storage_requests_total{operation="put",outcome="ok"}"#
        ) > 0.0,
        "{worker}"
    );
    assert!(
        value(
            &worker,
            r#"strata_storage_request_duration_seconds_count{operation="put"}"#
        ) > 0.0,
        "{worker}"
    );

    // A second full backup of the same data reads it all again and stores nearly nothing.
    let second = app.backup("metered", "full").await;
    app.wait_success(&job_id(&second)).await;
    let worker = app.worker_metrics(0).await;
    assert_eq!(value(&worker, read), 2.0 * total as f64, "{worker}");
    assert_eq!(value(&worker, dedup), total as f64, "{worker}");
    let stored_2 = value(&worker, stored);
    assert!(
        stored_2 - stored_1 < total as f64 * 0.05,
        "{stored_1} then {stored_2}"
    );
    assert_eq!(
        value(
            &worker,
            r#"strata_job_duration_seconds_count{kind="backup",status="succeeded"}"#
        ),
        2.0
    );

    // A backup of a directory that no longer exists ends `failed`.
    let gone = app.dir.path().join("gone");
    std::fs::create_dir_all(&gone).unwrap();
    app.create_source("gone", &gone).await;
    std::fs::remove_dir_all(&gone).unwrap();
    let failing = app.backup("gone", "full").await;
    let job = app
        .wait_job(&job_id(&failing), Duration::from_secs(60))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    let worker = app.worker_metrics(0).await;
    assert_eq!(
        value(
            &worker,
            r#"strata_job_duration_seconds_count{kind="backup",status="failed"}"#
        ),
        1.0,
        "{worker}"
    );
    assert_eq!(
        sample(&worker, r#"strata_backup_bytes_read_total{source="gone"}"#),
        None,
        "a failed backup counts no bytes"
    );
    assert!(worker.ends_with("# EOF\n"), "{worker}");

    // The API: its requests by route pattern, next to the figures from PostgreSQL, in one
    // exposition.
    let (_, _) = app.get(&format!("/api/v1/jobs/{}", job_id(&failing))).await;
    let (_, _) = app.get("/api/v1/no/such/route/secret-token").await;
    let api = app.metrics().await;
    assert!(
        value(
            &api,
            r#"strata_http_request_duration_seconds_count{method="POST",route="/api/v1/backup/create",status="202"}"#
        ) >= 3.0,
        "{api}"
    );
    assert!(
        value(
            &api,
            r#"strata_http_request_duration_seconds_count{method="GET",route="/api/v1/jobs/{job_id}",status="200"}"#
        ) >= 1.0,
        "{api}"
    );
    assert!(
        value(
            &api,
            r#"strata_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"}"#
        ) >= 1.0,
        "{api}"
    );
    assert!(!api.contains("secret-token"), "{api}");
    assert!(!api.contains(&job_id(&failing)), "{api}");
    assert!(
        api.contains(r#"strata_jobs{kind="backup",status="succeeded"} 2"#),
        "{api}"
    );
    assert!(api.ends_with("# EOF\n"), "{api}");
    assert_eq!(api.matches("# EOF").count(), 1, "{api}");
}
