//! The PocketBase-compatible surface: PocketBase's own JavaScript SDK (npm `pocketbase`,
//! installed by scripts/services into tests/js) runs unchanged against Strata
//! (`tests/js/pocketbase_sdk.cjs`), and the routes are probed as an attacker would.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::{authed_client, raw_http, Options, TestApp};

const ADMIN: (&str, &str) = ("admin@example.com", "the admin's password");
const VIEWER: (&str, &str) = ("viewer@example.com", "the viewer's password");

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

async fn add_users(app: &TestApp) {
    for ((email, password), role) in [(ADMIN, "admin"), (VIEWER, "viewer")] {
        let (status, body) = app
            .post(
                "/api/v1/users",
                json!({"email": email, "password": password, "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// What a directory holds, as (relative path, bytes), for files.
fn files_of(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (path, node) in strata_tests::tree::snapshot(root) {
        if let strata_tests::tree::Node::File { .. } = node {
            let rel = String::from_utf8(path).unwrap();
            out.push((rel.clone(), std::fs::read(root.join(&rel)).unwrap()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_pocketbase_js_sdk_works_unchanged() {
    let app = TestApp::spawn(Options {
        workers: 1,
        ..Default::default()
    })
    .await;
    assert!(
        js_dir().join("node_modules/pocketbase").is_dir(),
        "tests/js/node_modules is missing: run scripts/services (it runs npm ci there)"
    );
    add_users(&app).await;
    // A pb_data-like source: an SQLite database and files, big enough that a backup or
    // restore is still running when the next request arrives.
    let src = app.create_big_source("pb_data", 2, 41).await;
    std::fs::write(src.join("data.db"), b"SQLite format 3\0 pretend").unwrap();
    std::fs::create_dir_all(src.join("storage/pbc_1")).unwrap();
    std::fs::write(src.join("storage/pbc_1/avatar.png"), b"\x89PNG not really").unwrap();
    let original = files_of(&src);
    let download = app.dir.path().join("nightly.zip");

    let out = Command::new("node")
        .arg(js_dir().join("pocketbase_sdk.cjs"))
        .current_dir(js_dir())
        .env("STRATA_URL", &app.base)
        .env("PB_EMAIL", ADMIN.0)
        .env("PB_PASSWORD", ADMIN.1)
        .env("PB_VIEWER_EMAIL", VIEWER.0)
        .env("PB_VIEWER_PASSWORD", VIEWER.1)
        .env("PB_SOURCE_DIR", &src)
        .env("PB_DOWNLOAD", &download)
        .output()
        .expect("running node (scripts/services installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "the SDK script failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        app.logs()
    );

    // The zip the SDK downloaded holds the source as it was.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&download).unwrap()).expect("a zip");
    let mut zipped = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        if f.is_file() {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            zipped.push((f.name().unwrap().to_string(), bytes));
        }
    }
    zipped.sort();
    assert!(zipped == original, "the zip differs from the source");
    // The restore put the source back as it was (the file added after the backup gone).
    assert!(
        files_of(&src) == original,
        "the source differs from the backup after the restore"
    );

    // Everything went through Strata's own jobs and audit log.
    let (_, jobs) = app.get("/api/v1/jobs?limit=100").await;
    let kinds: Vec<&str> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    for kind in ["backup", "import", "restore", "delete"] {
        assert!(kinds.contains(&kind), "no {kind} job: {kinds:?}");
    }
    let (_, audit) = app.get("/api/v1/audit?limit=1000").await;
    let audit = audit.to_string();
    for action in [
        "POST /api/collections/_superusers/auth-with-password",
        "POST /api/backups",
        "GET /api/backups/{key}",
        "POST /api/backups/{key}/restore",
    ] {
        assert!(audit.contains(action), "{action} is not audited");
    }
    let logs = app.full_logs();
    assert!(
        !logs.contains(ADMIN.1) && !logs.contains(VIEWER.1),
        "a password is in the logs"
    );
}

#[tokio::test]
async fn pocketbase_routes_refuse_what_they_must_in_pocketbase_shape() {
    let app = TestApp::spawn(Options {
        workers: 1,
        ..Default::default()
    })
    .await;
    add_users(&app).await;
    let anon = reqwest::Client::new();

    // No source yet: the routes say how to choose one.
    let (status, err) = app.get("/api/backups").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["status"], 400);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("STRATA_POCKETBASE_SOURCE"),
        "{err}"
    );
    let dir_a = app.dir.path().join("a");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::write(dir_a.join("f.txt"), b"a").unwrap();
    app.create_source("a", &dir_a).await;
    let dir_b = app.dir.path().join("b");
    std::fs::create_dir_all(&dir_b).unwrap();
    std::fs::write(dir_b.join("f.txt"), b"b").unwrap();
    app.create_source("b", &dir_b).await;
    let (status, err) = app.get("/api/backups").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "two sources: {err}");

    // With STRATA_POCKETBASE_SOURCE, one source is served and the other's backups do
    // not exist here.
    let mut app = app;
    let (base, _child) = app
        .start_api_with(&[("STRATA_POCKETBASE_SOURCE", "a")])
        .await;
    let b_backup = app.backup("b", "full").await;
    app.wait_success(b_backup["job_id"].as_str().unwrap()).await;
    let b_key = format!("{}.zip", b_backup["backup_id"].as_str().unwrap());
    let admin = authed_client(&app.admin_key);
    let res = admin
        .get(format!("{base}/api/backups"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let listed: Value = res.json().await.unwrap();
    assert_eq!(listed, json!([]), "b's backup is not a's");
    for (method, path) in [
        ("GET", format!("/api/backups/{b_key}")),
        ("DELETE", format!("/api/backups/{b_key}")),
        ("POST", format!("/api/backups/{b_key}/restore")),
    ] {
        let res = admin
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["status"], 404, "{err}");
        assert!(err["data"].is_object(), "{err}");
    }
    assert!(dir_b.join("f.txt").exists(), "nothing of b was touched");

    // Logins: the bare token works only on these routes; a viewer gets no superuser
    // token; a session's token is refused everywhere after logout.
    let res = anon
        .post(format!(
            "{base}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let auth: Value = res.json().await.unwrap();
    let token = auth["token"].as_str().unwrap().to_string();
    assert_eq!(auth["record"]["collectionName"], "_superusers");
    let res = anon
        .get(format!("{base}/api/backups"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a bare token on a PocketBase route"
    );
    let res = anon
        .get(format!("{base}/api/v1/sources"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "bare tokens are for /api only"
    );
    let res = anon
        .post(format!("{base}/api/admins/auth-with-password"))
        .json(&json!({"identity": VIEWER.0, "password": VIEWER.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let err: Value = res.json().await.unwrap();
    assert!(err.get("token").is_none() && err["status"] == 403, "{err}");
    let res = anon
        .post(format!("{base}/api/admins/auth-with-password"))
        .json(&json!({"identity": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let old: Value = res.json().await.unwrap();
    assert_eq!(old["admin"]["email"], ADMIN.0);

    // A viewer's session lists but cannot create, restore, upload or delete.
    let res = anon
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": VIEWER.0, "password": VIEWER.1}))
        .send()
        .await
        .unwrap();
    let viewer: Value = res.json().await.unwrap();
    let viewer_token = viewer["token"].as_str().unwrap();
    for (method, path) in [
        ("GET", "/api/backups"),
        ("POST", "/api/backups"),
        ("POST", "/api/backups/upload"),
        ("DELETE", "/api/backups/x.zip"),
        ("POST", "/api/backups/x.zip/restore"),
    ] {
        let res = anon
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("Authorization", viewer_token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let want = if method == "GET" { 200 } else { 403 };
        assert_eq!(res.status().as_u16(), want, "{method} {path}");
        if want == 403 {
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["status"], 403, "{err}");
        }
    }
    // Health: public, canBackup for admins only.
    let res = anon.get(format!("{base}/api/health")).send().await.unwrap();
    let health: Value = res.json().await.unwrap();
    assert_eq!(health["message"], "API is healthy.");
    assert!(health["data"].get("canBackup").is_none(), "{health}");
    let res = anon
        .get(format!("{base}/api/health"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    let health: Value = res.json().await.unwrap();
    assert_eq!(health["data"]["canBackup"], true, "{health}");

    // Odd spellings of keys reach nothing; a traversal in a key is just a missing key.
    for key in [
        "..%2F..%2Fetc%2Fpasswd",
        "a%2F..%2Fb.zip",
        "%2e%2e",
        "x%00.zip",
    ] {
        let res = raw_http::send(
            &base,
            "DELETE",
            &format!("/api/backups/{key}"),
            &[("Authorization", &format!("Bearer {}", app.admin_key))],
            None,
        )
        .await;
        assert!(
            res.status == 404 || res.status == 400,
            "{key}: {} {}",
            res.status,
            res.body
        );
    }
    // Invalid bodies name their field, in PocketBase's shape.
    let res = admin
        .post(format!("{base}/api/backups"))
        .json(&json!({"name": "no-zip-suffix"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let err: Value = res.json().await.unwrap();
    assert_eq!(
        err["data"]["name"]["code"], "validation_invalid_name",
        "{err}"
    );
    let res = anon
        .post(format!(
            "{base}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": ADMIN.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let err: Value = res.json().await.unwrap();
    assert!(err["data"]["password"].is_object(), "{err}");
}
