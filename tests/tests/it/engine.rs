//! The snapshot engine: full, incremental and differential chains, deduplication,
//! verify, subset restore — through the API and the real services.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::tree::{assert_tree_matches, noise, snapshot, write_noise, Node};
use strata_tests::{Backend, Options, TestApp};

async fn backup_ok(app: &TestApp, source: &str, kind: &str) -> (String, Value) {
    let b = app.backup(source, kind).await;
    let job = app.wait_success(b["job_id"].as_str().unwrap()).await;
    (b["backup_id"].as_str().unwrap().to_string(), job)
}

async fn restore_to(app: &TestApp, backup_id: &str, target: &Path) -> Value {
    let r = app.restore(backup_id, target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn incremental_and_differential_chains_restore_each_moment_exactly() {
    chains_restore_each_moment_exactly(Backend::Local).await;
}

#[tokio::test]
async fn chains_restore_each_moment_exactly_on_s3() {
    chains_restore_each_moment_exactly(Backend::S3).await;
}

async fn chains_restore_each_moment_exactly(backend: Backend) {
    let app = TestApp::spawn(Options {
        backend,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(src.join("keep")).unwrap();
    std::fs::create_dir_all(src.join("doomed/inner")).unwrap();
    for i in 0..20 {
        std::fs::write(
            src.join(format!("keep/f{i}.txt")),
            format!("file {i}\n").repeat(100),
        )
        .unwrap();
    }
    std::fs::write(src.join("doomed/inner/x.txt"), "x").unwrap();
    write_noise(&src.join("large.bin"), 9, 4 * 1024 * 1024);
    app.create_source("src", &src).await;

    // An incremental with no full yet runs as a full, and says so.
    let (first, job) = backup_ok(&app, "src", "incremental").await;
    assert_eq!(job["result"]["type"], "full", "{job}");
    assert_eq!(job["result"]["requested_type"], "incremental");
    let (_, b) = app.get(&format!("/api/v1/backup/{first}")).await;
    assert_eq!(
        (b["type"].as_str(), b["requested_type"].as_str()),
        (Some("full"), Some("incremental"))
    );
    let mut moments: Vec<(String, BTreeMap<Vec<u8>, Node>)> = vec![(first.clone(), snapshot(&src))];

    // Change 2 files, add one, delete a directory tree, chmod one.
    std::fs::write(src.join("keep/f1.txt"), "changed\n").unwrap();
    std::fs::write(src.join("keep/f2.txt"), "changed too\n").unwrap();
    std::fs::write(src.join("keep/new.txt"), "new\n").unwrap();
    std::fs::remove_dir_all(src.join("doomed")).unwrap();
    std::fs::set_permissions(
        src.join("keep/f3.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (inc1, job) = backup_ok(&app, "src", "incremental").await;
    let r = &job["result"];
    assert_eq!(r["type"], "incremental", "{job}");
    assert_eq!(r["parent"], first.as_str());
    // Only new and changed files are read (chmod changes ctime: read again).
    assert_eq!(r["changed_files"], 4, "{job}");
    assert_eq!(r["unchanged_files"], 18, "{job}");
    assert_eq!(r["deleted"], 1, "one tombstone for the whole tree: {job}");
    moments.push((inc1.clone(), snapshot(&src)));

    // A differential is against the full, not the incremental.
    std::fs::write(src.join("keep/f4.txt"), "diff change\n").unwrap();
    let (diff, job) = backup_ok(&app, "src", "differential").await;
    assert_eq!(job["result"]["parent"], first.as_str(), "{job}");
    assert_eq!(job["result"]["changed_files"], 5, "{job}");
    moments.push((diff.clone(), snapshot(&src)));

    // An incremental after the differential chains on it.
    std::fs::remove_file(src.join("keep/new.txt")).unwrap();
    std::fs::write(src.join("large.bin"), noise(10, 1000)).unwrap();
    let (inc2, job) = backup_ok(&app, "src", "incremental").await;
    assert_eq!(job["result"]["parent"], diff.as_str(), "{job}");
    moments.push((inc2.clone(), snapshot(&src)));

    let (status, b) = app.get(&format!("/api/v1/backup/{inc2}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["chain"], json!([first, diff, inc2]), "{b}");
    assert_eq!(b["parent_id"], diff.as_str());
    assert!(b["stored_size"].as_i64().unwrap() < 100_000, "{b}");
    let (_, b) = app.get(&format!("/api/v1/backup/{inc1}")).await;
    assert_eq!(b["chain"], json!([first, inc1]), "{b}");

    for (i, (id, expected)) in moments.iter().enumerate() {
        let target = app.dir.path().join(format!("restore-{i}"));
        restore_to(&app, id, &target).await;
        assert_tree_matches(expected, &target, id);
    }
}

#[tokio::test]
async fn identical_data_is_stored_once_and_an_insertion_adds_few_chunks() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::create_dir_all(src.join("b")).unwrap();
    let data = noise(42, 100 * 1024 * 1024);
    std::fs::write(src.join("a/big.bin"), &data).unwrap();
    std::fs::write(src.join("b/big.bin"), &data).unwrap();
    app.create_source("src", &src).await;
    let (_, job) = backup_ok(&app, "src", "full").await;
    let stored = job["result"]["stored_size"].as_u64().unwrap();
    let logical = job["result"]["logical_size"].as_u64().unwrap();
    assert_eq!(logical, 200 * 1024 * 1024);
    assert!(
        stored < 101 * 1024 * 1024,
        "stored {stored} bytes for two copies of 100 MiB"
    );

    // One byte inserted in the middle of one copy.
    let mut edited = data.clone();
    edited.insert(data.len() / 2, 0x5a);
    std::fs::write(src.join("a/big.bin"), &edited).unwrap();
    let (id, job) = backup_ok(&app, "src", "full").await;
    let r = &job["result"];
    // A full reads everything, but only the chunks around the insertion are new
    // (plus the entry list's segment).
    assert!(r["new_chunks"].as_u64().unwrap() <= 4, "{job}");
    assert!(
        r["stored_size"].as_u64().unwrap() < 10 * 1024 * 1024,
        "{job}"
    );
    let target = app.dir.path().join("out");
    restore_to(&app, &id, &target).await;
    assert_eq!(std::fs::read(target.join("a/big.bin")).unwrap(), edited);
}

#[tokio::test]
async fn verify_passes_then_names_the_files_of_a_damaged_and_a_missing_pack() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Two large files: each fills its own packs (packs close at 16 MiB).
    write_noise(&src.join("first.bin"), 1, 20 * 1024 * 1024);
    write_noise(&src.join("second.bin"), 1000, 20 * 1024 * 1024);
    std::fs::write(src.join("small.txt"), "small").unwrap();
    app.create_source("src", &src).await;
    let (id, _) = backup_ok(&app, "src", "full").await;

    let (status, v) = app
        .post(&format!("/api/v1/backup/{id}/verify"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let job = app.wait_success(v["job_id"].as_str().unwrap()).await;
    assert_eq!(job["kind"], "verify");
    assert_eq!(job["result"]["ok"], true, "{job}");
    assert!(job["result"]["chunks_checked"].as_u64().unwrap() >= 20);

    // Find the pack holding first.bin's first chunk via the index, flip one byte in it.
    let repo = app.dir.path().join("data/repo");
    let mut packs: Vec<PathBuf> = walk_files(&repo.join("packs"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let biggest = packs.last().unwrap().clone();
    let mut bytes = std::fs::read(&biggest).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x01;
    std::fs::write(&biggest, &bytes).unwrap();

    let (_, v) = app
        .post(&format!("/api/v1/backup/{id}/verify"), json!({}))
        .await;
    let job = app
        .wait_job(
            v["job_id"].as_str().unwrap(),
            std::time::Duration::from_secs(60),
        )
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "backup_damaged");
    let problems = job["result"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{job}");
    assert_eq!(problems[0]["code"], "pack_damaged");
    assert_eq!(
        problems[0]["chunks"], 1,
        "one flipped byte damages one chunk: {job}"
    );
    let files = problems[0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{job}");
    assert!(files[0] == "first.bin" || files[0] == "second.bin", "{job}");

    // A restore of the damaged backup fails, naming the file, and leaves no target.
    let target = app.dir.path().join("out");
    let r = app.restore(&id, &target).await;
    let job = app
        .wait_job(
            r["job_id"].as_str().unwrap(),
            std::time::Duration::from_secs(120),
        )
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    let msg = job["error"]["message"].as_str().unwrap();
    assert!(msg.contains(files[0].as_str().unwrap()), "{msg}");
    assert!(!target.exists());

    // A missing pack is reported as such.
    std::fs::remove_file(&biggest).unwrap();
    let (_, v) = app
        .post(&format!("/api/v1/backup/{id}/verify"), json!({}))
        .await;
    let job = app
        .wait_job(
            v["job_id"].as_str().unwrap(),
            std::time::Duration::from_secs(60),
        )
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        job["result"]["problems"][0]["code"], "pack_missing",
        "{job}"
    );
}

/// Regular files below `dir` (symlinks are not followed or listed).
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(walk_files(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_subset_restore_writes_only_the_included_paths() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(src.join("docs/a")).unwrap();
    std::fs::create_dir_all(src.join("media")).unwrap();
    std::fs::write(src.join("docs/a/1.txt"), "1").unwrap();
    std::fs::write(src.join("docs/2.txt"), "2").unwrap();
    std::fs::write(src.join("media/3.bin"), "3").unwrap();
    std::fs::write(src.join("top.txt"), "t").unwrap();
    app.create_source("src", &src).await;
    let (id, _) = backup_ok(&app, "src", "full").await;
    let target = app.dir.path().join("out");
    let (status, r) = app
        .post(
            &format!("/api/v1/backup/restore/{id}"),
            json!({ "target": target, "include": ["docs/a", "top.txt"] }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_eq!(
        std::fs::read_to_string(target.join("docs/a/1.txt")).unwrap(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("top.txt")).unwrap(),
        "t"
    );
    assert!(!target.join("docs/2.txt").exists());
    assert!(!target.join("media").exists());

    let (status, body) = app
        .post(
            &format!("/api/v1/backup/restore/{id}"),
            json!({ "target": target, "include": ["../etc"] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "include[0]");
}

/// One random edit of a tree.
fn random_edit(rng: &mut StdRng, root: &Path, counter: &mut u64) {
    let files: Vec<PathBuf> = walk_files(root);
    *counter += 1;
    let n = *counter;
    match rng.random_range(0..9) {
        0 => {
            // create a file, maybe in a new directory
            let dir = if rng.random_bool(0.3) {
                root.join(format!("d{n}"))
            } else {
                root.to_path_buf()
            };
            std::fs::create_dir_all(&dir).unwrap();
            let len = rng.random_range(0..200_000);
            std::fs::write(dir.join(format!("n{n}.bin")), noise(n, len)).unwrap();
        }
        k if files.is_empty() => {
            let _ = k;
            std::fs::write(root.join(format!("n{n}.txt")), "seed").unwrap();
        }
        1 => {
            // change a few bytes in the middle
            let f = &files[rng.random_range(0..files.len())];
            let mut b = std::fs::read(f).unwrap();
            if !b.is_empty() {
                let at = b.len() / 2;
                b[at] = b[at].wrapping_add(1);
                std::fs::write(f, b).unwrap();
            }
        }
        2 => {
            let f = &files[rng.random_range(0..files.len())];
            let mut b = std::fs::read(f).unwrap();
            b.extend_from_slice(&noise(n, 5000));
            std::fs::write(f, b).unwrap();
        }
        3 => {
            let f = &files[rng.random_range(0..files.len())];
            let b = std::fs::read(f).unwrap();
            std::fs::write(f, &b[..b.len() / 2]).unwrap();
        }
        4 => {
            let f = &files[rng.random_range(0..files.len())];
            std::fs::remove_file(f).unwrap();
        }
        5 => {
            let f = &files[rng.random_range(0..files.len())];
            std::fs::rename(f, f.with_file_name(format!("renamed{n}"))).unwrap();
        }
        6 => {
            let f = &files[rng.random_range(0..files.len())];
            let mode = [0o600, 0o644, 0o755, 0o400][rng.random_range(0..4)];
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        7 => {
            // replace a file by a directory of the same name
            let f = &files[rng.random_range(0..files.len())];
            std::fs::remove_file(f).unwrap();
            std::fs::create_dir_all(f).unwrap();
            std::fs::write(f.join("inside.txt"), format!("{n}")).unwrap();
        }
        _ => {
            // remove a whole directory, or make a symlink
            let dirs: Vec<PathBuf> = files
                .iter()
                .filter_map(|f| f.parent().map(Path::to_path_buf))
                .filter(|d| d != root)
                .collect();
            if let Some(d) = dirs.first() {
                std::fs::remove_dir_all(d).unwrap();
            } else {
                std::os::unix::fs::symlink(format!("target{n}"), root.join(format!("link{n}")))
                    .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn random_edit_sequences_restore_exactly_at_every_backup() {
    let app = TestApp::spawn(Options::default()).await;
    let seeds: Vec<u64> = match std::env::var("STRATA_PROPTEST_SEEDS") {
        Ok(s) => s.split(',').map(|x| x.trim().parse().unwrap()).collect(),
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let name = format!("prop{seed}");
        let src = app.dir.path().join(&name);
        std::fs::create_dir_all(&src).unwrap();
        let mut counter = 0;
        for _ in 0..12 {
            random_edit(&mut rng, &src, &mut counter);
        }
        app.create_source(&name, &src).await;
        let mut moments = Vec::new();
        for step in 0..6 {
            let kind = ["full", "incremental", "differential"]
                [if step == 0 { 0 } else { rng.random_range(0..3) }];
            let (id, _) = backup_ok(&app, &name, kind).await;
            moments.push((id, kind, snapshot(&src)));
            for _ in 0..rng.random_range(1..6) {
                random_edit(&mut rng, &src, &mut counter);
            }
        }
        for (i, (id, kind, expected)) in moments.iter().enumerate() {
            let target = app.dir.path().join(format!("{name}-restore-{i}"));
            restore_to(&app, id, &target).await;
            assert_tree_matches(
                expected,
                &target,
                &format!("seed {seed}, step {i} ({kind}) {id}"),
            );
        }
    }
}

#[tokio::test]
async fn special_files_are_skipped_with_a_warning_and_the_backup_completes() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("regular.txt"), "kept").unwrap();
    let fifo =
        std::ffi::CString::new(src.join("a-fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(src.join("a-socket")).unwrap();
    app.create_source("src", &src).await;
    let (id, job) = backup_ok(&app, "src", "full").await;
    let warnings = job["warnings"].as_array().unwrap();
    let mut paths: Vec<&str> = warnings
        .iter()
        .map(|w| w["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, vec!["a-fifo", "a-socket"], "{job}");
    assert!(
        warnings.iter().all(|w| w["code"] == "skipped_special_file"),
        "{job}"
    );
    let (_, b) = app.get(&format!("/api/v1/backup/{id}")).await;
    assert_eq!(b["status"], "complete");
    assert_eq!(b["warnings"].as_array().unwrap().len(), 2, "{b}");
    let target = app.dir.path().join("out");
    restore_to(&app, &id, &target).await;
    assert_eq!(
        std::fs::read_to_string(target.join("regular.txt")).unwrap(),
        "kept"
    );
    assert!(!target.join("a-fifo").exists());
}
