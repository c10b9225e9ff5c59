//! Test support: spawn the real `strata-api` and `strata-worker` binaries against real
//! PostgreSQL, RabbitMQ and storage, with a database, a queue and directories of their own
//! per test, so tests run in parallel without interfering.

pub mod downloads;
pub mod faulty_proxy;
pub mod otlp;
pub mod pg;
pub mod raw_http;
pub mod tree;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Where the services the tests use are (defaults: this machine's).
pub fn admin_database_url() -> String {
    std::env::var("STRATA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn amqp_url() -> String {
    std::env::var("STRATA_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The S3 endpoint `scripts/test` starts. S3 tests fail loudly without it: never skip.
pub fn s3_endpoint() -> String {
    std::env::var("STRATA_TEST_S3_ENDPOINT")
        .expect("STRATA_TEST_S3_ENDPOINT is not set: run scripts/test, which starts the S3 server")
}

pub const S3_ACCESS_KEY: &str = "strata-test";
pub const S3_SECRET_KEY: &str = "strata-test-secret";

pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var("STRATA_TEST_BIN_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug")
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p strata-api -p strata-worker`; scripts/test does)",
        path.display()
    );
    path
}

/// Which storage backend a test app uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
}

/// How to start a test app.
#[derive(Debug, Clone)]
pub struct Options {
    pub backend: Backend,
    pub workers: usize,
    pub lease_secs: u64,
    /// Extra environment for every process.
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            workers: 1,
            lease_secs: 60,
            env: Vec::new(),
        }
    }
}

/// A running Strata: one API, some workers, their own database, queue and storage.
pub struct TestApp {
    pub base: String,
    /// Sends the bootstrap admin key with every request.
    pub client: reqwest::Client,
    /// The bootstrap admin API key.
    pub admin_key: String,
    pub db_name: String,
    pub database_url: String,
    pub queue: String,
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    api: Option<Child>,
    workers: Vec<Option<Child>>,
    log_seq: usize,
    /// The sequence number of the first API process (names its address files).
    api_seq: usize,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// An HTTP client that sends `key` as a bearer credential with every request.
pub fn authed_client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // Below the API's 5 s keep-alive: an idle connection is dropped by the client
        // before the server closes it, so no request races a closing connection.
        .pool_idle_timeout(Duration::from_secs(2))
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// Sends SIGTERM to a process the test started (a graceful stop).
pub fn sigterm(pid: u32) {
    // SAFETY: sending a signal to a child process this test started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM {pid}");
}

/// Creates a fresh database and returns its URL.
pub async fn create_database(name: &str) -> String {
    let admin = PgConnectOptions::from_str(&admin_database_url()).expect("admin URL");
    let mut conn = admin.connect().await.expect("connecting to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("creating the test database");
    conn.close().await.ok();
    url_with_db(&admin_database_url(), name)
}

fn url_with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{db}")
}

impl TestApp {
    /// Starts an API and `opts.workers` workers and waits until the API answers.
    pub async fn spawn(opts: Options) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_name = unique("strata_test");
        let database_url = create_database(&db_name).await;
        let queue = unique("strata.test");
        let admin_key = strata_auth::keys::generate().token;
        let mut env: Vec<(String, String)> = vec![
            ("STRATA_BOOTSTRAP_ADMIN_KEY".into(), admin_key.clone()),
            ("STRATA_DATABASE_URL".into(), database_url.clone()),
            ("STRATA_AMQP_URL".into(), amqp_url()),
            ("STRATA_QUEUE".into(), queue.clone()),
            (
                "STRATA_DATA_DIR".into(),
                dir.path().join("data").display().to_string(),
            ),
            ("STRATA_BIND".into(), "127.0.0.1:0".into()),
            ("STRATA_METRICS_BIND".into(), "127.0.0.1:0".into()),
            ("STRATA_JOB_LEASE_SECS".into(), opts.lease_secs.to_string()),
            ("STRATA_SWEEP_INTERVAL_MS".into(), "500".into()),
            ("RUST_LOG".into(), "info,sqlx=warn".into()),
        ];
        if opts.backend == Backend::S3 {
            let bucket = format!(
                "strata-it-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..20]
            );
            let s3 = strata_storage::S3Options {
                endpoint: Some(s3_endpoint()),
                region: Some("us-east-1".into()),
                access_key_id: Some(S3_ACCESS_KEY.into()),
                secret_access_key: Some(S3_SECRET_KEY.into()),
                force_path_style: true,
                ..Default::default()
            };
            strata_storage::s3::S3Storage::new(&bucket, "", &s3)
                .await
                .expect("S3 client")
                .create_bucket_if_missing()
                .await
                .expect("creating the test bucket");
            env.extend([
                ("STRATA_STORAGE".into(), format!("s3://{bucket}/repo")),
                ("STRATA_S3_ENDPOINT".into(), s3_endpoint()),
                ("STRATA_S3_REGION".into(), "us-east-1".into()),
                ("STRATA_S3_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
                ("STRATA_S3_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
                ("STRATA_S3_FORCE_PATH_STYLE".into(), "true".into()),
            ]);
        }
        env.extend(opts.env.iter().cloned());
        let mut app = Self {
            base: String::new(),
            client: authed_client(&admin_key),
            admin_key,
            db_name,
            database_url,
            queue,
            dir,
            env,
            api: None,
            workers: Vec::new(),
            log_seq: 0,
            api_seq: 1,
        };
        app.base = app.start_api().await;
        for _ in 0..opts.workers {
            app.spawn_worker();
        }
        app
    }

    fn command(&mut self, binary: &str, extra: &[(&str, &str)]) -> Command {
        self.log_seq += 1;
        let log = self
            .dir
            .path()
            .join(format!("{binary}-{}.log", self.log_seq));
        let mut cmd = Command::new(bin(binary));
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"));
        cmd
    }

    /// Starts an API process (another replica when one runs); returns its base URL.
    pub async fn start_api(&mut self) -> String {
        let (base, child) = self.start_api_with(&[]).await;
        let child = child.into_inner();
        if self.api.is_none() {
            self.api = Some(child);
        } else {
            self.workers.push(Some(child));
        }
        base
    }

    /// Starts an API process with extra environment and waits until it listens; the
    /// caller owns the process (killed when the handle is dropped).
    pub async fn start_api_with(&mut self, extra: &[(&str, &str)]) -> (String, OwnedProcess) {
        let pending = self.launch_api(extra);
        let (base, child) = self.api_ready(pending).await;
        (base, OwnedProcess(Some(child)))
    }

    /// Launches an API process without waiting for it.
    pub fn launch_api(&mut self, extra: &[(&str, &str)]) -> (PathBuf, Child) {
        let addr_file = self
            .dir
            .path()
            .join(format!("api-addr-{}", self.log_seq + 1));
        let addr = addr_file.display().to_string();
        let metrics = format!("{addr}.metrics");
        let mut all: Vec<(&str, &str)> = vec![
            ("STRATA_ADDR_FILE", addr.as_str()),
            ("STRATA_METRICS_ADDR_FILE", metrics.as_str()),
        ];
        all.extend_from_slice(extra);
        let child = self
            .command("strata-api", &all)
            .spawn()
            .expect("starting strata-api");
        (addr_file, child)
    }

    /// Waits until a launched API listens; returns its base URL.
    pub async fn api_ready(&self, (addr_file, mut child): (PathBuf, Child)) -> (String, Child) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let base = loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                if !a.is_empty() {
                    break format!("http://{a}");
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("strata-api exited early ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "strata-api did not start:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        (base, child)
    }

    /// Starts one more worker; returns its index.
    pub fn spawn_worker(&mut self) -> usize {
        self.spawn_worker_with(&[])
    }

    /// Starts one more worker with extra environment; returns its index.
    pub fn spawn_worker_with(&mut self, extra: &[(&str, &str)]) -> usize {
        let index = self.workers.len();
        let metrics = self.worker_metrics_file(index).display().to_string();
        let mut all: Vec<(&str, &str)> = vec![("STRATA_METRICS_ADDR_FILE", metrics.as_str())];
        all.extend_from_slice(extra);
        let child = self
            .command("strata-worker", &all)
            .spawn()
            .expect("starting strata-worker");
        self.workers.push(Some(child));
        index
    }

    /// Where worker `index` writes its metrics listener's address (not `*.metrics`,
    /// which [`TestApp::metrics`] takes for an API's).
    fn worker_metrics_file(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("worker-{index}.metrics-addr"))
    }

    /// The Prometheus text of worker `index`'s metrics listener (its index from
    /// [`TestApp::spawn_worker`]; the workers of [`TestApp::spawn`] are 0, 1, …); waits up
    /// to 30 s for the worker to listen.
    pub async fn worker_metrics(&self, index: usize) -> String {
        let file = self.worker_metrics_file(index);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&file) {
                if !addr.is_empty() {
                    if let Ok(res) = reqwest::get(format!("http://{addr}/metrics")).await {
                        assert!(
                            res.status().is_success(),
                            "worker metrics: {}",
                            res.status()
                        );
                        return res.text().await.expect("metrics body");
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "worker {index} does not answer on its metrics listener:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to `timeout`) for a worker to exit by itself; returns its exit status.
    pub async fn wait_worker_exit(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.workers[index].as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Runs `strata-worker ARGS` to completion with the app's environment plus `extra`;
    /// returns its exit status and its log.
    pub fn run_worker_command(
        &mut self,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> (std::process::ExitStatus, String) {
        let seq = self.log_seq + 1;
        let status = self
            .command("strata-worker", extra)
            .args(args)
            .status()
            .expect("running strata-worker");
        let log = std::fs::read_to_string(self.dir.path().join(format!("strata-worker-{seq}.log")))
            .unwrap_or_default();
        (status, log)
    }

    /// Runs `strata-api ARGS` with this app's environment and waits for it; returns its
    /// exit status, standard output and log (standard error).
    pub fn run_api_command(
        &mut self,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> (std::process::ExitStatus, String, String) {
        self.run_api_command_with_input(args, extra, "")
    }

    /// [`Self::run_api_command`] with `input` on its standard input (a pipe, not a
    /// terminal).
    pub fn run_api_command_with_input(
        &mut self,
        args: &[&str],
        extra: &[(&str, &str)],
        input: &str,
    ) -> (std::process::ExitStatus, String, String) {
        use std::io::Write as _;
        let seq = self.log_seq + 1;
        let mut child = self
            .command("strata-api", extra)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running strata-api");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("writing stdin");
        drop(stdin);
        let out = child.wait_with_output().expect("waiting for strata-api");
        let log = std::fs::read_to_string(self.dir.path().join(format!("strata-api-{seq}.log")))
            .unwrap_or_default();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            log,
        )
    }

    /// Kills a worker with SIGKILL: no cleanup, as in a crash.
    pub fn kill_worker(&mut self, index: usize) {
        if let Some(mut child) = self.workers[index].take() {
            child.kill().expect("SIGKILL");
            child.wait().ok();
        }
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for p in entries {
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!("==== {}\n", p.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(path, req).await
    }

    /// `POST path` with an `Idempotency-Key` header.
    pub async fn post_with_key(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .json(&body);
        self.send(path, req).await
    }

    /// Sends a request; the status and the body (JSON, else a string, `null` if empty).
    async fn send(&self, path: &str, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) => panic!("{path}: request failed: {e}\n{}", self.logs()),
        };
        let status = res.status();
        let text = res.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// Every process's whole log.
    pub fn full_logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "log") {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates a directory source; returns its JSON.
    pub async fn create_source(&self, name: &str, path: &Path) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/sources",
                serde_json::json!({ "name": name, "files": { "path": path } }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Asks for a backup; returns the `202` body.
    pub async fn backup(&self, source: &str, backup_type: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/backup/create",
                serde_json::json!({ "source": source, "type": backup_type }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    /// Asks for a restore; returns the `202` body.
    pub async fn restore(&self, backup_id: &str, target: &Path) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/v1/backup/restore/{backup_id}"),
                serde_json::json!({ "target": target }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    pub async fn job(&self, job_id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/jobs/{job_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// A source `name` over `parts` files of 16 MiB of noise (seeds `seed`, `seed + 1`…),
    /// in a directory of that name: a backup or restore of it under a bandwidth limit
    /// runs for seconds, long enough to be interrupted part-way. Returns the directory.
    pub async fn create_big_source(&self, name: &str, parts: u64, seed: u64) -> PathBuf {
        let src = self.dir.path().join(name);
        std::fs::create_dir_all(&src).expect("source directory");
        for i in 0..parts {
            tree::write_noise(
                &src.join(format!("part-{i:02}.bin")),
                seed + i,
                16 * 1024 * 1024,
            );
        }
        self.create_source(name, &src).await;
        src
    }

    /// Polls a job until it reaches a final status.
    pub async fn wait_job(&self, job_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(job_id).await;
            if matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} did not finish in {timeout:?}: {job}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls a job until it runs and has made visible progress (to interrupt it part-way);
    /// panics if it ends first: the data set of the test is then too small.
    pub async fn wait_progress(&self, job_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.job(job_id).await;
            if job["status"] == "running" && job["progress"]["bytes_done"].as_i64() > Some(0) {
                return job;
            }
            assert!(
                !matches!(
                    job["status"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                ),
                "the job ended before it could be interrupted; make the data set bigger: {job}"
            );
            assert!(Instant::now() < deadline, "{job}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls a job until it succeeds; panics with the logs otherwise.
    pub async fn wait_success(&self, job_id: &str) -> Value {
        let job = self.wait_job(job_id, Duration::from_secs(180)).await;
        assert_eq!(job["status"], "succeeded", "{job}\n{}", self.logs());
        job
    }

    /// A connection to this app's own database.
    pub async fn db(&self) -> sqlx::PgConnection {
        PgConnectOptions::from_str(&self.database_url)
            .expect("URL")
            .connect()
            .await
            .expect("connecting to the test database")
    }
}

/// A process a test started and owns: killed (and reaped) when dropped, so a test that
/// ends or fails leaves none running.
pub struct OwnedProcess(Option<Child>);

impl OwnedProcess {
    /// The process, no longer killed on drop (its new owner's business).
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("an owned process")
    }
}

impl std::ops::Deref for OwnedProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("an owned process")
    }
}

impl std::ops::DerefMut for OwnedProcess {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("an owned process")
    }
}

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for child in self
            .workers
            .iter_mut()
            .chain(std::iter::once(&mut self.api))
        {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let db = self.db_name.clone();
        let queue = self.queue.clone();
        // Clean up the database and queues from a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = PgConnectOptions::from_str(&admin_database_url())
                    .expect("URL")
                    .connect()
                    .await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
                delete_queues(&queue).await;
            });
        })
        .join();
    }
}

/// Removes a test's queues and exchange from the broker.
pub async fn delete_queues(queue: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(conn) =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        let topo = strata_jobs::queue::Topology::new(queue);
        for q in [&topo.queue, &topo.dead_letter_queue] {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = ch
            .exchange_delete(
                topo.dead_letter_exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

impl TestApp {
    /// The process id of the first API process, to watch its memory.
    pub fn api_pid(&self) -> Option<u32> {
        self.api.as_ref().map(Child::id)
    }

    /// How many extra processes (workers and API replicas) were started: the index of the
    /// newest is one less ([`TestApp::kill_worker`] takes it).
    pub fn process_count(&self) -> usize {
        self.workers.len()
    }

    /// The process id of an extra process (worker or API replica).
    pub fn process_pid(&self, index: usize) -> Option<u32> {
        self.workers[index].as_ref().map(Child::id)
    }

    /// Kills the first API process with SIGKILL (a crash, or a node lost).
    pub fn kill_api(&mut self) {
        if let Some(mut child) = self.api.take() {
            child.kill().expect("SIGKILL");
            child.wait().ok();
        }
    }

    /// Starts a new first API process (after [`TestApp::kill_api`]); requests go to it.
    pub async fn restart_api(&mut self) {
        assert!(self.api.is_none(), "the first API still runs");
        let seq = self.log_seq + 1;
        let (base, child) = self.start_api_with(&[]).await;
        let child = child.into_inner();
        self.api = Some(child);
        self.base = base;
        self.api_seq = seq;
    }

    /// The Prometheus text of a live API's metrics listener: the first API's, else any
    /// replica's that answers (each reports the same schedule figures).
    pub async fn metrics(&self) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("test dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "metrics"))
            .collect();
        let first = self
            .dir
            .path()
            .join(format!("api-addr-{}.metrics", self.api_seq));
        files.sort_by_key(|p| *p != first);
        for file in files {
            let Ok(addr) = std::fs::read_to_string(&file) else {
                continue;
            };
            if let Ok(res) = reqwest::get(format!("http://{addr}/metrics")).await {
                return res.text().await.expect("metrics body");
            }
        }
        panic!("no API answers on its metrics listener");
    }
}
