//! Where restores may write and sources may read (issue 16, items 2, 3 and 11): a
//! restore never replaces Strata's own storage or a system directory, a source never
//! reads a pseudo file system, and a restore over the live source keeps what backups
//! leave out and lists what it removes.

use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::tree::{assert_same_tree, write_noise};
use strata_tests::{Options, TestApp};

fn id(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_string()
}

/// Runs a backup to success; returns its id.
async fn backup_ok(app: &TestApp, source: &str) -> String {
    let accepted = app.backup(source, "full").await;
    app.wait_success(&id(&accepted, "job_id")).await;
    id(&accepted, "backup_id")
}

/// A source `src` with a few files, backed up once; returns its directory and the backup.
async fn source_with_backup(app: &TestApp) -> (PathBuf, String) {
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    write_noise(&src.join("a.bin"), 1, 300_000);
    std::fs::write(src.join("docs/readme.txt"), "hello\n".repeat(100)).unwrap();
    app.create_source("src", &src).await;
    let backup = backup_ok(app, "src").await;
    (src, backup)
}

/// Asserts a `400` refusal with this code and field.
fn assert_refused(status: StatusCode, body: &Value, code: &str, field: &str, what: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert_eq!(body["error"]["field"], field, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

/// Bytes under `dir`, every file counted.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let md = e.metadata().unwrap();
        total += if md.is_dir() { du(&e.path()) } else { md.len() };
    }
    total
}

async fn health(app: &TestApp) -> Value {
    let (status, body) = app.get("/api/v1/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Item 2, the exact request that wiped the repository (122 MB → 8 KB) while the catalog
/// and health said all was well.
#[tokio::test]
async fn restoring_into_the_repository_is_refused_and_the_repository_stays_whole() {
    let app = TestApp::spawn(Options::default()).await;
    let (src, backup) = source_with_backup(&app).await;
    let repo = app.dir.path().join("data/repo");
    let before = du(&repo);

    let (status, body) = app
        .post(
            &format!("/api/v1/backup/{backup}/restore"),
            json!({ "target": repo }),
        )
        .await;
    assert_refused(status, &body, "target_not_allowed", "target", "data/repo");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("repository"),
        "{body}"
    );

    assert_eq!(du(&repo), before, "the repository changed");
    let h = health(&app).await;
    assert_eq!(h["canBackup"], true, "{h}");
    // Every backup still restores byte-identical.
    let out = app.dir.path().join("out");
    let r = app.restore(&backup, &out).await;
    app.wait_success(&id(&r, "job_id")).await;
    assert_same_tree(&src, &out);
}

/// Item 2, an attacker's spellings: the data directory and the repository however
/// written or reached, what contains them, and the system directories.
#[tokio::test]
async fn restore_targets_that_touch_strata_or_the_system_are_refused_however_spelled() {
    let mut app = TestApp::spawn(Options::default()).await;
    let (_src, backup) = source_with_backup(&app).await;
    // No worker from here on: nothing accepted by mistake could run.
    app.kill_worker(0);
    let data = app.dir.path().join("data");
    let d = data.display().to_string();
    let tmp = app.dir.path().display().to_string();
    std::fs::create_dir_all(app.dir.path().join("links")).unwrap();
    symlink(&data, app.dir.path().join("links/to-data")).unwrap();
    symlink("/", app.dir.path().join("links/to-root")).unwrap();
    symlink("../data/repo", app.dir.path().join("links/relative")).unwrap();
    let unique = uuid::Uuid::new_v4().simple().to_string();

    let refused_targets: Vec<String> = vec![
        format!("{d}/repo"),
        format!("{d}/repo/"),
        format!("{d}//repo"),
        format!("{d}/./repo"),
        format!("{d}/repo/packs"),
        format!("{d}/repo/snapshots/new"),
        d.clone(),
        format!("{d}/elsewhere"),
        // Contains the data directory.
        tmp.clone(),
        // A symlinked parent is judged where it lands.
        format!("{tmp}/links/to-data/repo"),
        format!("{tmp}/links/relative"),
        format!("{tmp}/links/to-root/etc/strata-{unique}"),
        // The system.
        "/proc".into(),
        "/proc/self".into(),
        "/sys/kernel".into(),
        "/dev".into(),
        format!("/dev/shm/strata-{unique}"),
        format!("/boot/strata-{unique}"),
        "/etc".into(),
        format!("/etc/strata-{unique}"),
        format!("/usr/local/strata-{unique}"),
        format!("/bin/strata-{unique}"),
        "/sbin".into(),
        format!("/lib/strata-{unique}"),
        "/lib64".into(),
        format!("/var/lib/strata-{unique}"),
        // Contains /var/lib.
        "/var".into(),
    ];
    for target in &refused_targets {
        let (status, body) = app
            .post(
                &format!("/api/v1/backup/{backup}/restore"),
                json!({ "target": target }),
            )
            .await;
        assert_refused(status, &body, "target_not_allowed", "target", target);
    }
    // `..` is refused as such, whatever it would reach.
    for target in ["/proc/../proc", &format!("{d}/../data/repo"), "/tmp/../etc"] {
        let (status, body) = app
            .post(
                &format!("/api/v1/backup/{backup}/restore"),
                json!({ "target": target }),
            )
            .await;
        assert_refused(status, &body, "invalid_path", "target", target);
    }
    // The object form names its part.
    let (status, body) = app
        .post(
            &format!("/api/v1/backup/{backup}/restore"),
            json!({ "target": { "files": format!("{d}/repo") } }),
        )
        .await;
    assert_refused(
        status,
        &body,
        "target_not_allowed",
        "target.files",
        "object",
    );
    // No job was made, and nothing was written next to or inside the data directory.
    let (_, jobs) = app.get("/api/v1/jobs?kind=restore").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 0, "{jobs}");
    let beside: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".strata-restore"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
}

