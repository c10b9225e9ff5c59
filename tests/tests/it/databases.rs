//! Database sources against the machine's real PostgreSQL and real SQLite files: full,
//! incremental and differential dumps restored to the moment they were taken, atomic
//! restores over a live database, consistent SQLite copies under a writer, combined
//! sources, restore drills, and errors that name the problem without the secret.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;
use strata_tests::pg::{connect, drop_db, exec, unique};
use strata_tests::tree::{snapshot, write_noise};
use strata_tests::{admin_database_url, create_database, Options, TestApp};

fn db_url(name: &str) -> String {
    let admin = admin_database_url();
    let (base, _) = admin.rsplit_once('/').expect("a path");
    format!("{base}/{name}")
}

async fn database_names(prefix: &str) -> Vec<String> {
    let mut admin = connect(&admin_database_url()).await;
    sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1")
        .bind(format!("{prefix}%"))
        .fetch_all(&mut admin)
        .await
        .unwrap()
}

/// What a user would compare: per-table row counts and content checksums computed in
/// SQL, the sequence's position, and that the view and the index exist.
async fn fingerprint(url: &str) -> Value {
    let mut conn = connect(url).await;
    let mut out = serde_json::Map::new();
    for table in ["items", "events"] {
        let (rows, sum): (i64, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY id)) FROM {table} t"
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        out.insert(table.into(), json!({ "rows": rows, "md5": sum }));
    }
    let seq: i64 = sqlx::query_scalar("SELECT last_value FROM order_no")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    out.insert("order_no".into(), json!(seq));
    let view: i64 = sqlx::query_scalar("SELECT count(*) FROM big_items")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    out.insert("big_items_view".into(), json!(view));
    let index: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'items_name_idx')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    out.insert("index".into(), json!(index));
    conn.close().await.ok();
    Value::Object(out)
}

/// Several tables, an index, a sequence, a view, bytea and jsonb: `rows` rows of ~1.6 KiB.
async fn build_database(url: &str, rows: i64) {
    let mut conn = connect(url).await;
    exec(
        &mut conn,
        &format!(
            "CREATE SEQUENCE order_no START 1000;
             CREATE TABLE items (
                 id bigserial PRIMARY KEY,
                 name text NOT NULL,
                 payload bytea NOT NULL,
                 doc jsonb NOT NULL,
                 order_no bigint NOT NULL DEFAULT nextval('order_no')
             );
             CREATE INDEX items_name_idx ON items (name);
             CREATE TABLE events (
                 id serial PRIMARY KEY,
                 item_id bigint REFERENCES items (id) ON DELETE CASCADE,
                 kind text NOT NULL
             );
             CREATE VIEW big_items AS SELECT id, name FROM items WHERE length(payload) > 1000;
             INSERT INTO items (name, payload, doc)
               SELECT 'item-' || i,
                      (SELECT decode(string_agg(md5((i * 100 + g)::text), ''), 'hex')
                         FROM generate_series(1, 48) AS g),
                      jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i % 10), 'note', md5(i::text))
                 FROM generate_series(1, {rows}) AS i;
             INSERT INTO events (item_id, kind) SELECT id, 'created' FROM items WHERE id % 3 = 0;"
        ),
    )
    .await;
    conn.close().await.ok();
}

async fn postgres_source(app: &TestApp, name: &str, url: &str) {
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": name, "database": { "postgres": url } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "postgres");
}

async fn backup_ok(app: &TestApp, source: &str, kind: &str) -> (String, Value) {
    let accepted = app.backup(source, kind).await;
    let job = app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    (accepted["backup_id"].as_str().unwrap().to_string(), job)
}

