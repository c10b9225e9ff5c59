//! PostgreSQL sources: a consistent plain-SQL dump with `pg_dump`, streamed into the
//! engine; restores through `psql` into a new database that is checked and then swapped
//! in by renaming, so a failed restore never touches the live database.

use std::io::Read;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::errors::ErrorCode;

use anyhow::Context;
use futures::TryStreamExt;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use strata_core::model::{PostgresSecrets, PostgresSpec, PostgresUrl};
use strata_engine::repo::manifest::TableRecord;
use tokio::io::AsyncWriteExt;

use crate::jobs::{JobError, JobResult};

/// How to reach a database: a URL without any secret, and the secrets apart. The tools
/// get the password through `PGPASSWORD` and the key passphrase through a service file
/// only this process can read, never on their command line; Strata's own connections
/// get the password directly (the driver cannot use an encrypted client key).
#[derive(Clone)]
pub struct Target {
    url: url::Url,
    secrets: PostgresSecrets,
    /// A private service file holding the `sslpassword`, while any clone lives.
    service_file: Option<Arc<tempfile::TempPath>>,
    pub database: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url.as_str())
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The source's database, with its stored secrets (and, for a source recorded by an
    /// older version, those still in its URL).
    pub fn of_source(spec: &PostgresSpec, secrets: &PostgresSecrets) -> JobResult<Self> {
        let parsed = PostgresUrl::stored(&spec.url)
            .map_err(|e| JobError::permanent(ErrorCode::InvalidDatabaseUrl, e.to_string()))?;
        let secrets = secrets.clone().or(parsed.secrets);
        let service_file = match &secrets.sslpassword {
            Some(p) => Some(Arc::new(service_file(p)?)),
            None => None,
        };
        Ok(Self {
            url: url::Url::parse(&parsed.url)?,
            secrets,
            service_file,
            database: parsed.database,
        })
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, database: &str) -> Self {
        let mut url = self.url.clone();
        url.set_path(&format!("/{}", encode_path_segment(database)));
        Self {
            url,
            secrets: self.secrets.clone(),
            service_file: self.service_file.clone(),
            database: database.to_string(),
        }
    }

    /// Where the server is, for messages (no user, no password).
    pub fn describe(&self) -> String {
        format!(
            "{}:{}/{}",
            self.url.host_str().unwrap_or("?"),
            self.url.port().unwrap_or(5432),
            self.database
        )
    }

    /// Removes every secret from a message (belt and braces: the tools never see them
    /// in their arguments).
    pub fn scrub(&self, message: &str) -> String {
        self.secrets
            .values()
            .fold(message.to_string(), |m, secret| {
                m.replace(secret, "[REDACTED]")
            })
    }

    pub async fn connect(&self) -> JobResult<PgConnection> {
        let mut options = PgConnectOptions::from_str(self.url.as_str())
            .map_err(|e| {
                JobError::permanent(ErrorCode::InvalidDatabaseUrl, self.scrub(&e.to_string()))
            })?
            .application_name("strata-worker")
            .disable_statement_logging();
        if let Some(p) = &self.secrets.password {
            options = options.password(p);
        }
        match tokio::time::timeout(Duration::from_secs(15), options.connect()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(&e)),
            Err(_) => Err(JobError::permanent(
                ErrorCode::DatabaseUnreachable,
                format!(
                    "cannot connect to PostgreSQL at {}: no answer within 15 s",
                    self.describe()
                ),
            )),
        }
    }

    fn connect_error(&self, e: &sqlx::Error) -> JobError {
        let text = self.scrub(&e.to_string());
        let code = match e {
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("28P01") | Some("28000") => ErrorCode::DatabaseAuthFailed,
                Some("3D000") => ErrorCode::DatabaseNotFound,
                _ => ErrorCode::DatabaseError,
            },
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
                ErrorCode::DatabaseUnreachable
            }
            _ => ErrorCode::DatabaseError,
        };
        let what = match code {
            ErrorCode::DatabaseAuthFailed => "PostgreSQL refused the credentials",
            ErrorCode::DatabaseNotFound => "the database does not exist",
            ErrorCode::DatabaseUnreachable => "cannot connect to PostgreSQL",
            _ => "PostgreSQL refused the connection",
        };
        JobError::permanent(code, format!("{what} at {}: {text}", self.describe()))
    }

    /// A command for a PostgreSQL client tool, connected through the environment (the
    /// password never appears in a process listing).
    fn command(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(tool(program));
        cmd.env("PGAPPNAME", "strata-worker")
            .env("PGCONNECT_TIMEOUT", "15")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env_remove("PGSERVICEFILE");
        if let Some(p) = &self.secrets.password {
            cmd.env("PGPASSWORD", p);
        }
        if let Some(file) = &self.service_file {
            cmd.env("PGSERVICEFILE", file.as_os_str())
                .env("PGSERVICE", SERVICE);
        }
        cmd
    }
}