/// Item 2: an operator who really means a system path lists it in
/// `STRATA_RESTORE_ALLOW_PATHS`; the data directory stays refused even then.
#[tokio::test]
async fn a_system_path_listed_by_the_operator_is_restored_into() {
    let shm = PathBuf::from(format!(
        "/dev/shm/strata-it-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&shm).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(shm.clone());
    // Without the setting: refused.
    let app = TestApp::spawn(Options::default()).await;
    let (_, backup) = source_with_backup(&app).await;
    let (status, body) = app
        .post(
            &format!("/api/v1/backup/{backup}/restore"),
            json!({ "target": shm.join("out") }),
        )
        .await;
    assert_refused(status, &body, "target_not_allowed", "target", "/dev/shm");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("STRATA_RESTORE_ALLOW_PATHS"),
        "{body}"
    );
    drop(app);

    let app = TestApp::spawn(Options {
        env: vec![(
            "STRATA_RESTORE_ALLOW_PATHS".into(),
            format!("/nonexistent/x:{}", shm.display()),
        )],
        ..Options::default()
    })
    .await;
    let (src, backup) = source_with_backup(&app).await;
    let r = app.restore(&backup, &shm.join("out")).await;
    app.wait_success(&id(&r, "job_id")).await;
    assert_same_tree(&src, &shm.join("out"));
    // Allowing a path never opens Strata's own storage.
    let (status, body) = app
        .post(
            &format!("/api/v1/backup/{backup}/restore"),
            json!({ "target": app.dir.path().join("data/repo") }),
        )
        .await;
    assert_refused(status, &body, "target_not_allowed", "target", "data/repo");
}

/// Item 2, the worker's own check: the target's parent becomes a symlink into the data
/// directory after the API accepted the restore. The job fails at once, permanently,
/// and writes nothing.
#[tokio::test]
async fn a_target_redirected_into_the_data_directory_after_acceptance_fails_in_the_worker() {
    let mut app = TestApp::spawn(Options::default()).await;
    let (_src, backup) = source_with_backup(&app).await;
    app.kill_worker(0);
    let parent = app.dir.path().join("parent");
    std::fs::create_dir_all(&parent).unwrap();
    let r = app.restore(&backup, &parent.join("repo")).await;
    // Swapped for a symlink to the data directory: `parent/repo` is now the repository.
    std::fs::remove_dir(&parent).unwrap();
    symlink(app.dir.path().join("data"), &parent).unwrap();
    let data = app.dir.path().join("data");
    let before = du(&data);
    app.spawn_worker();
    let job = app
        .wait_job(&id(&r, "job_id"), Duration::from_secs(60))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "target_not_allowed", "{job}");
    assert_eq!(job["attempts"], 1, "a refusal is not retried: {job}");
    assert_eq!(du(&data), before, "the data directory changed");
    let names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".strata-restore")),
        "{names:?}"
    );
    let h = health(&app).await;
    assert_eq!(h["status"], "ok", "{h}");
}

