//! The fault suite (issue 8), through the real services: after each fault, every
//! accepted job ends, no backup is listed complete with data missing, and every
//! successful backup restores byte-identical.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::tree::{assert_tree_matches, snapshot, write_noise, Node};
use strata_tests::{sigterm, Backend, Options, TestApp};

/// How many times longer the storm cases run: `STRATA_TEST_SOAK` (default 1, the fast
/// profile CI runs; e.g. 20 for a soak).
fn soak() -> usize {
    std::env::var("STRATA_TEST_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// Runs a backup to success; returns its id.
async fn backup_ok(app: &TestApp, source: &str, backup_type: &str) -> String {
    let accepted = app.backup(source, backup_type).await;
    app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    accepted["backup_id"].as_str().unwrap().to_string()
}

/// Fault 8: the PostgreSQL catalog is lost (every table gone, as with a fresh
/// database). `strata-worker rebuild-catalog` brings back the sources, the backups with
/// their chains and the chunk index from storage alone (S3, encrypted), and every
/// backup restores; new backups deduplicate against the rebuilt index.
#[tokio::test]
async fn a_lost_catalog_is_rebuilt_from_storage_and_every_backup_restores() {
    let mut app = TestApp::spawn(Options {
        backend: Backend::S3,
        env: vec![(
            "STRATA_ENCRYPTION_KEY".into(),
            "a master key for the catalog-loss test".into(),
        )],
        ..Options::default()
    })
    .await;
    let web = app.dir.path().join("web");
    let docs = app.dir.path().join("docs");
    std::fs::create_dir_all(web.join("assets")).unwrap();
    std::fs::create_dir_all(&docs).unwrap();
    write_noise(&web.join("assets/big.bin"), 1, 3_000_000);
    write_noise(&web.join("index.html"), 2, 5_000);
    write_noise(&docs.join("manual.pdf"), 3, 700_000);
    app.create_source("web", &web).await;
    let (status, docs_source) = app
        .post(
            "/api/v1/sources",
            json!({"name": "docs", "files": {"path": docs, "exclude": ["*.tmp"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{docs_source}");

    let mut trees: BTreeMap<String, BTreeMap<Vec<u8>, Node>> = BTreeMap::new();
    let full = backup_ok(&app, "web", "full").await;
    trees.insert(full.clone(), snapshot(&web));
    write_noise(&web.join("index.html"), 4, 6_000);
    write_noise(&web.join("new.txt"), 5, 1_000);
    let inc = backup_ok(&app, "web", "incremental").await;
    trees.insert(inc.clone(), snapshot(&web));
    std::fs::remove_file(web.join("new.txt")).unwrap();
    write_noise(&web.join("later.bin"), 6, 200_000);
    let diff = backup_ok(&app, "web", "differential").await;
    trees.insert(diff.clone(), snapshot(&web));
    let d1 = backup_ok(&app, "docs", "full").await;
    trees.insert(d1.clone(), snapshot(&docs));
    let (_, before) = app.get("/api/v1/backup/list?limit=100").await;

    // Every process stops; the catalog is lost.
    app.kill_api();
    for i in 0..app.process_count() {
        app.kill_worker(i);
    }
    let mut db = app.db().await;
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .execute(&mut db)
        .await
        .unwrap();
    drop(db);

    let (status, log) = app.run_worker_command(&["rebuild-catalog"], &[]);
    assert!(status.success(), "rebuild-catalog failed:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("rebuild-catalog done"))
        .unwrap_or_else(|| panic!("no report in the log:\n{log}"));
    println!("{line}");
    assert!(line.contains(r#""backups_added":4"#), "{line}");
    assert!(line.contains(r#""unreadable":[]"#), "{line}");

    app.restart_api().await;
    app.spawn_worker();
    // The catalog lists the same backups, with their types, parents and sizes.
    let (status, after) = app.get("/api/v1/backup/list?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{after}");
    let view = |list: &Value| -> Vec<(String, String, Value, Value, Value)> {
        let mut v: Vec<_> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["id"].as_str().unwrap().to_string(),
                    b["type"].as_str().unwrap().to_string(),
                    b["size"].clone(),
                    b["created_at"].clone(),
                    b["status"].clone(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(view(&after), view(&before));
    let (_, detail) = app.get(&format!("/api/v1/backup/{diff}")).await;
    assert_eq!(detail["parent_id"], json!(full), "{detail}");
    let (_, sources) = app.get("/api/v1/sources").await;
    let docs_again = sources["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "docs")
        .unwrap_or_else(|| panic!("{sources}"));
    assert_eq!(docs_again["id"], docs_source["id"]);
    assert_eq!(
        docs_again["files"]["exclude"],
        json!(["*.tmp"]),
        "{docs_again}"
    );

    // Every backup restores byte-identical.
    for (id, tree) in &trees {
        let target = app.dir.path().join(format!("restored-{id}"));
        let r = app.restore(id, &target).await;
        app.wait_success(r["job_id"].as_str().unwrap()).await;
        assert_tree_matches(tree, &target, id);
    }
    // The rebuilt chunk index deduplicates: an unchanged source stores almost nothing.
    let again = backup_ok(&app, "web", "full").await;
    let (_, b) = app.get(&format!("/api/v1/backup/{again}")).await;
    assert!(
        b["stored_size"].as_i64().unwrap() < 100_000,
        "a full backup of unchanged data stored {b}"
    );
}

/// Fault 1 (restore): the worker is killed (SIGKILL) part-way through a restore over an
/// existing directory. While nobody runs the job the target holds exactly its old
/// content; after the lease expires another worker finishes the job and the target
/// holds exactly the backup.
#[tokio::test]
async fn a_restore_killed_mid_way_leaves_the_target_whole_and_another_worker_finishes_it() {
    // Downloads limited to 16 MiB/s: the 96 MiB restore runs for seconds on any
    // machine, long enough to be interrupted part-way.
    let mut app = TestApp::spawn(Options {
        workers: 1,
        lease_secs: 3,
        env: vec![("STRATA_LIMIT_DOWNLOAD_KIB".into(), "16384".into())],
        ..Options::default()
    })
    .await;
    let src = app.create_big_source("big", 6, 300).await;
    let backup_id = backup_ok(&app, "big", "full").await;
    let wanted = snapshot(&src);

    // The target already holds something else: it must never be seen half-replaced.
    let target = app.dir.path().join("live");
    std::fs::create_dir_all(target.join("old")).unwrap();
    write_noise(&target.join("old/data.bin"), 9, 1_000_000);
    write_noise(&target.join("keep.txt"), 10, 1_000);
    let old = snapshot(&target);

    let r = app.restore(&backup_id, &target).await;
    let job_id = r["job_id"].as_str().unwrap().to_string();
    app.wait_progress(&job_id).await;
    app.kill_worker(0);
    assert_tree_matches(&old, &target, "the target while the restore is interrupted");

    app.spawn_worker();
    let job = app.wait_success(&job_id).await;
    assert!(job["attempts"].as_i64().unwrap() >= 2, "{job}");
    assert_tree_matches(&wanted, &target, "the target after the restore");
    // No staging or replaced directory (hidden, beside the target) is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

/// Fault 3: PostgreSQL drops every connection of the API and the workers
/// (`pg_terminate_backend`) again and again while backups are accepted and run. The
/// API answers again once reconnected, every accepted job ends `succeeded`, and every
/// backup restores byte-identical.
#[tokio::test]
async fn postgres_connections_dropped_mid_job_and_everything_completes() {
    let app = TestApp::spawn(Options {
        workers: 2,
        lease_secs: 3,
        ..Options::default()
    })
    .await;
    let mut sources = Vec::new();
    for s in 0..3u64 {
        let dir = app.dir.path().join(format!("s{s}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4 {
            write_noise(&dir.join(format!("f{i}.bin")), s * 10 + i, 24 * 1024 * 1024);
        }
        app.create_source(&format!("s{s}"), &dir).await;
        sources.push(dir);
    }
    let admin_url = strata_tests::admin_database_url();
    let killer = {
        let db_name = app.db_name.clone();
        tokio::spawn(async move {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
                .await
                .unwrap();
            let mut killed = 0i64;
            for _ in 0..12 * soak() {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                      WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&db_name)
                .fetch_one(&mut conn)
                .await
                .unwrap();
                killed += n;
                tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            }
            killed
        })
    };
    // Requests during the storm may fail (500) while the pools reconnect; each is
    // retried with the same Idempotency-Key, so a retry can never make a second job.
    let mut jobs = Vec::new();
    for s in 0..3 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let res = app
                .client
                .post(format!("{}/api/v1/backup/create", app.base))
                .header("Idempotency-Key", format!("storm-{s}"))
                .json(&json!({"source": format!("s{s}"), "type": "full"}))
                .send()
                .await;
            if let Ok(res) = res {
                let status = res.status();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                if status == StatusCode::ACCEPTED {
                    jobs.push((s, body));
                    break;
                }
                assert!(
                    status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{status} {body}"
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the API did not recover"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let killed = killer.await.unwrap();
    assert!(killed >= 12, "only {killed} connections were terminated");
    println!("connections terminated: {killed}");

    for (s, accepted) in &jobs {
        let job = app
            .wait_job(
                accepted["job_id"].as_str().unwrap(),
                std::time::Duration::from_secs(180),
            )
            .await;
        assert_eq!(job["status"], "succeeded", "{job}\n{}", app.logs());
        let id = accepted["backup_id"].as_str().unwrap();
        let target = app.dir.path().join(format!("restored-{id}"));
        let r = app.restore(id, &target).await;
        app.wait_success(r["job_id"].as_str().unwrap()).await;
        strata_tests::tree::assert_same_tree(&sources[*s], &target);
    }
    // Exactly one job per accepted request: none lost, none duplicated.
    let (_, list) = app.get("/api/v1/jobs?kind=backup").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list}");
}

/// Pack files of the local repository.
fn pack_files(app: &TestApp) -> std::collections::BTreeSet<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut std::collections::BTreeSet<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out);
            } else {
                out.insert(e.path());
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(&app.dir.path().join("data/repo/packs"), &mut out);
    out
}

/// Fault 6: one pack has a byte flipped, another is deleted. Verify names exactly the
/// two affected backups and their files, restores of those fail naming the files and
/// leave no target, and the unaffected backup still restores byte-identical.
#[tokio::test]
async fn a_corrupted_and_a_deleted_pack_are_reported_exactly_and_the_rest_restores() {
    let app = TestApp::spawn(Options::default()).await;
    let mut backups = Vec::new();
    let mut seen = pack_files(&app);
    for (name, seed) in [("alpha", 1u64), ("beta", 2), ("gamma", 3)] {
        let dir = app.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // 20 MiB: the first pack (packs close at 16 MiB) holds only this file's data.
        write_noise(&dir.join(format!("{name}.bin")), seed, 20 * 1024 * 1024);
        std::fs::write(dir.join("note.txt"), format!("{name} note")).unwrap();
        app.create_source(name, &dir).await;
        let id = backup_ok(&app, name, "full").await;
        let now = pack_files(&app);
        let mut new: Vec<_> = now.difference(&seen).cloned().collect();
        new.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
        assert!(!new.is_empty(), "{name} wrote no pack");
        seen = now;
        backups.push((name, id, dir, new));
    }
    // alpha: one byte flipped in its biggest pack; beta: its biggest pack deleted (both
    // hold only the big file's data).
    let damaged = &backups[0].3[0];
    let mut bytes = std::fs::read(damaged).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    std::fs::write(damaged, &bytes).unwrap();
    std::fs::remove_file(&backups[1].3[0]).unwrap();

    for (name, id, dir, _) in &backups {
        let (status, v) = app
            .post(&format!("/api/v1/backup/{id}/verify"), json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        let job = app
            .wait_job(
                v["job_id"].as_str().unwrap(),
                std::time::Duration::from_secs(60),
            )
            .await;
        let target = app.dir.path().join(format!("restored-{name}"));
        let r = app.restore(id, &target).await;
        let restore = app
            .wait_job(
                r["job_id"].as_str().unwrap(),
                std::time::Duration::from_secs(60),
            )
            .await;
        if *name == "gamma" {
            assert_eq!(job["status"], "succeeded", "{job}");
            assert_eq!(job["result"]["ok"], true, "{job}");
            assert_eq!(restore["status"], "succeeded", "{restore}");
            strata_tests::tree::assert_same_tree(dir, &target);
            continue;
        }
        assert_eq!(job["status"], "failed", "{name}: {job}");
        assert_eq!(job["error"]["code"], "backup_damaged", "{job}");
        let problems = job["result"]["problems"].as_array().unwrap();
        let code = if *name == "alpha" {
            "pack_damaged"
        } else {
            "pack_missing"
        };
        assert_eq!(problems.len(), 1, "{job}");
        assert_eq!(problems[0]["code"], code, "{job}");
        let files: Vec<&str> = problems[0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let big = format!("{name}.bin");
        assert!(files.contains(&big.as_str()), "{name}: {job}");
        assert!(!files.contains(&"note.txt"), "{job}");
        // The restore fails naming the file, and writes nothing at the target.
        assert_eq!(restore["status"], "failed", "{restore}");
        let msg = restore["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&big), "{name}: {msg}");
        assert!(
            !target.exists(),
            "{name}: a failed restore left {}",
            target.display()
        );
    }
}

/// A small tmpfs, unmounted when dropped (also when a test fails).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs (the test needs root)");
        Self(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Fault 5: the restore target's disk is too small. A restore that cannot fit fails
/// at once (`target_disk_full`, one attempt); one that fills the disk part-way (a
/// subset, so the size check cannot refuse it first) fails the same way. Either way
/// the live target keeps its old content and no partial copy is left beside it.
#[tokio::test]
async fn a_full_target_disk_fails_the_restore_clearly_and_leaves_the_target_untouched() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("big.bin"), 7, 20 * 1024 * 1024);
    write_noise(&src.join("small.txt"), 8, 1_000);
    app.create_source("src", &src).await;
    let id = backup_ok(&app, "src", "full").await;

    let disk = Tmpfs::mount(app.dir.path().join("small-disk"), "8m");
    let target = disk.0.join("live");
    std::fs::create_dir_all(&target).unwrap();
    write_noise(&target.join("old.bin"), 9, 100_000);
    let old = snapshot(&target);

    for include in [json!(null), json!(["big.bin"])] {
        let mut body = json!({"target": target});
        if !include.is_null() {
            body["include"] = include.clone();
        }
        let (status, r) = app
            .post(&format!("/api/v1/backup/restore/{id}"), body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{r}");
        let job = app
            .wait_job(
                r["job_id"].as_str().unwrap(),
                std::time::Duration::from_secs(60),
            )
            .await;
        assert_eq!(job["status"], "failed", "{include}: {job}");
        assert_eq!(job["error"]["code"], "target_disk_full", "{include}: {job}");
        assert_eq!(job["attempts"], 1, "retrying cannot help: {job}");
        let msg = job["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&target.display().to_string()), "{msg}");
        assert_tree_matches(&old, &target, "the target after a failed restore");
        let leftovers: Vec<_> = std::fs::read_dir(&disk.0)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "live")
            .collect();
        assert!(leftovers.is_empty(), "{include}: left behind {leftovers:?}");
    }
}

/// Fault 9: SIGTERM to a worker in the middle of a backup, and to an API replica in the
/// middle of a download. The worker stops taking jobs, hands its job back without
/// spending an attempt and exits well within its grace period; another worker finishes
/// the job. The API finishes the download it was serving (the archive is complete) and
/// then exits; the other replica keeps answering.
#[tokio::test]
async fn sigterm_lets_in_flight_work_finish_or_hands_it_back_and_nothing_is_lost() {
    // Uploads limited to 16 MiB/s: the backup runs for seconds, long enough to signal.
    let mut app = TestApp::spawn(Options {
        workers: 1,
        env: vec![("STRATA_LIMIT_UPLOAD_KIB".into(), "16384".into())],
        ..Options::default()
    })
    .await;
    let second = app.start_api().await;
    let src = app.create_big_source("big", 6, 500).await;
    let accepted = app.backup("big", "full").await;
    let job_id = accepted["job_id"].as_str().unwrap().to_string();
    let backup_id = accepted["backup_id"].as_str().unwrap().to_string();
    app.wait_progress(&job_id).await;
    let signalled = std::time::Instant::now();
    sigterm(app.process_pid(0).unwrap());
    let status = app
        .wait_worker_exit(0, std::time::Duration::from_secs(30))
        .await
        .expect("the worker did not exit within 30 s of SIGTERM");
    assert!(status.success(), "{status}");
    let stopped_in = signalled.elapsed();
    let job = app.job(&job_id).await;
    assert_eq!(job["status"], "queued", "handed back: {job}");
    assert_eq!(
        job["attempts"], 0,
        "a released job keeps its attempts: {job}"
    );
    app.spawn_worker();
    app.wait_success(&job_id).await;
    println!("worker stopped {stopped_in:?} after SIGTERM");

    // A download in flight when its API replica gets SIGTERM completes.
    let res = app
        .client
        .get(format!("{}/api/v1/backup/{backup_id}/download", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut res = res;
    let mut tar_bytes = Vec::new();
    let first = res.chunk().await.unwrap().expect("a first block");
    tar_bytes.extend_from_slice(&first);
    sigterm(app.api_pid().unwrap());
    while let Some(chunk) = res
        .chunk()
        .await
        .expect("the download was cut by the shutdown")
    {
        tar_bytes.extend_from_slice(&chunk);
    }
    let mut archive = tar::Archive::new(std::io::Cursor::new(tar_bytes));
    let mut files = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        if entry.header().entry_type().is_file() {
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            let name = path.file_name().unwrap();
            assert_eq!(content, std::fs::read(src.join(name)).unwrap(), "{path:?}");
            files += 1;
        }
    }
    assert_eq!(files, 6);
    // The signalled API is gone; the other replica answers.
    app.base = second;
    let (status, _) = app.get("/api/v1/health").await;
    assert_eq!(status, StatusCode::OK);
}

/// Closes, through the broker's management (`rabbitmqctl close_connection`), every
/// connection whose name carries `queue` (this test's API relay and workers); returns
/// how many it closed.
fn close_broker_connections(queue: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("running rabbitmqctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut closed = 0;
    // One line per connection: its Erlang pid, a tab, its client properties.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((pid, props)) = line.split_once('\t') else {
            continue;
        };
        if !props.contains(queue) {
            continue;
        }
        let done = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "closed by the fault suite"])
            .output()
            .expect("running rabbitmqctl");
        if done.status.success() {
            closed += 1;
        } else {
            eprintln!(
                "closing {pid}: {}{}",
                String::from_utf8_lossy(&done.stdout),
                String::from_utf8_lossy(&done.stderr)
            );
        }
    }
    closed
}

/// Fault 2: the broker closes the API's and the workers' connections (its management
/// tool, as an operator or a broker restart would) again and again while backups are
/// accepted and run. The API keeps accepting (the outbox holds the messages), the
/// workers reconnect, and every job succeeds exactly once.
#[tokio::test]
async fn broker_connections_closed_while_jobs_are_created_and_run_all_complete_once() {
    let app = TestApp::spawn(Options {
        workers: 2,
        lease_secs: 5,
        ..Options::default()
    })
    .await;
    let mut dirs = Vec::new();
    for s in 0..4u64 {
        let dir = app.dir.path().join(format!("s{s}"));
        std::fs::create_dir_all(&dir).unwrap();
        write_noise(&dir.join("data.bin"), 40 + s, 8 * 1024 * 1024);
        app.create_source(&format!("s{s}"), &dir).await;
        dirs.push(dir);
    }
    let mut closed = 0;
    let mut jobs = Vec::new();
    let rounds = 2 * soak();
    for round in 0..rounds {
        for s in 0..4 {
            let accepted = app.backup(&format!("s{s}"), "full").await;
            jobs.push((s, accepted));
        }
        // Once the relay or a worker is connected (again), the broker closes them all.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let n = close_broker_connections(&app.queue);
            if n > 0 {
                println!("round {round}: the broker closed {n} connections");
                closed += n;
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no connection to close\n{}",
                app.logs()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        // Each round's jobs run to their end before the next round asks for more.
        if round + 1 < rounds {
            for (_, accepted) in &jobs {
                app.wait_job(
                    accepted["job_id"].as_str().unwrap(),
                    std::time::Duration::from_secs(120),
                )
                .await;
            }
        }
    }
    println!("broker connections closed: {closed}");
    for (s, accepted) in &jobs {
        let job = app
            .wait_job(
                accepted["job_id"].as_str().unwrap(),
                std::time::Duration::from_secs(120),
            )
            .await;
        assert_eq!(
            job["status"],
            "succeeded",
            "{job} (source s{s})\n{}",
            app.logs()
        );
    }
    let (_, list) = app.get("/api/v1/jobs?kind=backup&limit=200").await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        4 * rounds,
        "{list}"
    );
    // The last backup of each source restores identical.
    for (s, accepted) in jobs.iter().skip(jobs.len() - 4) {
        let id = accepted["backup_id"].as_str().unwrap();
        let target = app.dir.path().join(format!("restored-{id}"));
        let r = app.restore(id, &target).await;
        app.wait_success(r["job_id"].as_str().unwrap()).await;
        strata_tests::tree::assert_same_tree(&dirs[*s], &target);
    }
}

/// Ctrl-C (SIGINT, as `scripts/run` in a terminal gets) stops the API as gracefully as
/// SIGTERM: it exits 0 after saying so, without actix's "forced shutdown".
#[tokio::test]
async fn sigint_stops_the_api_gracefully() {
    let mut app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (base, process) = app.start_api_with(&[]).await;
    let res = reqwest::get(format!("{base}/livez")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut child = process.into_inner();
    // SAFETY: signalling a child process this test started.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}\n{}", app.logs());
    let logs = app.full_logs();
    assert!(logs.contains("finishing the requests in flight"), "{logs}");
    assert!(!logs.contains("forced shutdown"), "{logs}");
}