async fn restore_with(app: &TestApp, backup_id: &str, body: Value) -> Value {
    let (status, accepted) = app
        .post(&format!("/api/v1/backup/{backup_id}/restore"), body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    app.wait_job(
        accepted["job_id"].as_str().unwrap(),
        Duration::from_secs(300),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_full_incremental_differential_each_restore_to_their_moment() {
    let app = TestApp::spawn(Options::default()).await;
    let db = unique("src");
    let url = create_database(&db).await;
    // ~100 MB of rows: 64,000 rows of 1.5 KiB random-looking bytea plus jsonb.
    build_database(&url, 64_000).await;
    postgres_source(&app, "pg", &url).await;

    let (full, full_job) = backup_ok(&app, "pg", "full").await;
    let at_full = fingerprint(&url).await;
    let result = &full_job["result"];
    assert_eq!(result["parts"], json!(["database"]), "{result}");
    assert_eq!(result["database"]["engine"], "postgres");
    assert!(
        result["database"]["size"].as_u64().unwrap() > 100_000_000,
        "the dump holds ~100 MB of rows: {result}"
    );
    // 64,000 items + 21,333 events, as counted in the dump.
    assert_eq!(result["database"]["rows"], 64_000 + 21_333, "{result}");

    let mut conn = connect(&url).await;
    exec(
        &mut conn,
        "UPDATE items SET doc = doc || '{\"changed\": true}' WHERE id BETWEEN 100 AND 199;
         DELETE FROM items WHERE id BETWEEN 30000 AND 30199;
         INSERT INTO items (name, payload, doc)
           SELECT 'new-' || i, decode(md5(i::text), 'hex'), '{\"new\": 1}' FROM generate_series(1, 500) i;
         INSERT INTO events (item_id, kind) VALUES (5, 'touched');",
    )
    .await;
    let (incremental, inc_job) = backup_ok(&app, "pg", "incremental").await;
    let at_incremental = fingerprint(&url).await;
    assert_ne!(at_incremental, at_full);

    exec(
        &mut conn,
        "UPDATE items SET name = name || '-x' WHERE id BETWEEN 1000 AND 1049;
         DELETE FROM events WHERE id % 10 = 0;
         SELECT nextval('order_no') FROM generate_series(1, 7);",
    )
    .await;
    conn.close().await.ok();
    let (differential, diff_job) = backup_ok(&app, "pg", "differential").await;
    let at_differential = fingerprint(&url).await;
    assert_ne!(at_differential, at_incremental);

    // Incremental and differential dumps store only the chunks that changed.
    let stored = |job: &Value| job["result"]["stored_size"].as_u64().unwrap();
    let full_stored = stored(&full_job);
    eprintln!(
        "database dump {} bytes: full stored {full_stored}, incremental {}, differential {}",
        full_job["result"]["database"]["size"],
        stored(&inc_job),
        stored(&diff_job)
    );
    assert!(
        stored(&inc_job) * 4 < full_stored && stored(&diff_job) * 4 < full_stored,
        "full stored {full_stored}, incremental {}, differential {}",
        stored(&inc_job),
        stored(&diff_job)
    );
    assert_eq!(inc_job["result"]["type"], "incremental");
    assert_eq!(diff_job["result"]["parent"], full);

    for (backup, expected) in [
        (&full, &at_full),
        (&incremental, &at_incremental),
        (&differential, &at_differential),
    ] {
        let target = unique("restored");
        let job = restore_with(&app, backup, json!({ "target": target })).await;
        assert_eq!(job["status"], "succeeded", "{job}\n{}", app.logs());
        let checks = &job["result"]["database"]["tables"];
        assert!(
            checks.as_array().unwrap().iter().all(|t| t["ok"] == true),
            "{job}"
        );
        assert_eq!(
            &fingerprint(&db_url(&target)).await,
            expected,
            "backup {backup}"
        );
        drop_db(&target).await;
    }
    // No restore left a scratch database behind.
    assert!(database_names("strata_restore_").await.is_empty());
    drop_db(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restore_over_the_live_database_swaps_it_atomically() {
    let app = TestApp::spawn(Options::default()).await;
    let db = unique("live");
    let url = create_database(&db).await;
    build_database(&url, 2_000).await;
    postgres_source(&app, "live", &url).await;
    let (backup, _) = backup_ok(&app, "live", "full").await;
    let at_backup = fingerprint(&url).await;

    let mut conn = connect(&url).await;
    exec(&mut conn, "DELETE FROM items WHERE id > 100").await;
    let changed = fingerprint(&url).await;
    // A client keeps a session open on the live database throughout.
    let mut client = connect(&url).await;
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut client)
        .await
        .unwrap();

    let job = restore_with(
        &app,
        &backup,
        json!({ "pre_restore_backup": true, "keep_previous_database": true }),
    )
    .await;
    if job["status"] == "succeeded" {
        assert_eq!(fingerprint(&url).await, at_backup, "{job}");
        // The replaced database is kept under a dated name, intact, as asked.
        let previous = job["result"]["database"]["previous_database"]
            .as_str()
            .unwrap_or_else(|| panic!("{job}"))
            .to_string();
        assert!(previous.starts_with(&format!("{db}_before_")), "{previous}");
        assert_eq!(fingerprint(&db_url(&previous)).await, changed);
        drop_db(&previous).await;
        // The client's session was closed by the swap; a new one sees the restored data.
        assert!(sqlx::query("SELECT 1").execute(&mut client).await.is_err());
        // The pre-restore backup holds the state that was replaced.
        let pre = job["result"]["pre_restore_backup_id"].as_str().unwrap();
        let (status, row) = app.get(&format!("/api/v1/backup/{pre}")).await;
        assert_eq!(
            (status, row["status"].as_str()),
            (StatusCode::OK, Some("complete"))
        );
    } else {
        // Allowed by the contract: a clear failure, the live database untouched.
        assert_eq!(job["status"], "failed", "{job}");
        let error = job["error"].to_string();
        assert!(error.contains("untouched"), "{error}");
        assert_eq!(fingerprint(&url).await, changed);
    }
    conn.close().await.ok();

    // Without `keep_previous_database` the replaced database is dropped when the job ends.
    let job = restore_with(&app, &backup, json!({ "pre_restore_backup": false })).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", app.logs());
    assert_eq!(fingerprint(&url).await, at_backup);
    assert!(database_names(&format!("{db}_before_")).await.is_empty());
    assert!(database_names("strata_restore_").await.is_empty());
    drop_db(&db).await;
}

fn sqlite_rows(path: &Path) -> (i64, i64, String) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    let counter: i64 = conn
        .query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap();
    (rows, counter, integrity)
}

fn build_sqlite(path: &Path, rows: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE entries (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE counter (n INTEGER NOT NULL);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows})
         INSERT INTO entries (body) SELECT hex(randomblob(500)) FROM s;
         INSERT INTO counter SELECT count(*) FROM entries;"
    ))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_backup_under_a_writer_is_consistent_and_never_blocks_it_long() {
    let app = TestApp::spawn(Options::default()).await;
    let db = app.dir.path().join("app.db");
    // ~40 MB, in the default rollback-journal mode (where a reader can hold writers off).
    build_sqlite(&db, 40_000);
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "lite", "database": { "sqlite": db } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "sqlite");

    // The writer: one row per transaction, with the counter kept equal to the row count.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, db) = (stop.clone(), db.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            let (mut worst, mut writes) = (Duration::ZERO, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                conn.execute_batch(
                    "BEGIN IMMEDIATE;
                     INSERT INTO entries (body) VALUES (hex(randomblob(500)));
                     UPDATE counter SET n = n + 1;
                     COMMIT;",
                )
                .unwrap();
                worst = worst.max(t.elapsed());
                writes += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (worst, writes)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (backup, job) = backup_ok(&app, "lite", "full").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let (worst, writes) = writer.join().unwrap();
    assert!(
        writes > 50,
        "the writer kept writing during the backup ({writes})"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a write waited {worst:?} for the backup"
    );
    let (final_rows, _, _) = sqlite_rows(&db);

    let restored = app.dir.path().join("restored.db");
    let job2 = restore_with(&app, &backup, json!({ "target": restored })).await;
    assert_eq!(job2["status"], "succeeded", "{job2}\n{}", app.logs());
    assert_eq!(job2["result"]["database"]["integrity_check"], "ok");
    let (rows, counter, integrity) = sqlite_rows(&restored);
    assert_eq!(integrity, "ok");
    // One moment: the counter and the rows agree, at a count that existed.
    assert_eq!(rows, counter, "{job}");
    assert!(
        (40_000..=final_rows).contains(&rows),
        "{rows} not in 40000..={final_rows}"
    );
    let recorded = &job["result"]["database"]["rows"];
    assert_eq!(
        recorded.as_i64(),
        Some(rows + 1),
        "entries + counter: {job}"
    );

    // Restoring over the live file replaces it and removes its stale journals.
    std::fs::write(app.dir.path().join("app.db-wal"), b"stale").unwrap();
    let job3 = restore_with(&app, &backup, json!({ "pre_restore_backup": false })).await;
    assert_eq!(job3["status"], "succeeded", "{job3}");
    assert!(!app.dir.path().join("app.db-wal").exists());
    assert_eq!(sqlite_rows(&db).0, rows);
}