/// The service the private service file defines.
const SERVICE: &str = "strata";

/// A service file (mode 0600, removed when dropped) that gives libpq the client key's
/// passphrase: there is no environment variable for `sslpassword`, and the command line
/// is readable by every user of the machine.
fn service_file(sslpassword: &str) -> anyhow::Result<tempfile::TempPath> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .prefix("strata-pgservice-")
        .tempfile()
        .context("creating the PostgreSQL service file")?;
    writeln!(file, "[{SERVICE}]\nsslpassword={sslpassword}")
        .context("writing the PostgreSQL service file")?;
    file.flush()?;
    Ok(file.into_temp_path())
}

fn encode_path_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the PostgreSQL client tools are: `STRATA_PG_BINDIR`, else `PATH`.
fn tool(program: &str) -> std::path::PathBuf {
    match std::env::var_os("STRATA_PG_BINDIR") {
        Some(dir) if !dir.is_empty() => std::path::Path::new(&dir).join(program),
        _ => program.into(),
    }
}

/// `"name"` with quotes doubled: a safe SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A PostgreSQL version: major and the printed text.
#[derive(Debug, Clone)]
pub struct Version {
    pub major: u32,
    pub text: String,
}

/// `pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)` → 15.
fn parse_tool_version(out: &str) -> Option<Version> {
    let text = out.split_whitespace().nth(2)?.to_string();
    let major = text.split(['.', 'b', 'r', 'd']).next()?.parse().ok()?;
    Some(Version { major, text })
}