/// Item 2 for SQLite files: a database restore may not replace a file of the repository
/// or a system file either.
#[tokio::test]
async fn sqlite_restore_targets_follow_the_same_rules() {
    let app = TestApp::spawn(Options::default()).await;
    let db = app.dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")
            .unwrap();
    }
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "lite", "database": { "sqlite": db } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let backup = backup_ok(&app, "lite").await;
    let config = app.dir.path().join("data/repo/config");
    let before = std::fs::read(&config).unwrap();
    for (body, field) in [
        (json!({ "target": config }), "target"),
        (json!({ "target": "/etc/strata-test.db" }), "target"),
        (
            json!({ "target": { "database": config } }),
            "target.database",
        ),
    ] {
        let (status, answer) = app
            .post(&format!("/api/v1/backup/{backup}/restore"), body.clone())
            .await;
        assert_refused(
            status,
            &answer,
            "target_not_allowed",
            field,
            &body.to_string(),
        );
    }
    assert_eq!(std::fs::read(&config).unwrap(), before);
}

/// Item 3, the exact request: a source at `/proc/self` grew the worker to 6.4 GB. Sources
/// in `/proc`, `/sys`, `/dev` or Strata's storage are refused, however reached, through
/// the API and the configuration import alike.
#[tokio::test]
async fn sources_in_pseudo_file_systems_or_strata_storage_are_refused() {
    let app = TestApp::spawn(Options::default()).await;
    let data = app.dir.path().join("data");
    symlink("/proc/self", app.dir.path().join("me")).unwrap();
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "proc", "files": { "path": "/proc/self" } }),
        )
        .await;
    assert_refused(
        status,
        &body,
        "source_not_allowed",
        "files.path",
        "/proc/self",
    );

    for path in [
        "/proc".to_string(),
        "/proc/self/root/proc".into(),
        "/sys/kernel".into(),
        "/dev".into(),
        "/dev/shm".into(),
        app.dir.path().join("me").display().to_string(),
        data.display().to_string(),
        data.join("repo").display().to_string(),
        format!("{}/repo/packs/", data.display()),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/sources",
                json!({ "name": "bad", "files": { "path": path } }),
            )
            .await;
        assert_refused(status, &body, "source_not_allowed", "files.path", &path);
    }
    for path in ["/dev/zero", "/proc/self/environ"] {
        let (status, body) = app
            .post(
                "/api/v1/sources",
                json!({ "name": "bad", "database": { "sqlite": path } }),
            )
            .await;
        assert_refused(status, &body, "source_not_allowed", "database.sqlite", path);
    }
    // The configuration import applies the same rules, entry by entry.
    let (status, report) = app
        .post(
            "/api/v1/config/import",
            json!({ "config": { "sources": {
                "procfs": { "files": { "path": "/proc/self", "exclude": [] } },
                "repo": { "files": { "path": data.join("repo"), "exclude": [] } },
                "fine": { "files": { "path": app.dir.path().join("fine"), "exclude": [] } },
            } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{report}");
    for f in failed {
        assert!(
            f["error"].as_str().unwrap().contains("source_not_allowed"),
            "{report}"
        );
    }
    let (_, sources) = app.get("/api/v1/sources").await;
    let names: Vec<&str> = sources["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fine"], "{sources}");
}

/// Item 3, the worker's own check: a source directory replaced by a symlink into `/proc`
/// after it was registered fails its backup at once instead of reading `/proc`.
#[tokio::test]
async fn a_source_redirected_into_proc_fails_its_backup_at_once() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    app.create_source("src", &src).await;
    std::fs::remove_dir(&src).unwrap();
    symlink("/proc/self", &src).unwrap();
    let accepted = app.backup("src", "full").await;
    let job = app
        .wait_job(&id(&accepted, "job_id"), Duration::from_secs(60))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "source_not_allowed", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
}

/// Item 11, the exact case: a source with `exclude: ["*.tmp"]` restored over its own
/// directory (`{}` body) deleted `x.tmp`, which no backup held, for good. Excluded
/// paths, and special files that backups skip, now stay; what the backup does not hold
/// but the pre-restore backup does is listed with that backup's id.
#[tokio::test]
async fn restoring_over_the_source_keeps_what_backups_leave_out_and_lists_what_it_removes() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::create_dir_all(src.join("cache/deep")).unwrap();
    std::fs::write(src.join("keep.txt"), "version 1").unwrap();
    std::fs::write(src.join("x.tmp"), "scratch 1").unwrap();
    std::fs::write(src.join("sub/y.tmp"), "nested scratch").unwrap();
    write_noise(&src.join("cache/deep/blob.bin"), 3, 100_000);
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "app", "files": { "path": src, "exclude": ["*.tmp", "cache"] } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let backup = backup_ok(&app, "app").await;

    // The live directory moves on.
    std::fs::write(src.join("keep.txt"), "version 2").unwrap();
    std::fs::write(src.join("x.tmp"), "scratch 2, never backed up").unwrap();
    std::fs::write(src.join("new.txt"), "made after the backup").unwrap();
    std::fs::create_dir_all(src.join("later/inner")).unwrap();
    std::fs::write(src.join("later/inner/z.txt"), "also new").unwrap();
    let fifo = src.join("sub/pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let blob_before = std::fs::read(src.join("cache/deep/blob.bin")).unwrap();

    let (status, r) = app
        .post(&format!("/api/v1/backup/restore/{backup}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let pre = id(&r, "pre_restore_backup_id");
    let job = app.wait_success(&id(&r, "job_id")).await;

    // What backups leave out is still there, as it was.
    assert_eq!(
        std::fs::read_to_string(src.join("x.tmp")).unwrap(),
        "scratch 2, never backed up"
    );
    assert_eq!(
        std::fs::read_to_string(src.join("sub/y.tmp")).unwrap(),
        "nested scratch"
    );
    assert_eq!(
        std::fs::read(src.join("cache/deep/blob.bin")).unwrap(),
        blob_before
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    // What the backup holds is restored; what it does not is gone…
    assert_eq!(
        std::fs::read_to_string(src.join("keep.txt")).unwrap(),
        "version 1"
    );
    assert!(!src.join("new.txt").exists());
    assert!(!src.join("later").exists());
    // …and the job says so.
    let result = &job["result"];
    let kept: Vec<&str> = result["kept"]["paths"]
        .as_array()
        .unwrap_or_else(|| panic!("{result}"))
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in ["x.tmp", "sub/y.tmp", "cache", "sub/pipe"] {
        assert!(kept.contains(&p), "{p} not in kept: {result}");
    }
    assert_eq!(result["kept"]["count"], 4, "{result}");
    let removed: Vec<&str> = result["removed"]["paths"]
        .as_array()
        .unwrap_or_else(|| panic!("{result}"))
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(removed, ["later", "new.txt"], "{result}");
    // `later`, `later/inner`, `later/inner/z.txt` and `new.txt`.
    assert_eq!(result["removed"]["count"], 4, "{result}");
    assert_eq!(result["removed"]["pre_restore_backup_id"], pre.as_str());

    // The pre-restore backup gives them back.
    let back = app.dir.path().join("back");
    let rr = app.restore(&pre, &back).await;
    app.wait_success(&id(&rr, "job_id")).await;
    assert_eq!(
        std::fs::read_to_string(back.join("new.txt")).unwrap(),
        "made after the backup"
    );
    assert_eq!(
        std::fs::read_to_string(back.join("later/inner/z.txt")).unwrap(),
        "also new"
    );
    assert_eq!(
        std::fs::read_to_string(back.join("keep.txt")).unwrap(),
        "version 2"
    );

    // Without a pre-restore backup, excluded files stay all the same.
    std::fs::write(src.join("x.tmp"), "scratch 3").unwrap();
    let (status, r) = app
        .post(
            &format!("/api/v1/backup/restore/{backup}"),
            json!({ "pre_restore_backup": false }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = app.wait_success(&id(&r, "job_id")).await;
    assert_eq!(
        std::fs::read_to_string(src.join("x.tmp")).unwrap(),
        "scratch 3"
    );
    assert!(job["result"]["removed"].is_null(), "{job}");
}

/// Item 11 through a symlink: a target that reaches the source's directory by another
/// name is a restore over the source (a pre-restore backup, excluded files kept).
#[tokio::test]
async fn a_restore_through_a_symlink_to_the_source_is_a_restore_over_the_source() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "one").unwrap();
    std::fs::write(src.join("x.tmp"), "scratch").unwrap();
    let (status, body) = app
        .post(
            "/api/v1/sources",
            json!({ "name": "app", "files": { "path": src, "exclude": ["*.tmp"] } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let backup = backup_ok(&app, "app").await;
    std::fs::write(src.join("a.txt"), "two").unwrap();
    let alias = app.dir.path().join("alias");
    symlink(&src, &alias).unwrap();
    for target in [alias.display().to_string(), format!("{}/", src.display())] {
        let (status, r) = app
            .post(
                &format!("/api/v1/backup/restore/{backup}"),
                json!({ "target": target }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{r}");
        assert!(r["pre_restore_backup_id"].is_string(), "{target}: {r}");
        let job = app.wait_success(&id(&r, "job_id")).await;
        assert_eq!(std::fs::read_to_string(src.join("a.txt")).unwrap(), "one");
        assert_eq!(
            std::fs::read_to_string(src.join("x.tmp")).unwrap(),
            "scratch"
        );
        assert_eq!(job["result"]["kept"]["paths"], json!(["x.tmp"]), "{job}");
        std::fs::write(src.join("a.txt"), "two").unwrap();
    }
    // The symlink is still a symlink to the source.
    assert!(std::fs::symlink_metadata(&alias)
        .unwrap()
        .file_type()
        .is_symlink());
}
