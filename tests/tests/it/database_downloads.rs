//! A backup's database part as a download: an SQLite database as the `.db` file itself,
//! a PostgreSQL database as plain SQL that `psql` restores, `?part=` on combined
//! backups, the database carried inside tar and zip archives, and the checks on the
//! parameters and credentials of these downloads (and `x-api-secret`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;
use strata_tests::downloads::{fetch, sqlite_notes, tar_files, write_sqlite_notes};
use strata_tests::pg::{connect, drop_db, exec, unique};
use strata_tests::tree::write_noise;
use strata_tests::{authed_client, create_database, Options, TestApp};

/// The rows of `orders` as text, in id order, and the sequence's position.
async fn pg_rows(url: &str) -> (Vec<String>, i64) {
    let mut conn = connect(url).await;
    let rows: Vec<String> = sqlx::query_scalar("SELECT t::text FROM orders t ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let seq: i64 = sqlx::query_scalar("SELECT last_value FROM orders_id_seq")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    (rows, seq)
}

/// `PRAGMA integrity_check` and the rows of `notes` of the database in `bytes`.
fn sqlite_content(dir: &Path, bytes: &[u8]) -> (String, Vec<(i64, String)>) {
    let path = dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, bytes).unwrap();
    sqlite_notes(&path)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        .to_str()
        .unwrap()
}

/// Every file of a zip archive: name → bytes.
fn zip_files(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip");
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        if f.is_file() {
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            out.insert(f.name().unwrap().to_string(), data);
        }
    }
    out
}

async fn backup_ok(app: &TestApp, source: &str) -> String {
    let accepted = app.backup(source, "full").await;
    app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    accepted["backup_id"].as_str().unwrap().to_string()
}