async fn tool_version(program: &str) -> JobResult<Version> {
    let out = tokio::process::Command::new(tool(program))
        .arg("--version")
        .output()
        .await
        .map_err(|e| {
            JobError::permanent(ErrorCode::PgToolsMissing,
                format!(
                    "{program} cannot be run on this worker ({e}); install the PostgreSQL client tools (Debian: postgresql-client) or set STRATA_PG_BINDIR"
                ),
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(parse_tool_version(&text)
        .with_context(|| format!("{program} --version printed {:?}", text.trim()))?)
}

/// The server's version.
async fn server_version(conn: &mut PgConnection) -> anyhow::Result<Version> {
    let (num, text): (String, String) = sqlx::query_as(
        "SELECT current_setting('server_version_num'), current_setting('server_version')",
    )
    .fetch_one(conn)
    .await?;
    let num: u32 = num.parse().context("server_version_num")?;
    Ok(Version {
        major: num / 10000,
        text,
    })
}

/// A database's creation settings, so that a restore creates it alike.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DatabaseSettings {
    pub encoding: String,
    pub lc_collate: String,
    pub lc_ctype: String,
}

/// What a running dump will say when it ends.
pub struct Dump {
    child: std::process::Child,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    pub tables: Arc<Mutex<Vec<TableRecord>>>,
    pub server: Version,
    pub tool: Version,
    pub settings: DatabaseSettings,
    pub size_hint: u64,
    target: Target,
}

impl Drop for Dump {
    fn drop(&mut self) {
        // A dump whose reader gave up must not run on.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dump {
    /// Waits for `pg_dump` to exit; its failure is the job's failure.
    pub async fn finish(mut self) -> JobResult<Vec<TableRecord>> {
        let mut child_status = None;
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait()? {
                child_status = Some(status);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = child_status.context("pg_dump did not exit after its output ended")?;
        if let Some(t) = self.stderr_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !status.success() {
            return Err(JobError::permanent(
                ErrorCode::DatabaseDumpFailed,
                format!(
                    "pg_dump of {} failed ({status}): {}",
                    self.target.describe(),
                    self.target.scrub(stderr.trim())
                ),
            ));
        }
        let tables = self
            .tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(tables)
    }
}

/// Checks the connection and the tools, then starts `pg_dump`; the returned reader is its
/// output (plain SQL), counted table by table as it passes.
pub async fn start_dump(
    target: &Target,
    schemas: &[String],
) -> JobResult<(Dump, Box<dyn Read + Send>)> {
    let mut conn = target.connect().await?;
    let server = server_version(&mut conn).await?;
    let tool = tool_version("pg_dump").await?;
    if tool.major < server.major {
        return Err(JobError::permanent(ErrorCode::PgDumpTooOld,
            format!(
                "pg_dump {} cannot dump PostgreSQL {} (it must be the same major version or newer); install the PostgreSQL {} client tools on the worker",
                tool.text, server.text, server.major
            ),
        ));
    }
    let (encoding, lc_collate, lc_ctype): (String, String, String) = sqlx::query_as(
        "SELECT pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text
           FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await?;
    let size_hint: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await?;
    for schema in schemas {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            return Err(JobError::permanent(
                ErrorCode::SchemaNotFound,
                format!(
                    "the schema {schema:?} does not exist in {}",
                    target.describe()
                ),
            ));
        }
    }
    let _ = conn.close().await;

    let mut cmd = target.command("pg_dump");
    cmd.arg("--format=plain")
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg("--lock-wait-timeout=120s")
        .arg(format!("--dbname={}", target.url));
    for schema in schemas {
        cmd.arg(format!("--schema={}", quote_ident(schema)));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        JobError::permanent(
            ErrorCode::PgToolsMissing,
            format!("pg_dump cannot be started: {e}"),
        )
    })?;
    let stdout = child.stdout.take().context("pg_dump has no stdout")?;
    let stderr_pipe = child.stderr.take().context("pg_dump has no stderr")?;
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let stderr_thread = std::thread::spawn(move || collect_stderr(stderr_pipe, &sink));
    let tables = Arc::new(Mutex::new(Vec::new()));
    let reader = CopyCounter::new(stdout, tables.clone());
    Ok((
        Dump {
            child,
            stderr,
            stderr_thread: Some(stderr_thread),
            tables,
            server,
            tool,
            settings: DatabaseSettings {
                encoding,
                lc_collate,
                lc_ctype,
            },
            size_hint: size_hint.max(0) as u64,
            target: target.clone(),
        },
        Box::new(reader),
    ))
}

/// Keeps the first 16 KiB of a tool's error output.
fn collect_stderr(mut pipe: impl Read, sink: &Mutex<String>) {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < 16 * 1024 {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
}

/// Counts the rows of each `COPY … FROM stdin;` block of a plain dump as it streams by
/// (one line per row; newlines inside values are escaped by COPY's text format).
pub struct CopyCounter<R> {
    inner: R,
    tables: Arc<Mutex<Vec<TableRecord>>>,
    /// The start of the current line (up to `HEAD`), and whether it was cut.
    line: Vec<u8>,
    long: bool,
    copying: Option<TableRecord>,
}

const HEAD: usize = 64 * 1024;

impl<R: Read> CopyCounter<R> {
    pub fn new(inner: R, tables: Arc<Mutex<Vec<TableRecord>>>) -> Self {
        Self {
            inner,
            tables,
            line: Vec::new(),
            long: false,
            copying: None,
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let long = std::mem::replace(&mut self.long, false);
        match &mut self.copying {
            Some(table) => {
                if !long && line == b"\\." {
                    let done = self.copying.take().expect("copying");
                    self.tables
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(done);
                } else {
                    table.rows += 1;
                }
            }
            None => {
                if long {
                    return;
                }
                if let Some(name) = copy_header(&line) {
                    self.copying = Some(TableRecord { name, rows: 0 });
                }
            }
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            self.push(&data[..pos]);
            self.end_line();
            data = &data[pos + 1..];
        }
        self.push(data);
    }

    fn push(&mut self, part: &[u8]) {
        // Inside a COPY block only `\.` matters: three bytes of each row tell.
        let cap = if self.copying.is_some() { 3 } else { HEAD };
        if self.line.len() + part.len() > cap {
            self.long = true;
            let room = cap.saturating_sub(self.line.len()).min(part.len());
            self.line.extend_from_slice(&part[..room]);
        } else {
            self.line.extend_from_slice(part);
        }
    }
}

/// `COPY public.items (id, name) FROM stdin;` → `public.items`.
fn copy_header(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("COPY ")?;
    if !text.ends_with(" FROM stdin;") {
        return None;
    }
    // The name ends at the column list, or at FROM for a table without columns.
    let end = find_unquoted(rest, " (").or_else(|| find_unquoted(rest, " FROM stdin;"))?;
    Some(rest[..end].to_string())
}

/// The first `pat` outside double quotes.
fn find_unquoted(text: &str, pat: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && text[i..].starts_with(pat) {
            return Some(i);
        }
    }
    None
}

impl<R: Read> Read for CopyCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.feed(&buf[..n]);
        Ok(n)
    }
}

/// The maintenance database used to create, rename and drop databases.
fn admin(target: &Target) -> Target {
    target.with_database("postgres")
}

async fn admin_connect(target: &Target) -> JobResult<PgConnection> {
    match admin(target).connect().await {
        Ok(c) => Ok(c),
        // No `postgres` database on this server: template1 always exists.
        Err(_) => target.with_database("template1").connect().await,
    }
}

pub async fn database_exists(conn: &mut PgConnection, name: &str) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(conn)
            .await?,
    )
}

