//! One trace per job: the API's request span, the outbox's publish and the worker's
//! claim and phase spans share the trace whose id the job reports. The real API and
//! worker export their spans over OTLP/HTTP (JSON) to a receiver in this test, which
//! keeps them in memory.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::otlp::{Receiver, Span};
use strata_tests::tree::{assert_same_tree, write_noise};
use strata_tests::{sigterm, Options, TestApp};

/// Waits until the trace satisfies `done`; returns it.
async fn wait_for_trace(
    rx: &Receiver,
    trace_id: &str,
    app: &TestApp,
    what: &str,
    done: impl Fn(&[Span]) -> bool,
) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let trace = rx.trace(trace_id);
        if done(&trace) {
            return trace;
        }
        let have: HashSet<&str> = trace.iter().map(|s| s.name.as_str()).collect();
        assert!(
            Instant::now() < deadline,
            "trace {trace_id}: {what}; it has {have:?}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the trace holds every span name in `names`; returns the trace.
async fn wait_for_spans(rx: &Receiver, trace_id: &str, names: &[&str], app: &TestApp) -> Vec<Span> {
    let what = format!("waiting for {names:?}");
    wait_for_trace(rx, trace_id, app, &what, |trace| {
        names.iter().all(|n| trace.iter().any(|s| s.name == *n))
    })
    .await
}

fn one<'a>(trace: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = trace.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span named {name}: {trace:#?}");
    found[0]
}

fn otel_env(rx: &Receiver) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), rx.endpoint.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/json".into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ("STRATA_LOG_FORMAT".into(), "json".into()),
    ]
}

