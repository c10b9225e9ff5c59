//! Issue 16, item 10: resources an anonymous or low-privilege caller could exhaust.
//! Downloads are capped per API process (`STRATA_MAX_DOWNLOADS`, `429` with
//! `Retry-After` beyond), a download's slot comes back when its client goes away or
//! stops reading, and a request body that stalls is refused with `408` after
//! `STRATA_BODY_IDLE_TIMEOUT_SECS`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use strata_tests::tree::write_noise;
use strata_tests::{raw_http, Options, TestApp};

fn id(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

/// An app with these settings and one complete backup of ~24 MiB; returns its id.
async fn app_with_a_backup(env: &[(&str, &str)]) -> (TestApp, String) {
    let app = TestApp::spawn(Options {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        write_noise(&src.join(format!("f{i}.bin")), 70 + i, 4 << 20);
    }
    app.create_source("src", &src).await;
    let b = app.backup("src", "full").await;
    app.wait_success(&id(&b, "job_id")).await;
    (app, id(&b, "backup_id"))
}

async fn start_download(app: &TestApp, backup_id: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/api/v1/backup/{backup_id}/download", app.base))
        .send()
        .await
        .unwrap()
}

/// Two downloads stream; a third is `429 too_many_downloads` with `Retry-After`, in the
/// wire shape. When a client goes away its slot comes back, and a complete download is
/// intact.
#[tokio::test]
async fn downloads_beyond_the_cap_get_429_and_a_slot_comes_back_when_a_client_leaves() {
    let (app, backup_id) = app_with_a_backup(&[("STRATA_MAX_DOWNLOADS", "2")]).await;
    let first = start_download(&app, &backup_id).await;
    let second = start_download(&app, &backup_id).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    let refused = start_download(&app, &backup_id).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(refused.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_downloads", "{body}");
    // Other routes are not affected.
    let (status, _) = app.get("/api/v1/backup/list").await;
    assert_eq!(status, StatusCode::OK);

    // One client goes away: its slot comes back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    let third = loop {
        let res = start_download(&app, &backup_id).await;
        if res.status() == StatusCode::OK {
            break res;
        }
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bytes = third.bytes().await.unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut total = 0u64;
    for entry in archive.entries().unwrap() {
        total += entry.unwrap().header().size().unwrap();
    }
    assert_eq!(total, 6 * (4 << 20), "the archive is complete");
    drop(second);
}

/// A client that opens a download and stops reading holds its slot only until the body
/// idle timeout: then the export gives up and another client can download.
#[tokio::test]
async fn a_client_that_stops_reading_a_download_loses_its_slot() {
    let (app, backup_id) = app_with_a_backup(&[
        ("STRATA_MAX_DOWNLOADS", "1"),
        ("STRATA_BODY_IDLE_TIMEOUT_SECS", "2"),
    ])
    .await;
    let stuck = start_download(&app, &backup_id).await;
    assert_eq!(stuck.status(), StatusCode::OK);
    let started = Instant::now();
    let next = loop {
        let res = start_download(&app, &backup_id).await;
        if res.status() == StatusCode::OK {
            break res;
        }
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(next.bytes().await.unwrap().len() as u64 > 6 * (4 << 20));
    // The stuck client, reading at last, gets an aborted response, never a complete
    // archive.
    let read = stuck.bytes().await;
    match read {
        Err(_) => {}
        Ok(b) => assert!(
            tar::Archive::new(&b[..])
                .entries()
                .unwrap()
                .map(|e| e.map(|e| e.header().size().unwrap_or(0)))
                .sum::<Result<u64, _>>()
                .map_or(true, |n| n < 6 * (4 << 20)),
            "a given-up download looked complete"
        ),
    }
}

/// The body of an upload, and of a JSON request, stops arriving: `408 body_timeout` in
/// the wire shape after `STRATA_BODY_IDLE_TIMEOUT_SECS`, not a connection held forever.
#[tokio::test]
async fn a_request_body_that_stalls_gets_408_after_the_idle_timeout() {
    let app = TestApp::spawn(Options {
        workers: 0,
        env: vec![("STRATA_BODY_IDLE_TIMEOUT_SECS".into(), "2".into())],
        ..Options::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    app.create_source("src", &src).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let head = |method: &str, path: &str, ctype: &str, length: usize| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n",
            app.admin_key
        )
    };
    let cases = [
        (
            head(
                "POST",
                "/api/v1/backup/upload",
                "application/x-tar",
                1_000_000,
            ),
            vec![0u8; 1024],
            Some("file"),
        ),
        (
            head("POST", "/api/v1/sources", "application/json", 500),
            b"{\"name\": \"stalled\", ".to_vec(),
            None,
        ),
        (
            head("POST", "/api/v1/backup/create", "application/json", 300),
            b"{\"source\":".to_vec(),
            None,
        ),
    ];
    for (head, partial, field) in cases {
        let mut request = head.clone().into_bytes();
        request.extend_from_slice(&partial);
        let started = Instant::now();
        let res = raw_http::exchange(&app.base, request).await;
        let took = started.elapsed();
        assert_eq!(res.status, 408, "{head}: {res:?}");
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
            "{head}: {took:?}"
        );
        assert!(res
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"));
        assert_eq!(res.error_code().as_deref(), Some("body_timeout"), "{res:?}");
        let body: Value = serde_json::from_str(&res.body).unwrap();
        assert_eq!(body["error"]["field"].as_str(), field, "{body}");
    }
    // Nothing was created, and the API still answers.
    let (status, sources) = app.get("/api/v1/sources").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sources["items"].as_array().unwrap().len(), 1, "{sources}");
}