/// Drops a database if it exists (closing its connections).
pub async fn drop_database(server: &Target, name: &str) -> JobResult<()> {
    let mut conn = admin_connect(server).await?;
    ddl(
        &mut conn,
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
    )
    .await
    .with_context(|| format!("dropping database {name}"))?;
    Ok(())
}

/// Creates an empty database (from template0, with the original's encoding and
/// locale when known) and loads a dump into it with `psql` in one transaction.
pub async fn load(
    server: &Target,
    name: &str,
    settings: Option<&DatabaseSettings>,
    dump: impl futures::Stream<Item = anyhow::Result<bytes::Bytes>> + Send,
    progress: &strata_engine::repo::progress::Progress,
) -> JobResult<()> {
    let mut conn = admin_connect(server).await?;
    ddl(
        &mut conn,
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
    )
    .await?;
    let mut create = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    if let Some(s) = settings {
        create.push_str(&format!(
            " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_literal(&s.encoding),
            quote_literal(&s.lc_collate),
            quote_literal(&s.lc_ctype)
        ));
    }
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(create.clone()))
        .execute(&mut conn)
        .await
    {
        let code = match &e {
            sqlx::Error::Database(d) if d.code().as_deref() == Some("42501") => {
                ErrorCode::DatabasePermissionDenied
            }
            _ => ErrorCode::DatabaseCreateFailed,
        };
        return Err(JobError::permanent(
            code,
            format!(
                "cannot create database {name} on {}: {} (the source's user needs CREATEDB)",
                server.describe(),
                server.scrub(&e.to_string())
            ),
        ));
    }
    let _ = conn.close().await;

    let db = server.with_database(name);
    let mut cmd = tokio::process::Command::from(db.command("psql"));
    cmd.arg("--no-psqlrc")
        .arg("--quiet")
        .arg("--single-transaction")
        .arg("--set=ON_ERROR_STOP=1")
        .arg(format!("--dbname={}", db.url))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        JobError::permanent(
            ErrorCode::PgToolsMissing,
            format!("psql cannot be started: {e}; install the PostgreSQL client tools"),
        )
    })?;
    let mut stdin = child.stdin.take().context("psql has no stdin")?;
    let mut stderr = child.stderr.take().context("psql has no stderr")?;
    let errors = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    let feed = async {
        futures::pin_mut!(dump);
        while let Some(block) = dump.try_next().await? {
            if stdin.write_all(&block).await.is_err() {
                // psql stopped reading: its exit status and message say why.
                return Ok(());
            }
            progress
                .bytes_done
                .fetch_add(block.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = stdin.shutdown().await;
        drop(stdin);
        Ok::<(), anyhow::Error>(())
    };
    let fed = feed.await;
    if fed.is_err() {
        let _ = child.start_kill();
    }
    let status = child.wait().await?;
    let errors = errors.await.unwrap_or_default();
    fed?;
    if !status.success() {
        let first: String = errors.lines().take(5).collect::<Vec<_>>().join("; ");
        return Err(JobError::permanent(
            ErrorCode::DatabaseRestoreFailed,
            format!(
                "loading the dump into {name} failed ({status}): {}",
                server.scrub(&first)
            ),
        ));
    }
    Ok(())
}

/// Runs one statement built from quoted identifiers (DDL takes no bind parameters).
async fn ddl(conn: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(conn).await?;
    Ok(())
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Counts the rows of each recorded table in a database and compares them with the
/// record; returns one line per table.
pub async fn check_tables(
    db: &Target,
    expected: &[TableRecord],
) -> JobResult<(bool, Vec<serde_json::Value>)> {
    let mut conn = db.connect().await?;
    let mut ok = true;
    let mut report = Vec::new();
    for table in expected {
        // The name is as pg_dump printed it: already quoted where it needs to be.
        let found: Result<i64, _> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM ONLY {}",
            table.name
        )))
        .fetch_one(&mut conn)
        .await;
        let (rows, error) = match found {
            Ok(n) => (Some(n as u64), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let matches = rows == Some(table.rows);
        ok &= matches;
        report.push(serde_json::json!({
            "table": table.name,
            "expected_rows": table.rows,
            "rows": rows,
            "ok": matches,
            "error": error,
        }));
    }
    let _ = conn.close().await;
    Ok((ok, report))
}

/// Replaces database `live` by the restored database `restored`: new connections to
/// `live` are refused, its sessions closed, and it is renamed `previous`; then `restored`
/// takes its name. If any step fails, `live` is put back as it was.
pub async fn swap(server: &Target, restored: &str, live: &str, previous: &str) -> JobResult<()> {
    let mut conn = admin_connect(server).await?;
    let live_q = quote_ident(live);
    ddl(&mut conn, format!("ALTER DATABASE {live_q} WITH ALLOW_CONNECTIONS false")).await
        .map_err(|e| {
            JobError::permanent(ErrorCode::DatabaseSwapFailed,
                format!(
                    "cannot close database {live} to new connections: {} (the source's user must own it); the live database is untouched",
                    server.scrub(&e.to_string())
                ),
            )
        })?;
    let mut renamed = Err(anyhow::anyhow!("not tried"));
    for attempt in 0..10 {
        let terminated: Result<Vec<bool>, _> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(live)
        .fetch_all(&mut conn)
        .await;
        if let Err(e) = terminated {
            renamed = Err(e.into());
            break;
        }
        match ddl(
            &mut conn,
            format!(
                "ALTER DATABASE {live_q} RENAME TO {}",
                quote_ident(previous)
            ),
        )
        .await
        {
            Ok(_) => {
                renamed = Ok(());
                break;
            }
            // 55006: still in use (a session not yet gone).
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("55006") => {
                renamed = Err(anyhow::anyhow!("{}", d.message()));
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
            Err(e) => {
                renamed = Err(e.into());
                break;
            }
        }
    }
    if let Err(e) = renamed {
        let _ = ddl(
            &mut conn,
            format!("ALTER DATABASE {live_q} WITH ALLOW_CONNECTIONS true"),
        )
        .await;
        return Err(JobError::permanent(ErrorCode::DatabaseInUse,
            format!(
                "database {live} could not be replaced: {}; its sessions could not all be closed (the source's user needs to own them or have pg_signal_backend). The live database is untouched",
                server.scrub(&format!("{e:#}"))
            ),
        ));
    }
    if let Err(e) = ddl(
        &mut conn,
        format!(
            "ALTER DATABASE {} RENAME TO {live_q}",
            quote_ident(restored)
        ),
    )
    .await
    {
        // Put the live database back.
        let _ = ddl(
            &mut conn,
            format!(
                "ALTER DATABASE {} RENAME TO {live_q}",
                quote_ident(previous)
            ),
        )
        .await;
        let _ = ddl(
            &mut conn,
            format!("ALTER DATABASE {live_q} WITH ALLOW_CONNECTIONS true"),
        )
        .await;
        return Err(JobError::permanent(ErrorCode::DatabaseSwapFailed,
            format!(
                "the restored database could not take the name {live}: {}; the live database is back in place",
                server.scrub(&e.to_string())
            ),
        ));
    }
    Ok(())
}

/// Gives the restored database the target's name when no database has it yet.
pub async fn swap_into_new(server: &Target, restored: &str, live: &str) -> JobResult<()> {
    let mut conn = admin_connect(server).await?;
    ddl(
        &mut conn,
        format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(restored),
            quote_ident(live)
        ),
    )
    .await
    .map_err(|e| {
        JobError::permanent(
            ErrorCode::DatabaseSwapFailed,
            format!(
                "the restored database could not be named {live}: {}",
                server.scrub(&e.to_string())
            ),
        )
    })?;
    Ok(())
}

/// Opens a database kept after a swap to connections again (when the user keeps it).
pub async fn reopen(server: &Target, name: &str) -> JobResult<()> {
    let mut conn = admin_connect(server).await?;
    ddl(
        &mut conn,
        format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            quote_ident(name)
        ),
    )
    .await?;
    Ok(())
}