async fn create_source(app: &TestApp, spec: Value) {
    let (status, body) = app.post("/api/v1/sources", spec).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_backup_downloads_as_plain_sql_that_psql_restores() {
    let app = TestApp::spawn(Options::default()).await;
    let db = unique("dl_src");
    let url = create_database(&db).await;
    let mut conn = connect(&url).await;
    exec(
        &mut conn,
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, total numeric(10,2), doc jsonb, raw bytea);
         INSERT INTO orders (customer, total, doc, raw)
           SELECT 'customer ' || i, i * 1.25, jsonb_build_object('i', i, 'q', 'it''s \"quoted\"'), decode(md5(i::text), 'hex')
             FROM generate_series(1, 5000) AS i;
         INSERT INTO orders (customer) VALUES (E'tab\\there, newline\\nthere, backslash \\\\ and ünïcödé');",
    )
    .await;
    conn.close().await.ok();
    let at_backup = pg_rows(&url).await;
    create_source(
        &app,
        json!({ "name": "shop", "database": { "postgres": url } }),
    )
    .await;
    let id = backup_ok(&app, "shop").await;

    let (_, row) = app.get(&format!("/api/v1/backup/{id}")).await;
    assert_eq!(row["filename"], format!("{id}.sql"), "{row}");
    let base = format!("{}/api/v1/backup", app.base);
    let (status, headers, sql) = fetch(&app.client, &format!("{base}/{id}.sql/download")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&sql));
    assert_eq!(header(&headers, "content-type"), "application/sql");
    assert_eq!(
        header(&headers, "content-disposition"),
        format!("attachment; filename=\"{id}.sql\"")
    );
    assert_eq!(header(&headers, "content-length"), sql.len().to_string());
    let text = String::from_utf8(sql.clone()).expect("plain SQL is text");
    assert!(text.contains("COPY public.orders"), "a pg_dump script");
    // `?part=database` is the same file; so is the backup id without a suffix.
    let (status, h2, again) =
        fetch(&app.client, &format!("{base}/{id}/download?part=database")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(again == sql, "the same dump");
    assert_eq!(header(&h2, "etag"), header(&headers, "etag"));

    // `psql` restores it into a fresh database with the same rows.
    let file = app.dir.path().join("backup.sql");
    std::fs::write(&file, &sql).unwrap();
    let fresh = unique("dl_fresh");
    let fresh_url = create_database(&fresh).await;
    let psql = std::env::var_os("STRATA_PG_BINDIR")
        .map(|d| Path::new(&d).join("psql"))
        .unwrap_or_else(|| "psql".into());
    let out = std::process::Command::new(psql)
        .args(["--no-psqlrc", "--quiet", "--single-transaction"])
        .args(["--set=ON_ERROR_STOP=1", "--dbname", &fresh_url, "--file"])
        .arg(&file)
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pg_rows(&fresh_url).await, at_backup);

    // An archive of a database-only backup holds the dump at its root.
    let (status, headers, tar) =
        fetch(&app.client, &format!("{base}/{id}/download?format=tar")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "application/x-tar");
    let files = tar_files(&tar);
    assert_eq!(files.keys().collect::<Vec<_>>(), ["database.sql"]);
    assert!(files["database.sql"].0 == sql);
    drop_db(&fresh).await;
    drop_db(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_combined_backup_gives_its_database_on_request_and_carries_it_in_archives() {
    let app = TestApp::spawn(Options::default()).await;
    // PocketBase-style: the database inside the directory.
    let root = app.dir.path().join("pb_data");
    std::fs::create_dir_all(root.join("storage")).unwrap();
    write_noise(&root.join("storage/a.png"), 1, 200_000);
    std::fs::write(root.join("storage/readme.txt"), b"hello\n").unwrap();
    let db = root.join("data.db");
    write_sqlite_notes(&db, 2_000, 300);
    create_source(
        &app,
        json!({ "name": "pb", "files": { "path": root }, "database": { "sqlite": db } }),
    )
    .await;
    // Another whose database lives elsewhere.
    let uploads = app.dir.path().join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::write(uploads.join("x.txt"), b"x\n").unwrap();
    let outside = app.dir.path().join("outside.db");
    write_sqlite_notes(&outside, 100, 300);
    create_source(
        &app,
        json!({ "name": "app", "files": { "path": uploads }, "database": { "sqlite": outside } }),
    )
    .await;
    let scratch = app.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let (_, live_rows) = sqlite_content(&scratch, &std::fs::read(&db).unwrap());

    let pb = backup_ok(&app, "pb").await;
    let (_, row) = app.get(&format!("/api/v1/backup/{pb}")).await;
    assert_eq!(row["filename"], format!("{pb}.tar"), "{row}");
    let base = format!("{}/api/v1/backup", app.base);

    // `?part=database`: the .db file.
    let (status, headers, database) =
        fetch(&app.client, &format!("{base}/{pb}/download?part=database")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "application/x-sqlite3");
    assert_eq!(
        header(&headers, "content-disposition"),
        format!("attachment; filename=\"{pb}.db\"")
    );
    let (integrity, rows) = sqlite_content(&scratch, &database);
    assert_eq!((integrity.as_str(), &rows), ("ok", &live_rows));

    // The default tar, and the zip: the files and the database at its own path.
    let (status, headers, tar) = fetch(&app.client, &format!("{base}/{pb}/download")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "application/x-tar");
    let files = tar_files(&tar);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["data.db", "storage/a.png", "storage/readme.txt"]
    );
    assert!(files["data.db"].0 == database);
    assert_eq!(files["data.db"].1 & 0o777, 0o600);
    let zipped = {
        let (status, _, zip) =
            fetch(&app.client, &format!("{base}/{pb}/download?format=zip")).await;
        assert_eq!(status, StatusCode::OK);
        zip_files(&zip)
    };
    assert_eq!(
        zipped.keys().collect::<Vec<_>>(),
        ["data.db", "storage/a.png", "storage/readme.txt"]
    );
    assert!(zipped["data.db"] == database);
    // `?part=files`: the files alone.
    let (status, _, tar) = fetch(&app.client, &format!("{base}/{pb}/download?part=files")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        tar_files(&tar).keys().collect::<Vec<_>>(),
        ["storage/a.png", "storage/readme.txt"]
    );

    // A database outside the directory goes under `.strata/`.
    let other = backup_ok(&app, "app").await;
    let (_, _, tar) = fetch(&app.client, &format!("{base}/{other}/download")).await;
    let files = tar_files(&tar);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        [".strata/database.db", "x.txt"]
    );
    let (integrity, rows) = sqlite_content(&scratch, &files[".strata/database.db"].0);
    assert_eq!((integrity.as_str(), rows.len()), ("ok", 100));
    let (_, _, zip) = fetch(&app.client, &format!("{base}/{other}/download?format=zip")).await;
    assert_eq!(
        zip_files(&zip).keys().collect::<Vec<_>>(),
        [".strata/database.db", "x.txt"]
    );

    // A files-only backup of the combined source has no database to give.
    let (status, accepted) = app
        .post(
            "/api/v1/backup/create",
            json!({ "source": "pb", "include_database": false }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    let files_only = accepted["backup_id"].as_str().unwrap();
    let (status, body) = app
        .get(&format!(
            "/api/v1/backup/{files_only}/download?part=database"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "backup_has_no_database");
    assert_eq!(body["error"]["field"], "part");
}

#[tokio::test(flavor = "multi_thread")]
async fn database_download_parameters_and_credentials_are_checked() {
    let app = TestApp::spawn(Options::default()).await;
    let db = app.dir.path().join("notes.db");
    write_sqlite_notes(&db, 50, 300);
    create_source(
        &app,
        json!({ "name": "notes", "database": { "sqlite": db } }),
    )
    .await;
    let files = app.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("f.txt"), b"f\n").unwrap();
    app.create_source("files", &files).await;
    let id = backup_ok(&app, "notes").await;
    let other = backup_ok(&app, "files").await;

    // Bad `part` values: a 400 naming `part`, never a path or another spelling.
    for bad in [
        "../x",
        "..%2Fdatabase",
        "DATABASE",
        "Database",
        "database%20",
        "%20database",
        "database%00",
        "database.db",
        "databases",
        "db",
        "sql",
        "all",
        "",
        "files,database",
    ] {
        let (status, body) = app
            .get(&format!("/api/v1/backup/{id}/download?part={bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "part={bad}: {body}");
        assert_eq!(
            (
                body["error"]["code"].as_str(),
                body["error"]["field"].as_str()
            ),
            (Some("invalid_download_part"), Some("part")),
            "part={bad}: {body}"
        );
    }
    // Twice, or with an archive format: refused, naming the field.
    let (status, body) = app
        .get(&format!(
            "/api/v1/backup/{id}/download?part=database&part=files"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .get(&format!(
            "/api/v1/backup/{id}/download?part=database&format=zip"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["field"].as_str()
        ),
        (Some("format_not_applicable"), Some("format")),
        "{body}"
    );
    // A part the backup does not hold.
    let (status, body) = app
        .get(&format!("/api/v1/backup/{id}/download?part=files"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "backup_has_no_files");
    let (status, body) = app
        .get(&format!("/api/v1/backup/{other}/download?part=database"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "backup_has_no_database");
    // Suffixes name the backup; other spellings name nothing.
    for path in [format!("{id}.db"), format!("{id}.sql"), format!("{id}.tar")] {
        let (status, _, _) = fetch(
            &app.client,
            &format!("{}/api/v1/backup/{path}/download", app.base),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    for path in [
        format!("{id}.DB"),
        format!("{id}.db.db"),
        format!("{id}.sqlite"),
        ".db".to_string(),
    ] {
        let (status, body) = app.get(&format!("/api/v1/backup/{path}/download")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }

    // Roles and file tokens.
    let mut keys = std::collections::HashMap::new();
    for role in ["viewer", "backup_operator"] {
        let (status, body) = app
            .post("/api/v1/keys", json!({ "name": role, "role": role }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        keys.insert(role, body["key"].as_str().unwrap().to_string());
    }
    let url = format!("{}/api/v1/backup/{id}.db/download", app.base);
    let res = authed_client(&keys["viewer"])
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = authed_client(&keys["backup_operator"])
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let plain = reqwest::Client::new();
    // A token for the other backup opens neither this one nor its `.db` spelling.
    let (status, token) = app
        .post("/api/v1/files/token", json!({ "backup_id": other }))
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let token = token["token"].as_str().unwrap();
    for path in [format!("{id}.db"), id.clone()] {
        let res = plain
            .get(format!(
                "{}/api/v1/backup/{path}/download?token={token}",
                app.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "token_scope");
    }
    // A token asked for by the `.db` name opens this backup, under either spelling.
    let (status, token) = app
        .post(
            "/api/v1/files/token",
            json!({ "backup_id": format!("{id}.db") }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["backup_id"], id.as_str());
    let token = token["token"].as_str().unwrap();
    for path in [format!("{id}.db"), id.clone()] {
        let (status, headers, body) = fetch(
            &plain,
            &format!("{}/api/v1/backup/{path}/download?token={token}", app.base),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header(&headers, "content-type"), "application/x-sqlite3");
        assert_eq!(sqlite_content(app.dir.path(), &body).0, "ok");
    }
    let res = plain
        .get(format!(
            "{}/api/v1/backup/{other}/download?token={token}",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // `x-api-secret`, seed 001's header: the same checks as `x-api-key`.
    let with_secret = |key: &str| {
        let key = key.to_string();
        move |req: reqwest::RequestBuilder| req.header("x-api-secret", key.clone())
    };
    let wrong = with_secret(&strata_auth::keys::generate().token);
    let res = wrong(plain.get(&url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let res = with_secret("")(plain.get(&url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let viewer = with_secret(&keys["viewer"]);
    let res = viewer(plain.get(format!("{}/api/v1/keys", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = viewer(plain.get(&url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = viewer(plain.get(format!("{}/api/v1/backup", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let admin = with_secret(&app.admin_key);
    let res = admin(plain.get(format!("{}/api/v1/keys", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = admin(plain.get(&url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        sqlite_content(app.dir.path(), &res.bytes().await.unwrap()).0,
        "ok"
    );
}