#[tokio::test(flavor = "multi_thread")]
async fn combined_source_restores_files_and_database_to_the_same_moment() {
    let app = TestApp::spawn(Options::default()).await;
    // PocketBase-style: the database lives inside the directory.
    let root = app.dir.path().join("pb_data");
    std::fs::create_dir_all(root.join("storage/avatars")).unwrap();
    write_noise(&root.join("storage/avatars/a.png"), 1, 300_000);
    write_noise(&root.join("storage/readme.txt"), 2, 1000);
    let db = root.join("data.db");
    build_sqlite(&db, 2_000);
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "pb", "files": { "path": root }, "database": { "sqlite": db } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "directory+sqlite");

    let (first, job) = backup_ok(&app, "pb", "full").await;
    assert_eq!(job["result"]["parts"], json!(["files", "database"]));
    let (_, row) = app.get(&format!("/api/v1/backup/{first}")).await;
    assert_eq!(row["parts"], json!(["files", "database"]), "{row}");
    let files_then = {
        let mut t = snapshot(&root);
        t.retain(|k, _| !k.starts_with(b"data.db"));
        t
    };
    let rows_then = sqlite_rows(&db).0;

    // Both change after the backup.
    write_noise(&root.join("storage/avatars/b.png"), 3, 200_000);
    std::fs::remove_file(root.join("storage/readme.txt")).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "DELETE FROM entries WHERE id < 500; UPDATE counter SET n = (SELECT count(*) FROM entries);",
        )
        .unwrap();
    }
    let (_second, _) = backup_ok(&app, "pb", "incremental").await;

    let job = restore_with(&app, &first, json!({})).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", app.logs());
    let mut files_now = snapshot(&root);
    files_now.retain(|k, _| !k.starts_with(b"data.db"));
    assert!(
        files_now == files_then,
        "files restored to the first backup differ"
    );
    let (rows, counter, integrity) = sqlite_rows(&db);
    assert_eq!(
        (rows, counter, integrity.as_str()),
        (rows_then, rows_then, "ok")
    );

    // A files-only backup of the combined source, restored files-only, keeps the live
    // database as it is.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DELETE FROM entries WHERE id < 100; UPDATE counter SET n = (SELECT count(*) FROM entries);")
            .unwrap();
    }
    let live_rows = sqlite_rows(&db).0;
    let (status, accepted) = app
        .post(
            "/api/v1/backup/create",
            json!({ "source": "pb", "include_database": false }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let job = app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    assert_eq!(job["result"]["parts"], json!(["files"]));
    let job = restore_with(
        &app,
        accepted["backup_id"].as_str().unwrap(),
        json!({ "pre_restore_backup": false }),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(sqlite_rows(&db).0, live_rows);
    // Asking a files-only backup for its database is a clear 400.
    let (status, body) = app
        .post(
            &format!(
                "/api/v1/backup/{}/restore",
                accepted["backup_id"].as_str().unwrap()
            ),
            json!({ "include_database": true }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "include_database", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_drills_check_a_directory_and_postgres_backup_then_clean_up() {
    let app = TestApp::spawn(Options::default()).await;
    let db = unique("drill");
    let url = create_database(&db).await;
    build_database(&url, 1_000).await;
    let root = app.dir.path().join("uploads");
    std::fs::create_dir_all(&root).unwrap();
    write_noise(&root.join("a.bin"), 7, 500_000);
    write_noise(&root.join("b.bin"), 8, 10);
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "app", "files": { "path": root }, "database": { "postgres": url } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "directory+postgres");
    let (backup, _) = backup_ok(&app, "app", "full").await;

    let (status, accepted) = app
        .post(
            &format!("/api/v1/backup/{backup}/verify"),
            json!({ "mode": "restore" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let job = app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    let r = &job["result"];
    assert_eq!(r["mode"], "restore");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["files"]["files"], 2, "{r}");
    assert_eq!(r["files"]["bytes"], 500_010, "{r}");
    let tables = r["database"]["tables"].as_array().unwrap();
    let items = tables
        .iter()
        .find(|t| t["table"] == "public.items")
        .unwrap();
    assert_eq!(
        (items["rows"].as_u64(), items["ok"].as_bool()),
        (Some(1000), Some(true))
    );
    assert_eq!(r["database"]["scratch_dropped"], true);
    assert!(database_names("strata_drill_").await.is_empty());

    let (status, body) = app
        .post(
            &format!("/api/v1/backup/{backup}/verify"),
            json!({ "mode": "bogus" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "mode");
    drop_db(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_errors_name_the_problem_and_never_the_secret() {
    let secret = "Sup3r-S3cret-Pw";
    let app = TestApp::spawn(Options {
        env: vec![("STRATA_JOB_MAX_ATTEMPTS".into(), "1".into())],
        ..Default::default()
    })
    .await;
    // Bad input is refused at the door, naming the field.
    for (database, field) in [
        (json!({ "postgres": "mysql://x@h/db" }), "database.postgres"),
        (
            json!({ "postgres": "postgres://x@h/" }),
            "database.postgres",
        ),
        (
            json!({ "postgres": "postgres://x@h/d", "sqlite": "/a.db" }),
            "database",
        ),
        (json!({ "sqlite": "relative.db" }), "database.sqlite"),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/sources",
                json!({ "name": "bad", "database": database }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }

    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases = [
        (
            "unreachable",
            json!({ "postgres": format!("postgres://app:{secret}@127.0.0.1:{port}/app") }),
            "database_unreachable",
        ),
        (
            // The machine's PostgreSQL trusts local connections, so a refused login is
            // produced with a role that does not exist.
            "bad-login",
            json!({ "postgres": format!("postgres://no_such_role_x:{secret}@127.0.0.1:5432/postgres") }),
            "database_auth_failed",
        ),
        (
            "no-db",
            json!({ "postgres": format!("postgres://postgres:{secret}@127.0.0.1:5432/no_such_database_x") }),
            "database_not_found",
        ),
        (
            "missing-file",
            json!({ "sqlite": app.dir.path().join("missing.db") }),
            "sqlite_file_missing",
        ),
    ];
    for (name, database, code) in cases {
        let (status, body) = app
            .post(
                "/api/v1/sources",
                json!({ "name": name, "database": database }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(!body.to_string().contains(secret), "{body}");
        let accepted = app.backup(name, "full").await;
        let job = app
            .wait_job(
                accepted["job_id"].as_str().unwrap(),
                Duration::from_secs(120),
            )
            .await;
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error"]["code"], code, "{job}");
        let text = job.to_string();
        assert!(!text.contains(secret), "{text}");
        if name == "missing-file" {
            assert!(text.contains("missing.db"), "{text}");
            assert!(!app.dir.path().join("missing.db").exists());
        } else {
            assert!(text.contains("127.0.0.1"), "names the server: {text}");
        }
    }
    // Sources show that a password is set, never the password; exports redact it.
    let (_, source) = app.get("/api/v1/sources/unreachable").await;
    assert_eq!(source["database"]["password_set"], true, "{source}");
    let (_, export) = app.get("/api/v1/config/export").await;
    assert!(!export.to_string().contains(secret), "{export}");
    assert_eq!(
        export["config"]["sources"]["unreachable"]["database"]["password"],
        "[REDACTED]"
    );
    assert!(
        !app.full_logs().contains(secret),
        "a log line holds the password"
    );
}
