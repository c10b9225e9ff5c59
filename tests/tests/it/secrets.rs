//! Issue 16, item 5: every secret in a database URL is a secret. A password given as
//! `?password=`, an `sslpassword=`, or the userinfo password is split off the URL when a
//! source is created, stored apart, never shown (sources, exports, job results, logs) and
//! never put on a command line; parameters that could smuggle one (an unknown spelling,
//! inline key material) are refused.

use std::os::unix::fs::PermissionsExt;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::{authed_client, create_database, Options, TestApp};

const PASSWORD: &str = "Qu3ryPassw0rd-xyzzy";
const SSL_PASSWORD: &str = "SslKeyPassw0rd-plugh";

fn id(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

fn db_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A viewer's key, to read what the least privileged caller sees.
async fn viewer(app: &TestApp) -> reqwest::Client {
    let (status, key) = app
        .post("/api/v1/keys", json!({"name": "v", "role": "viewer"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    authed_client(key["key"].as_str().unwrap())
}

/// A directory of wrappers around the PostgreSQL tools that record each command line
/// (and whether a service file was handed over) before running the real tool.
fn recording_tools(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("pgbin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("pg-argv.log");
    for tool in ["pg_dump", "psql"] {
        let real = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .unwrap();
        let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
        assert!(!real.is_empty(), "{tool} is not installed");
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$0 $*\" >> '{log}'\n\
             if [ -n \"$PGSERVICEFILE\" ]; then printf 'service file mode %s\\n' \"$(stat -c %a \"$PGSERVICEFILE\")\" >> '{log}'; fi\n\
             exec '{real}' \"$@\"\n",
            log = log.display()
        );
        let path = bin.join(tool);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// The defects: `postgres://u@host/db?password=…` showed the password in `GET /sources`
/// (to viewers) and in the config export (with `password_set: false`); an
/// `sslpassword=` value was logged by sqlx. Both are split off and stored apart: no
/// answer, export, job or log line holds them, the tools get them through their
/// environment or a private service file, never their command line, and the backup and
/// restore still work.
#[tokio::test]
async fn passwords_in_a_database_url_query_are_secrets_everywhere() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = recording_tools(scratch.path());
    let app = TestApp::spawn(Options {
        env: vec![("STRATA_PG_BINDIR".into(), bin.display().to_string())],
        ..Options::default()
    })
    .await;
    let db = db_name("strata_sec");
    let url = create_database(&db).await;
    {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    // The machine's PostgreSQL trusts local connections: the passwords are carried, not
    // needed; `sslmode=disable` keeps the key password unused.
    let with_secrets =
        format!("{url}?sslmode=disable&password={PASSWORD}&sslpassword={SSL_PASSWORD}");
    let (status, created) = app
        .post(
            "/api/v1/sources",
            json!({"name": "pg", "database": {"postgres": with_secrets}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let shown = created.to_string();
    assert!(
        !shown.contains(PASSWORD) && !shown.contains(SSL_PASSWORD),
        "{shown}"
    );
    assert_eq!(created["database"]["password_set"], true, "{created}");
    assert_eq!(created["database"]["sslpassword_set"], true, "{created}");
    assert_eq!(
        created["database"]["postgres"],
        format!("{url}?sslmode=disable"),
        "the URL keeps its other parameters"
    );

    // What a viewer sees.
    let viewer = viewer(&app).await;
    for path in ["/api/v1/sources", "/api/v1/sources/pg"] {
        let text = viewer
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains(PASSWORD) && !text.contains(SSL_PASSWORD),
            "{path}: {text}"
        );
        assert!(text.contains("\"password_set\":true"), "{path}: {text}");
    }
    // The export: both redacted.
    let (_, export) = app.get("/api/v1/config/export").await;
    let text = export.to_string();
    assert!(
        !text.contains(PASSWORD) && !text.contains(SSL_PASSWORD),
        "{text}"
    );
    let exported = &export["config"]["sources"]["pg"]["database"];
    assert_eq!(exported["password"], "[REDACTED]", "{exported}");
    assert_eq!(exported["sslpassword"], "[REDACTED]", "{exported}");
    // Importing the export back keeps both secrets (the backup below still works).
    let (status, report) = app
        .post("/api/v1/config/import", json!({"config": export["config"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");

    // A backup and a restore through pg_dump and psql.
    let b = app.backup("pg", "full").await;
    let job = app.wait_success(&id(&b, "job_id")).await;
    let restored = db_name("strata_sec_r");
    let (status, r) = app
        .post(
            &format!("/api/v1/backup/restore/{}", id(&b, "backup_id")),
            json!({"target": restored}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let rjob = app.wait_success(&id(&r, "job_id")).await;
    for j in [&job, &rjob] {
        let text = j.to_string();
        assert!(
            !text.contains(PASSWORD) && !text.contains(SSL_PASSWORD),
            "{text}"
        );
    }
    let argv = std::fs::read_to_string(scratch.path().join("pg-argv.log")).unwrap();
    assert!(argv.contains("pg_dump") && argv.contains("psql"), "{argv}");
    assert!(
        !argv.contains(PASSWORD) && !argv.contains(SSL_PASSWORD),
        "a command line holds a secret: {argv}"
    );
    assert!(argv.contains("service file mode 600"), "{argv}");
    let logs = app.full_logs();
    for secret in [PASSWORD, SSL_PASSWORD] {
        assert!(!logs.contains(secret), "a log line holds {secret}");
    }
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&strata_tests::admin_database_url())
            .await
            .unwrap();
    for name in [&db, &restored] {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
}

/// Spellings that would slip a secret past the split, or put key material in the URL,
/// are refused with `400 invalid_database_url` naming the field, without echoing the
/// value; a percent-encoded `password` key is still recognised and split off.
#[tokio::test]
async fn odd_spellings_of_secret_parameters_are_refused_or_split_off() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let secret = "Sm0ggled-s3cret";
    let refused = [
        format!("postgres://u@127.0.0.1/db?PASSWORD={secret}"),
        format!("postgres://u@127.0.0.1/db?Password={secret}"),
        format!("postgres://u@127.0.0.1/db?passwrod={secret}"),
        format!("postgres://u@127.0.0.1/db?password={secret}&password=other"),
        format!("postgres://u:{secret}@127.0.0.1/db?password=other"),
        format!("postgres://u@127.0.0.1/db?sslkey=-----BEGIN%20PRIVATE%20KEY-----{secret}"),
        format!("postgres://u@127.0.0.1/db?sslcert=%0A{secret}"),
        format!("postgres://u@127.0.0.1/db?dbname={secret}"),
        format!("postgres://u@127.0.0.1/db?sslpassword={secret}%0A"),
        format!("postgres://u@127.0.0.1/db?sslpassword={secret}&service=x"),
    ];
    for (i, url) in refused.iter().enumerate() {
        let (status, body) = app
            .post(
                "/api/v1/sources",
                json!({"name": format!("s{i}"), "database": {"postgres": url}}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(
            body["error"]["code"], "invalid_database_url",
            "{url}: {body}"
        );
        assert_eq!(body["error"]["field"], "database.postgres", "{url}: {body}");
        assert!(
            !body.to_string().contains(secret),
            "{url}: echoes the value: {body}"
        );
    }
    // `pass%77ord` is `password` to libpq: split off like it.
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({"name": "enc", "database": {"postgres": format!("postgres://u@127.0.0.1/db?pass%77ord={secret}&connect_timeout=5")}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!body.to_string().contains(secret), "{body}");
    assert_eq!(body["database"]["password_set"], true, "{body}");
    assert_eq!(
        body["database"]["postgres"],
        "postgres://u@127.0.0.1/db?connect_timeout=5"
    );
    // A file path for the key is fine.
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({"name": "keyfile", "database": {"postgres": "postgres://u@127.0.0.1/db?sslmode=verify-full&sslkey=/etc/strata/client.key&sslcert=/etc/strata/client.crt"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["database"]["password_set"], false, "{body}");
    assert!(
        !app.full_logs().contains(secret),
        "a log line holds the secret"
    );
}

/// A source recorded before this change, its password still in the stored URL's query:
/// it is shown and exported without it, and its backup still gets it.
#[tokio::test]
async fn a_source_stored_with_a_password_in_its_url_is_shown_without_it() {
    let app = TestApp::spawn(Options::default()).await;
    let db = db_name("strata_sec_old");
    let url = create_database(&db).await;
    let legacy = format!("{url}?password={PASSWORD}&sslpassword={SSL_PASSWORD}");
    let mut conn = app.db().await;
    sqlx::query("INSERT INTO sources (id, name, kind, spec) VALUES ($1, 'old', 'postgres', $2)")
        .bind(uuid::Uuid::new_v4())
        .bind(sqlx::types::Json(
            json!({"files": null, "database": {"postgres": {"url": legacy, "schemas": []}}}),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, source) = app.get("/api/v1/sources/old").await;
    assert_eq!(status, StatusCode::OK, "{source}");
    let text = source.to_string();
    assert!(
        !text.contains(PASSWORD) && !text.contains(SSL_PASSWORD),
        "{text}"
    );
    assert_eq!(source["database"]["password_set"], true, "{source}");
    assert_eq!(source["database"]["postgres"], url, "{source}");
    let (_, export) = app.get("/api/v1/config/export").await;
    let text = export.to_string();
    assert!(
        !text.contains(PASSWORD) && !text.contains(SSL_PASSWORD),
        "{text}"
    );
    let b = app.backup("old", "full").await;
    let job = app.wait_success(&id(&b, "job_id")).await;
    assert!(!job.to_string().contains(PASSWORD));
    assert!(
        !app.full_logs().contains(PASSWORD),
        "a log line holds the password"
    );
    assert!(
        !app.full_logs().contains(SSL_PASSWORD),
        "a log line holds the key password"
    );
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&strata_tests::admin_database_url())
            .await
            .unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
}