#[tokio::test]
async fn one_trace_runs_from_the_request_through_the_queue_to_every_phase_of_the_job() {
    let rx = Receiver::start().await;
    let app = TestApp::spawn(Options {
        workers: 1,
        env: otel_env(&rx),
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("sub/b.bin"), vec![7u8; 300_000]).unwrap();
    app.create_source("traced", &src).await;

    // The client sends its own trace context: the job joins the client's trace.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let res = app
        .client
        .post(format!("{}/api/v1/backup/create", app.base))
        .header("traceparent", format!("00-{client_trace}-{client_span}-01"))
        .json(&json!({"source": "traced", "type": "full"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: Value = res.json().await.unwrap();
    let job_id = accepted["job_id"].as_str().unwrap().to_string();
    let backup_id = accepted["backup_id"].as_str().unwrap().to_string();
    let job = app.wait_success(&job_id).await;
    assert_eq!(job["trace_id"], client_trace, "{job}");
    let (status, polled) = app
        .get(&format!("/api/v1/backup/restore/{job_id}/status"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(polled["trace_id"], client_trace, "{polled}");

    let trace = wait_for_spans(
        &rx,
        client_trace,
        &[
            "POST /api/v1/backup/create",
            "outbox.publish",
            "job",
            "claim",
            "scanning",
            "uploading",
            "manifest",
        ],
        &app,
    )
    .await;
    let by_id: HashMap<&str, &Span> = trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let request = one(&trace, "POST /api/v1/backup/create");
    let publish = one(&trace, "outbox.publish");
    let job_span = one(&trace, "job");
    assert_eq!(request.service, "strata-api");
    assert_eq!(publish.service, "strata-api");
    assert_eq!(job_span.service, "strata-worker");
    // The request continues the client's span; the publish is the request's child
    // (through the outbox row); the worker's job is the publish's child (through the
    // message headers); the claim and the phases are the job's children.
    assert_eq!(request.parent_span_id, client_span);
    assert_eq!(publish.parent_span_id, request.span_id);
    assert_eq!(job_span.parent_span_id, publish.span_id);
    assert_eq!(publish.attributes["job_id"], job_id.as_str());
    assert_eq!(job_span.attributes["job_id"], job_id.as_str());
    assert_eq!(job_span.attributes["status"], "succeeded");
    assert_eq!(job_span.attributes["kind"], "backup");
    assert_eq!(request.attributes["http.response.status_code"], 202);
    for name in ["claim", "scanning", "uploading", "manifest"] {
        let s = one(&trace, name);
        assert_eq!(s.service, "strata-worker", "{s:?}");
        assert_eq!(s.parent_span_id, job_span.span_id, "{name} under the job");
    }
    // Every span of the trace hangs from the tree (nothing orphaned).
    for s in &trace {
        assert!(
            s.span_id == request.span_id || by_id.contains_key(s.parent_span_id.as_str()),
            "span {} has a parent outside the trace: {s:?}",
            s.name
        );
    }

    // A request without a trace context starts a trace of its own: the restore's.
    let target = app.dir.path().join("restored");
    let r = app.restore(&backup_id, &target).await;
    let restore_id = r["job_id"].as_str().unwrap().to_string();
    let restore = app.wait_success(&restore_id).await;
    assert_same_tree(&src, &target);
    let restore_trace = restore["trace_id"].as_str().unwrap().to_string();
    assert_eq!(restore_trace.len(), 32, "{restore}");
    assert_ne!(restore_trace, client_trace);
    assert_ne!(restore_trace, "0".repeat(32));
    let trace = wait_for_spans(
        &rx,
        &restore_trace,
        &["outbox.publish", "job", "claim", "restoring"],
        &app,
    )
    .await;
    let request = trace
        .iter()
        .find(|s| s.service == "strata-api" && s.name.starts_with("POST /api/v1/backup/restore/"))
        .unwrap_or_else(|| panic!("the restore request's span: {trace:#?}"));
    assert_eq!(request.parent_span_id, "", "a root span");
    let job_span = one(&trace, "job");
    assert_eq!(one(&trace, "restoring").parent_span_id, job_span.span_id);
    assert_eq!(
        one(&trace, "outbox.publish").parent_span_id,
        request.span_id
    );

    // The JSON logs carry the ids: the worker's "job succeeded" line names the job and
    // its trace, and the API's request line names the trace too.
    let logs = app.full_logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    assert!(!lines.is_empty(), "JSON log lines: {logs}");
    let done = lines
        .iter()
        .find(|l| l["message"] == "job succeeded" && l["job_id"] == job_id.as_str())
        .unwrap_or_else(|| panic!("the job's success line: {logs}"));
    assert_eq!(done["trace_id"], client_trace, "{done}");
    assert_eq!(done["kind"], "backup", "{done}");
    assert!(
        done["span_id"].as_str().is_some_and(|s| s.len() == 16),
        "{done}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "request"
            && l["trace_id"] == client_trace
            && l["status"] == 202),
        "the request's log line carries the trace id: {logs}"
    );
}

/// A job handed back by a stopping worker and finished by another stays in its trace:
/// a second `outbox.publish → job` branch under the same request, and the first
/// worker's spans reach the collector before it exits.
#[tokio::test]
async fn a_job_handed_back_at_shutdown_stays_in_its_trace() {
    let rx = Receiver::start().await;
    let mut env = otel_env(&rx);
    // Uploads limited to 16 MiB/s: the backup runs for seconds, long enough to signal.
    env.push(("STRATA_LIMIT_UPLOAD_KIB".into(), "16384".into()));
    let mut app = TestApp::spawn(Options {
        workers: 1,
        env,
        ..Default::default()
    })
    .await;
    app.create_big_source("big", 4, 700).await;
    let accepted = app.backup("big", "full").await;
    let job_id = accepted["job_id"].as_str().unwrap().to_string();
    app.wait_progress(&job_id).await;
    let pid = app.process_pid(0).unwrap();
    sigterm(pid);
    let status = app
        .wait_worker_exit(0, Duration::from_secs(30))
        .await
        .expect("the worker exits after SIGTERM");
    assert!(status.success(), "{status}");
    app.spawn_worker();
    let job = app.wait_success(&job_id).await;
    let trace_id = job["trace_id"].as_str().unwrap().to_string();

    let trace = wait_for_trace(&rx, &trace_id, &app, "two job spans and a manifest", |t| {
        t.iter().filter(|s| s.name == "job").count() >= 2 && t.iter().any(|s| s.name == "manifest")
    })
    .await;
    let request = one(&trace, "POST /api/v1/backup/create");
    let publishes: Vec<&Span> = trace
        .iter()
        .filter(|s| s.name == "outbox.publish")
        .collect();
    let jobs: Vec<&Span> = trace.iter().filter(|s| s.name == "job").collect();
    assert_eq!(publishes.len(), 2, "{trace:#?}");
    assert_eq!(jobs.len(), 2, "{trace:#?}");
    for p in &publishes {
        assert_eq!(
            p.parent_span_id, request.span_id,
            "each publish under the request"
        );
    }
    let mut statuses: Vec<&str> = jobs
        .iter()
        .map(|j| {
            assert!(
                publishes.iter().any(|p| p.span_id == j.parent_span_id),
                "each job span under a publish: {j:?}"
            );
            j.attributes["status"].as_str().unwrap_or_default()
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["released", "succeeded"], "{jobs:#?}");
    // The released attempt had started uploading; the finished one wrote the manifest.
    let released = jobs
        .iter()
        .find(|j| j.attributes["status"] == "released")
        .unwrap();
    assert!(
        trace
            .iter()
            .any(|s| s.name == "uploading" && s.parent_span_id == released.span_id),
        "{trace:#?}"
    );
}

/// A collector that never answers costs nothing visible: jobs run as usual and a
/// worker told to stop exits promptly (the final flush gives up after 5 s).
#[tokio::test]
async fn an_unresponsive_collector_neither_slows_jobs_nor_holds_up_shutdown() {
    let endpoint = Receiver::black_hole().await;
    let mut app = TestApp::spawn(Options {
        workers: 1,
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("data.bin"), 9, 2 * 1024 * 1024);
    app.create_source("quiet", &src).await;
    let mut last = String::new();
    for _ in 0..3 {
        let accepted = app.backup("quiet", "incremental").await;
        let job = app.wait_success(accepted["job_id"].as_str().unwrap()).await;
        assert_eq!(job["trace_id"].as_str().map(str::len), Some(32), "{job}");
        last = accepted["backup_id"].as_str().unwrap().to_string();
    }
    let target = app.dir.path().join("restored");
    let r = app.restore(&last, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&src, &target);

    let pid = app.process_pid(0).unwrap();
    let signalled = Instant::now();
    sigterm(pid);
    let status = app
        .wait_worker_exit(0, Duration::from_secs(30))
        .await
        .expect("the worker exits after SIGTERM");
    assert!(status.success(), "{status}");
    println!("worker exited {:?} after SIGTERM", signalled.elapsed());
}

/// Quieter logs keep the traces: with `RUST_LOG=warn` the libraries are quiet, and a
/// job still has its trace id and its spans are still exported.
#[tokio::test]
async fn quiet_logs_keep_trace_ids_and_spans() {
    let rx = Receiver::start().await;
    let mut env = otel_env(&rx);
    env.push(("RUST_LOG".into(), "warn".into()));
    let app = TestApp::spawn(Options {
        workers: 1,
        env,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"quiet").unwrap();
    app.create_source("quiet", &src).await;
    let accepted = app.backup("quiet", "full").await;
    let job = app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    let trace_id = job["trace_id"].as_str().expect("a trace id").to_string();
    assert_eq!(trace_id.len(), 32, "{job}");
    wait_for_spans(
        &rx,
        &trace_id,
        &[
            "POST /api/v1/backup/create",
            "outbox.publish",
            "job",
            "claim",
            "manifest",
        ],
        &app,
    )
    .await;
    // The libraries are quiet: no info line of theirs.
    let logs = app.full_logs();
    for line in logs.lines().filter(|l| l.contains("\"level\":\"INFO\"")) {
        assert!(
            line.contains("\"target\":\"strata_"),
            "only Strata's own info lines with RUST_LOG=warn: {line}"
        );
    }
    assert!(!logs.contains("actix_server"), "{logs}");
}
