//! `strata-client`, the Rust SDK (issue 20): it cannot drift from the server — its types
//! come from the server's own OpenAPI document, every route of that document has a
//! client method, every query field is a parameter of its route — and it works against
//! the real API and worker: typed calls, a job waited for with progress, streams of
//! pages, downloads, errors with the API's code, and the PocketBase-compatible surface.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use serde_json::Value;
use strata_client::query::*;
use strata_client::routes::{self, Route};
use strata_client::types;
use strata_client::Client;
use strata_tests::{Options, TestApp};

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/client/openapi.json");

/// The client's copy of the OpenAPI document is the server's, byte for byte
/// (`STRATA_WRITE_OPENAPI=1` rewrites it, like `strata-api openapi > …`).
#[test]
fn the_clients_openapi_document_is_the_servers() {
    let served = format!("{}\n", strata_api::openapi::spec_json());
    if std::env::var_os("STRATA_WRITE_OPENAPI").is_some() {
        std::fs::write(DOCUMENT, &served).unwrap();
    }
    let copy = std::fs::read_to_string(DOCUMENT).unwrap();
    assert!(
        copy == served,
        "shared/client/openapi.json is not the server's document: run \
         `STRATA_WRITE_OPENAPI=1 cargo test -p strata-tests --test it client::` and commit it"
    );
}

fn operations() -> Vec<Route> {
    let doc: Value = serde_json::from_str(strata_api::openapi::spec_json()).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method: &'static str = Box::leak(method.to_uppercase().into_boxed_str());
            let path: &'static str = Box::leak(path.clone().into_boxed_str());
            out.push(Route { method, path });
        }
    }
    out
}

/// Every operation of the server's document has a client method (a route constant the
/// client's methods are built on), and the client calls nothing the server lacks.
#[test]
fn every_route_of_the_document_has_a_client_method() {
    let ops = operations();
    let aliases: Vec<Route> = routes::ALIASES.iter().map(|(a, _)| *a).collect();
    let missing: Vec<_> = ops
        .iter()
        .filter(|op| !routes::ALL.contains(op) && !aliases.contains(op))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a client method: {missing:?}"
    );
    let unknown: Vec<_> = routes::ALL.iter().filter(|r| !ops.contains(r)).collect();
    assert!(
        unknown.is_empty(),
        "client routes the server lacks: {unknown:?}"
    );
    for (alias, route) in routes::ALIASES {
        assert!(
            ops.contains(alias) && ops.contains(route),
            "{alias:?} → {route:?}"
        );
    }
    assert!(ops.len() >= 55, "{} operations", ops.len());
}

/// Each query structure of the client sends only parameters its route declares.
#[test]
fn every_query_field_is_a_parameter_of_its_route() {
    let doc: Value = serde_json::from_str(strata_api::openapi::spec_json()).unwrap();
    let now = chrono::Utc::now();
    let s = || Some("x".to_string());
    let cases: Vec<(Route, Value)> = vec![
        (
            routes::LIST_BACKUPS,
            serde_json::to_value(BackupFilter {
                source: s(),
                status: s(),
                backup_type: s(),
                created_after: Some(now),
                created_before: Some(now),
                limit: Some(1),
                from: s(),
            })
            .unwrap(),
        ),
        (
            routes::LIST_JOBS,
            serde_json::to_value(JobFilter {
                status: s(),
                kind: s(),
                source: s(),
                created_after: Some(now),
                created_before: Some(now),
                limit: Some(1),
                from: s(),
            })
            .unwrap(),
        ),
        (
            routes::TREE,
            serde_json::to_value(TreeOptions {
                path: s(),
                recursive: Some(true),
                limit: Some(1),
                from: s(),
            })
            .unwrap(),
        ),
        (
            routes::DIFF,
            serde_json::to_value(DiffOptions {
                against: "x".into(),
                limit: Some(1),
                from: s(),
            })
            .unwrap(),
        ),
        (
            routes::SEARCH,
            serde_json::to_value(SearchOptions {
                glob: "x".into(),
                source: s(),
                newer_than: s(),
                older_than: s(),
                limit: Some(1),
                from: s(),
            })
            .unwrap(),
        ),
        (
            routes::DOWNLOAD_BACKUP,
            serde_json::to_value(DownloadOptions {
                format: s(),
                part: s(),
                include: s(),
                token: s(),
            })
            .unwrap(),
        ),
        (
            routes::DELETE_BACKUP,
            serde_json::to_value(DeleteOptions { cascade: s() }).unwrap(),
        ),
        (
            routes::UPLOAD_BACKUP,
            serde_json::to_value(UploadOptions {
                source: s(),
                name: s(),
            })
            .unwrap(),
        ),
        (
            routes::LIST_SCHEDULES,
            serde_json::to_value(ScheduleFilter { source: s() }).unwrap(),
        ),
        (
            routes::AUDIT,
            serde_json::to_value(AuditFilter {
                actor: s(),
                outcome: s(),
                action: s(),
                since: Some(now),
                until: Some(now),
                limit: Some(1),
                from: Some(1),
            })
            .unwrap(),
        ),
    ];
    for (route, fields) in cases {
        let op = &doc["paths"][route.path][route.method.to_lowercase()];
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{route:?} has no parameters"))
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let sent: BTreeSet<&str> = fields
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            sent, declared,
            "{route:?}: the client's fields against the document's"
        );
    }
}