/// Whether a database exists on the source's server.
pub async fn exists(server: &Target, name: &str) -> JobResult<bool> {
    let mut conn = admin_connect(server).await?;
    Ok(database_exists(&mut conn, name).await?)
}

/// A database name made of `stem` and `suffix`, within PostgreSQL's 63 bytes.
pub fn derived_name(stem: &str, suffix: &str) -> String {
    let mut stem = stem.to_string();
    while stem.len() + suffix.len() > 63 {
        stem.pop();
    }
    format!("{stem}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(dump: &str, step: usize) -> Vec<TableRecord> {
        let tables = Arc::new(Mutex::new(Vec::new()));
        let mut counter = CopyCounter::new(dump.as_bytes(), tables.clone());
        let mut buf = vec![0u8; step];
        while counter.read(&mut buf).unwrap() > 0 {}
        let out = tables.lock().unwrap().clone();
        out
    }

    #[test]
    fn counts_copy_rows_across_read_boundaries() {
        let dump = "SET x = 1;\n\
            COPY public.items (id, name) FROM stdin;\n1\ta\n2\tb\\nc\n3\t\\.x\n\\.\n\
            CREATE INDEX i ON public.items (id);\n\
            COPY \"Odd Schema\".\"T (x)\" (id) FROM stdin;\n\\.\n\
            COPY public.nocols FROM stdin;\n\n\n\\.\n";
        for step in [1, 2, 3, 7, 64, 4096] {
            let t = count(dump, step);
            assert_eq!(
                t,
                vec![
                    TableRecord {
                        name: "public.items".into(),
                        rows: 3
                    },
                    TableRecord {
                        name: "\"Odd Schema\".\"T (x)\"".into(),
                        rows: 0
                    },
                    TableRecord {
                        name: "public.nocols".into(),
                        rows: 2
                    },
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn tool_versions_parse() {
        let v =
            parse_tool_version("pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)\n").unwrap();
        assert_eq!((v.major, v.text.as_str()), (15, "15.19"));
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 17beta1")
                .unwrap()
                .major,
            17
        );
    }

    #[test]
    fn derived_names_fit() {
        let long = "a".repeat(63);
        assert_eq!(derived_name(&long, "_x").len(), 63);
        assert_eq!(derived_name("app", "_x"), "app_x");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