/// The typed client against the real API and worker.
#[tokio::test]
async fn the_client_backs_up_waits_lists_and_downloads() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("web");
    strata_tests::tree::build_sample_tree(&src, 200_000);
    let client = Client::new(&app.base).unwrap().with_token(&app.admin_key);

    let source = client
        .create_source(&types::CreateSource {
            name: "web".parse().unwrap(),
            files: Some(types::CreateFiles {
                path: src.display().to_string().parse().unwrap(),
                exclude: vec![],
            }),
            database: None,
        })
        .await
        .unwrap();
    assert_eq!(source.name, "web");

    // Two backups, each waited for with progress reported.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let accepted = client
            .create_backup(&types::CreateBackup {
                source: Some("web".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut seen = 0;
        let job = client
            .wait_for_job(&accepted.job_id.to_string(), |_| seen += 1)
            .await
            .unwrap();
        assert_eq!(job.status, types::JobStatusName::Succeeded, "{job:?}");
        assert!(seen >= 1);
        ids.push(accepted.backup_id);
    }

    // The list as a stream of pages of one: both, newest first.
    let listed: Vec<types::BackupView> = client
        .backups(BackupFilter {
            limit: Some(1),
            ..Default::default()
        })
        .try_collect()
        .await
        .unwrap();
    let listed: Vec<&str> = listed.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(listed, vec![ids[1].as_str(), ids[0].as_str()]);

    // One file by range, and a download with a file token in the URL.
    let file = client
        .file(&ids[0], "docs/readme.txt", Some("bytes=0-4"))
        .await
        .unwrap();
    assert_eq!(file.status(), 206);
    assert_eq!(&file.bytes().await.unwrap()[..], b"hello");
    let token = client.file_token(Some(&ids[0])).await.unwrap().token;
    let url = client
        .download_url(
            &ids[0],
            &DownloadOptions {
                format: Some("zip".into()),
                token: Some(token),
                ..Default::default()
            },
        )
        .unwrap();
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    assert_eq!(&res.bytes().await.unwrap()[..2], b"PK");

    // Errors carry the API's code, field and status.
    let err = client
        .create_backup(&types::CreateBackup {
            source: Some("nightly".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), "source_not_found"),
        "{err}"
    );
    let err = client.get_backup("").await.unwrap_err();
    assert_eq!(err.field(), Some("backup_id"));
    let anonymous = Client::new(&app.base).unwrap();
    let err = anonymous.list_sources().await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");

    // The PocketBase-compatible surface, with a user's session.
    client
        .create_user(
            &serde_json::from_value(serde_json::json!({
                "email": "admin@example.com", "password": "a long admin password", "role": "admin"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let pb = Client::new(&app.base).unwrap();
    let auth = pb
        .pocketbase()
        .superuser_login("admin@example.com", "a long admin password")
        .await
        .unwrap();
    let pb = pb.with_token(auth.token);
    let keys: Vec<String> = pb
        .pocketbase()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let token = pb.pocketbase().file_token().await.unwrap().token;
    let zip = pb
        .pocketbase()
        .download(&keys[0], &token)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&zip[..2], b"PK");
}
