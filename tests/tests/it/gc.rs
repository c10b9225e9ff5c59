//! Garbage collection concurrent with backups: while backups, restores, deletes, prunes
//! and collections run together, every kept backup stays restorable byte for byte, and
//! once things are quiet storage holds no unindexed pack and no pack mostly dead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strata_engine::repo::format::ChunkId;
use strata_engine::repo::Repository;
use strata_tests::tree::{assert_same_tree, assert_tree_matches, snapshot, write_noise, Node};
use strata_tests::{Options, TestApp};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const THRESHOLD: f64 = 0.5;

fn options() -> Options {
    Options {
        workers: 2,
        env: vec![("STRATA_GC_REPACK_THRESHOLD".into(), THRESHOLD.to_string())],
        ..Default::default()
    }
}

/// Queues a collection; returns the job id.
async fn start_gc(app: &TestApp) -> String {
    let (status, accepted) = app.post("/api/v1/repository/gc", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    accepted["job_id"].as_str().unwrap().to_string()
}

/// The pack objects in the local repository: id → size.
fn pack_objects(app: &TestApp) -> HashMap<String, u64> {
    fn walk(dir: &Path, acc: &mut HashMap<String, u64>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), acc);
            } else {
                let name = e.file_name().to_string_lossy().into_owned();
                acc.insert(name, e.metadata().unwrap().len());
            }
        }
    }
    let mut acc = HashMap::new();
    walk(&app.dir.path().join("data/repo/packs"), &mut acc);
    acc
}

/// One pack as the index has it, and how much of it the manifests reference.
#[derive(Debug)]
struct PackState {
    size: i64,
    chunk_count: i32,
    rows: usize,
    live_rows: usize,
    live_bytes: i64,
    condemned: bool,
}

impl PackState {
    fn dead_fraction(&self) -> f64 {
        (self.size - self.live_bytes) as f64 / self.size as f64
    }
    /// Every chunk of the pack is referenced: only the header and trailer are not data.
    fn all_live(&self) -> bool {
        self.live_rows == self.rows && self.rows == self.chunk_count as usize
    }
}

/// The index, checked against the references computed from the manifests in storage.
async fn index_state(app: &TestApp) -> HashMap<String, PackState> {
    let storage = strata_storage::open(
        &format!("file://{}", app.dir.path().join("data/repo").display()),
        &Default::default(),
    )
    .await
    .unwrap();
    let repo = Repository::open(storage, None).await.unwrap();
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let refs: HashSet<ChunkId> = strata_engine::repo::gc::referenced_chunks(
        &repo,
        &strata_engine::repo::index::PgIndex::new(pool.clone()),
    )
    .await
    .unwrap();
    let packs: Vec<(String, i64, i32, bool)> =
        sqlx::query_as("SELECT id, size, chunk_count, condemned_at IS NOT NULL FROM packs")
            .fetch_all(&pool)
            .await
            .unwrap();
    let rows: Vec<(String, Vec<u8>, i32)> =
        sqlx::query_as("SELECT pack_id, id, length FROM chunks")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut out: HashMap<String, PackState> = packs
        .into_iter()
        .map(|(id, size, chunk_count, condemned)| {
            let s = PackState {
                size,
                chunk_count,
                rows: 0,
                live_rows: 0,
                live_bytes: 0,
                condemned,
            };
            (id, s)
        })
        .collect();
    for (pack, id, length) in rows {
        let p = out
            .get_mut(&pack)
            .expect("a chunk row names an unknown pack");
        p.rows += 1;
        if refs.contains(&ChunkId::from_slice(&id).unwrap()) {
            p.live_rows += 1;
            p.live_bytes += i64::from(length);
        }
    }
    pool.close().await;
    out
}

/// One round's change to a source: a file rewritten, one deleted, one (re)created,
/// a small one added and an older small one removed.
fn mutate(dir: &Path, round: u64, salt: u64) {
    let seed = salt * 1_000_003 + round * 101;
    let big = |i: u64| dir.join(format!("f{}.bin", i % 6));
    write_noise(
        &big(round),
        seed + 1,
        768 * KIB + (round as usize % 3) * 256 * KIB,
    );
    let _ = std::fs::remove_file(big(round + 2));
    if !big(round + 4).exists() {
        write_noise(&big(round + 4), seed + 2, 3 * MIB);
    }
    write_noise(&dir.join(format!("g{round}.bin")), seed + 3, 128 * KIB);
    if round >= 2 {
        let _ = std::fs::remove_file(dir.join(format!("g{}.bin", round - 2)));
    }
    std::fs::write(dir.join("round.txt"), format!("round {round} of {salt}\n")).unwrap();
}

/// What a backup was taken of.
type Tree = BTreeMap<Vec<u8>, Node>;

/// A backup kept so far, with the tree it was taken of.
struct Kept {
    id: String,
    source: usize,
    tree: Tree,
}

#[tokio::test]
async fn gc_concurrent_with_backups_in_a_loop() {
    // More rounds for a longer soak: STRATA_TEST_GC_ROUNDS=100.
    let rounds: u64 = std::env::var("STRATA_TEST_GC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let began = Instant::now();
    let app = TestApp::spawn(options()).await;
    let names = ["s0", "s1", "s2"];
    let dirs: Vec<PathBuf> = names.iter().map(|n| app.dir.path().join(n)).collect();
    for (i, (name, dir)) in names.iter().zip(&dirs).enumerate() {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in 0..6u64 {
            write_noise(
                &dir.join(format!("f{f}.bin")),
                50 + f + 10 * i as u64,
                3 * MIB,
            );
        }
        write_noise(&dir.join("sub/stable.bin"), 900 + i as u64, 256 * KIB);
        app.create_source(name, dir).await;
    }
    let types = ["full", "incremental", "differential", "incremental"];
    let mut kept: Vec<Kept> = Vec::new();
    let (mut backups, mut gc_runs, mut deletes, mut prunes, mut restores) = (0, 0, 0, 0, 0);
    let (mut repacked, mut condemned, mut deleted_packs, mut reclaimed, mut rewritten) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut overlapping, mut held_back) = (0u64, 0u64);
    let mut add = |result: &Value| {
        overlapping += u64::from(result["live_sessions"].as_i64().unwrap_or(0) > 0);
        held_back += result["packs_kept_for_sessions"].as_u64().unwrap_or(0);
        repacked += result["packs_repacked"].as_u64().unwrap_or(0);
        condemned += result["packs_condemned"].as_u64().unwrap_or(0);
        deleted_packs += result["packs_deleted"].as_u64().unwrap_or(0);
        reclaimed += result["bytes_reclaimed"].as_u64().unwrap_or(0);
        rewritten += result["bytes_rewritten"].as_u64().unwrap_or(0);
    };

    // A long-running job, simulated: a session registered at some rounds and ended
    // two rounds later holds back what is condemned meanwhile.
    let mut db = app.db().await;
    let mut long_job: Option<uuid::Uuid> = None;
    for round in 0..rounds {
        match (round % 4, long_job) {
            (1, None) => {
                let id = uuid::Uuid::now_v7();
                sqlx::query("INSERT INTO repo_sessions (id, kind) VALUES ($1, 'test')")
                    .bind(id)
                    .execute(&mut db)
                    .await
                    .unwrap();
                long_job = Some(id);
            }
            (3, Some(id)) => {
                sqlx::query("DELETE FROM repo_sessions WHERE id = $1")
                    .bind(id)
                    .execute(&mut db)
                    .await
                    .unwrap();
                long_job = None;
            }
            _ => {}
        }
        // Two sources are backed up while a backup of the third is restored (one job
        // per source at a time).
        let idle = round as usize % names.len();
        let mut running: Vec<(String, String, usize, Tree)> = Vec::new();
        for (i, (name, dir)) in names.iter().zip(&dirs).enumerate() {
            if i == idle {
                continue;
            }
            if round > 0 {
                mutate(dir, round, i as u64 + 1);
            }
            let tree = snapshot(dir);
            let ty = types[(round as usize + i) % types.len()];
            let accepted = app.backup(name, ty).await;
            running.push((
                accepted["job_id"].as_str().unwrap().to_string(),
                accepted["backup_id"].as_str().unwrap().to_string(),
                i,
                tree,
            ));
            backups += 1;
        }
        // ...a restore of a kept backup...
        let candidates: Vec<&Kept> = kept.iter().filter(|k| k.source == idle).collect();
        let restore = if candidates.is_empty() {
            None
        } else {
            let k = candidates[(round as usize * 7) % candidates.len()];
            let target = app.dir.path().join(format!("restore-{round}"));
            eprintln!("round {round}: restoring {}", k.id);
            let r = app.restore(&k.id, &target).await;
            restores += 1;
            Some((
                r["job_id"].as_str().unwrap().to_string(),
                target,
                k.tree.clone(),
            ))
        };
        // ...and, at the same time, a deletion, a prune or a bare collection.
        let mut collecting: Vec<String> = Vec::new();
        // What a deletion removes, including this round's backups if they finished
        // already and a cascade or the policy took them.
        let mut removed: HashSet<String> = HashSet::new();
        match round % 3 {
            1 => {
                let mut done = false;
                for k in kept.iter().map(|k| k.id.clone()).collect::<Vec<_>>() {
                    let (status, body) = app
                        .request(
                            Method::DELETE,
                            &format!("/api/v1/backup/{k}?cascade=true"),
                            None,
                        )
                        .await;
                    if status == StatusCode::ACCEPTED {
                        let gone: HashSet<String> = body["deleted"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_str().unwrap().to_string())
                            .collect();
                        eprintln!("round {round}: delete {k} deletes {gone:?}");
                        kept.retain(|k| !gone.contains(&k.id));
                        removed.extend(gone);
                        collecting.push(body["job_id"].as_str().unwrap().to_string());
                        deletes += 1;
                        done = true;
                        break;
                    }
                    assert_eq!(status, StatusCode::CONFLICT, "{body}");
                }
                if !done {
                    collecting.push(start_gc(&app).await);
                }
            }
            2 => {
                let (status, body) = app
                    .post("/api/v1/backup/prune", json!({"keep_last": 1}))
                    .await;
                assert!(
                    status == StatusCode::ACCEPTED || status == StatusCode::OK,
                    "{body}"
                );
                if let Some(job) = body["job_id"].as_str() {
                    let gone: HashSet<String> = body["deleted"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string())
                        .collect();
                    eprintln!("round {round}: prune deletes {gone:?}");
                    kept.retain(|k| !gone.contains(&k.id));
                    removed.extend(gone);
                    collecting.push(job.to_string());
                    prunes += 1;
                }
            }
            _ => {
                if round > 0 {
                    collecting.push(start_gc(&app).await);
                }
            }
        }
        for job in &collecting {
            let j = app.wait_success(job).await;
            add(&j["result"]);
            gc_runs += 1;
        }
        for (job, id, source, tree) in running {
            app.wait_success(&job).await;
            if !removed.contains(&id) {
                kept.push(Kept { id, source, tree });
            }
        }
        if let Some((job, target, tree)) = restore {
            app.wait_success(&job).await;
            assert_tree_matches(&tree, &target, &format!("round {round} restore"));
            std::fs::remove_dir_all(&target).unwrap();
        }
    }

    if let Some(id) = long_job {
        sqlx::query("DELETE FROM repo_sessions WHERE id = $1")
            .bind(id)
            .execute(&mut db)
            .await
            .unwrap();
    }
    // Quiet now: two collections leave nothing unindexed and nothing mostly dead.
    for _ in 0..2 {
        let job = start_gc(&app).await;
        let j = app.wait_success(&job).await;
        eprintln!("final gc: {}", j["result"]);
        add(&j["result"]);
        gc_runs += 1;
    }
    let objects = pack_objects(&app);
    let index = index_state(&app).await;
    let mut worst: f64 = 0.0;
    for (id, p) in &index {
        assert!(!p.condemned, "pack {id} is still condemned: {p:?}");
        assert_eq!(
            objects.get(id).copied(),
            Some(p.size as u64),
            "pack {id}: object"
        );
        assert!(
            p.live_rows > 0,
            "pack {id} holds no referenced chunk: {p:?}"
        );
        assert!(
            p.dead_fraction() < THRESHOLD || p.all_live(),
            "pack {id} is mostly dead: {p:?}"
        );
        if !p.all_live() {
            worst = worst.max(p.dead_fraction());
        }
    }
    for id in objects.keys() {
        assert!(index.contains_key(id), "pack object {id} is not indexed");
    }
    let stored: u64 = objects.values().sum();
    let live: i64 = index.values().map(|p| p.live_bytes).sum();

    // Every kept backup restores byte for byte.
    for k in &kept {
        let target = app.dir.path().join(format!("final-{}", k.id));
        let r = app.restore(&k.id, &target).await;
        app.wait_success(r["job_id"].as_str().unwrap()).await;
        assert_tree_matches(&k.tree, &target, &format!("backup {}", k.id));
        std::fs::remove_dir_all(&target).unwrap();
    }
    eprintln!(
        "loop: {rounds} rounds, {backups} backups, {restores} restores during the loop, \
         {deletes} deletes, {prunes} prunes, {gc_runs} collections; packs condemned {condemned}, \
         repacked {repacked}, deleted {deleted_packs}, held back by a live session {held_back}; \
         {overlapping} collections started while a session was live; bytes reclaimed {reclaimed}, rewritten {rewritten}; \
         final: {} packs, {stored} bytes stored, {live} bytes live, worst dead fraction of a \
         partly dead pack {worst:.3}; {} backups kept and restored; {:.1?}",
        index.len(),
        kept.len(),
        began.elapsed()
    );
}

#[tokio::test]
async fn mostly_dead_packs_are_repacked() {
    let mut app = TestApp::spawn(options()).await;
    let src = app.dir.path().join("r");
    std::fs::create_dir_all(&src).unwrap();
    for f in 0..10u64 {
        write_noise(&src.join(format!("f{f}.bin")), 300 + f, MIB);
    }
    app.create_source("r", &src).await;
    let first = app.backup("r", "full").await;
    app.wait_success(first["job_id"].as_str().unwrap()).await;
    let before = pack_objects(&app);

    // Keep two of the ten files in a second full backup, then delete the first: its
    // pack is four fifths dead.
    for f in 2..10u64 {
        std::fs::remove_file(src.join(format!("f{f}.bin"))).unwrap();
    }
    let second = app.backup("r", "full").await;
    app.wait_success(second["job_id"].as_str().unwrap()).await;
    let (status, accepted) = app
        .request(
            Method::DELETE,
            &format!("/api/v1/backup/{}", first["backup_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let job = app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    let r = &job["result"];
    eprintln!("repack: {r}");
    assert!(r["packs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["packs_written"], 1, "{r}");
    let rewritten = r["bytes_rewritten"].as_u64().unwrap();
    assert!(
        rewritten >= (2 * MIB) as u64 && rewritten < (2 * MIB + 256 * KIB) as u64,
        "{r}"
    );
    // The big pack is gone, replaced by a small one.
    let after = pack_objects(&app);
    let big: Vec<&String> = before
        .iter()
        .filter(|(_, s)| **s > (8 * MIB) as u64)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(big.len(), 1, "{before:?}");
    assert!(
        !after.contains_key(big[0]),
        "the mostly dead pack is still there"
    );
    let total_after: u64 = after.values().sum();
    assert!(total_after < (3 * MIB) as u64, "{after:?}");

    let target = app.dir.path().join("restored");
    let restore = app
        .restore(second["backup_id"].as_str().unwrap(), &target)
        .await;
    app.wait_success(restore["job_id"].as_str().unwrap()).await;
    assert_same_tree(&src, &target);

    // One collection at a time is queued; a second request is refused meanwhile. (No
    // worker runs while it is asked, or the first could be over before the second.)
    app.kill_worker(0);
    app.kill_worker(1);
    let job = start_gc(&app).await;
    let (status, body) = app.post("/api/v1/repository/gc", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "job_in_progress", "{body}");
    app.spawn_worker();
    let j = app.wait_job(&job, Duration::from_secs(60)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["result"]["packs_repacked"], 0, "{j}");
    assert_eq!(j["result"]["packs_deleted"], 0, "{j}");
}

#[tokio::test]
async fn a_backup_started_after_a_condemnation_does_not_deduplicate_against_it() {
    let app = TestApp::spawn(options()).await;
    // Source a holds x; source b holds the same x and a little more.
    let (a, b) = (app.dir.path().join("a"), app.dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    write_noise(&a.join("x.bin"), 4242, 3 * MIB);
    std::fs::copy(a.join("x.bin"), b.join("x.bin")).unwrap();
    write_noise(&b.join("y.bin"), 777, 64 * KIB);
    app.create_source("a", &a).await;
    app.create_source("b", &b).await;
    let first = app.backup("a", "full").await;
    app.wait_success(first["job_id"].as_str().unwrap()).await;
    let a_packs: HashSet<String> = pack_objects(&app).into_keys().collect();

    // A job that started earlier is still running (its session is live): deleting a
    // condemns its pack but keeps it.
    let earlier = uuid::Uuid::now_v7();
    let mut db = app.db().await;
    sqlx::query("INSERT INTO repo_sessions (id, kind) VALUES ($1, 'test')")
        .bind(earlier)
        .execute(&mut db)
        .await
        .unwrap();
    let deleted = delete_ok(&app, first["backup_id"].as_str().unwrap()).await;
    let r = &deleted["result"];
    assert!(r["packs_condemned"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["packs_deleted"], 0, "{r}");
    let objects = pack_objects(&app);
    assert!(a_packs.iter().all(|p| objects.contains_key(p)));

    // A backup that starts now does not know the condemned chunks: it stores x again
    // and its index rows move to its own pack.
    let second = app.backup("b", "full").await;
    let done = app.wait_success(second["job_id"].as_str().unwrap()).await;
    let (_, backup) = app
        .get(&format!(
            "/api/v1/backup/{}",
            second["backup_id"].as_str().unwrap()
        ))
        .await;
    eprintln!("backup of b: {} / {}", done["result"], backup);
    assert!(
        backup["stored_size"].as_u64().unwrap() >= (3 * MIB) as u64,
        "x was deduplicated against a condemned pack: {backup}"
    );
    let index = index_state(&app).await;
    for id in &a_packs {
        let p = &index[id];
        assert!(p.condemned, "{p:?}");
        assert_eq!(
            p.live_rows, 0,
            "a live chunk still points to a condemned pack: {p:?}"
        );
    }

    // Once the earlier job ends, the next collection deletes the condemned pack.
    sqlx::query("DELETE FROM repo_sessions WHERE id = $1")
        .bind(earlier)
        .execute(&mut db)
        .await
        .unwrap();
    let job = start_gc(&app).await;
    let j = app.wait_success(&job).await;
    assert!(j["result"]["packs_deleted"].as_u64().unwrap() >= 1, "{j}");
    let objects = pack_objects(&app);
    assert!(a_packs.iter().all(|p| !objects.contains_key(p)));
    let target = app.dir.path().join("restored-b");
    let r = app
        .restore(second["backup_id"].as_str().unwrap(), &target)
        .await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&b, &target);
}

/// A stream that stays open until told to end: holds a writer after it loaded its known set.
struct Gate(std::sync::mpsc::Receiver<()>);

impl std::io::Read for Gate {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        let _ = self.0.recv();
        Ok(0)
    }
}

#[tokio::test]
async fn a_writer_registered_before_a_condemnation_keeps_what_it_deduplicates_against() {
    use std::sync::Arc;
    use strata_engine::repo::manifest::Manifest;
    use strata_engine::repo::progress::Progress;
    use strata_engine::repo::reader::ChunkReader;
    use strata_engine::repo::session::Session;
    use strata_engine::repo::tree::parse_segment;
    use strata_engine::repo::writer::{write_snapshot, SnapshotInput, StreamInput};

    let app = TestApp::spawn(options()).await;
    let (a, b) = (app.dir.path().join("a"), app.dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    write_noise(&a.join("x.bin"), 4242, 3 * MIB);
    std::fs::copy(a.join("x.bin"), b.join("x.bin")).unwrap();
    app.create_source("a", &a).await;
    let first = app.backup("a", "full").await;
    app.wait_success(first["job_id"].as_str().unwrap()).await;
    let a_packs: HashSet<String> = pack_objects(&app).into_keys().collect();

    // A writer in this process, as a backup job runs one: session, known set, then held.
    let storage = strata_storage::open(
        &format!("file://{}", app.dir.path().join("data/repo").display()),
        &Default::default(),
    )
    .await
    .unwrap();
    let repo = Repository::open(storage, None).await.unwrap();
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let session = Session::start(&pool, "backup", None, None).await.unwrap();
    let (open, gate) = std::sync::mpsc::channel();
    let progress = Arc::new(Progress::default());
    let writer = {
        let (repo, pool, progress, root) =
            (repo.clone(), pool.clone(), progress.clone(), b.clone());
        tokio::spawn(async move {
            let input = SnapshotInput {
                root: Some(root),
                exclude: Vec::new(),
                skip: Vec::new(),
                stream: Some(StreamInput {
                    reader: Box::new(Gate(gate)),
                    size_hint: 0,
                }),
                parent: None,
            };
            let index = strata_engine::repo::index::PgIndex::shared(pool);
            write_snapshot(&repo, &index, input, progress, Default::default()).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress.phase() != "dumping database" {
        assert!(Instant::now() < deadline, "the writer did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // a is deleted meanwhile: its pack is condemned, not deleted.
    let deleted = delete_ok(&app, first["backup_id"].as_str().unwrap()).await;
    let r = &deleted["result"];
    assert!(r["packs_condemned"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["packs_kept_for_sessions"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["packs_deleted"], 0, "{r}");

    // The writer goes on: x is deduplicated against the condemned pack, and the
    // manifest is written after the collection read the manifests.
    open.send(()).unwrap();
    let output = writer.await.unwrap().unwrap();
    assert!(
        output.stats.stored_size < MIB as u64,
        "x was not deduplicated: {:?}",
        output.stats
    );
    let now = chrono::Utc::now();
    let manifest = Manifest {
        format_version: strata_engine::repo::format::FORMAT_VERSION,
        backup_id: "held-writer".into(),
        source_id: uuid::Uuid::now_v7(),
        source_name: "b".into(),
        root: b.display().to_string(),
        backup_type: "full".into(),
        requested_type: "full".into(),
        parent: None,
        chain: vec!["held-writer".into()],
        created_at: now,
        completed_at: now,
        stats: output.stats.clone(),
        tree: output.tree.clone(),
        tree_index: output.tree_index.clone(),
        warnings: Vec::new(),
        has_files: true,
        database: None,
        source_spec: None,
    };
    repo.put_manifest(&manifest).await.unwrap();
    session.end().await;

    // The next collection finds the pack referenced again and takes it back.
    let job = start_gc(&app).await;
    let j = app.wait_success(&job).await;
    eprintln!("gc after the writer: {}", j["result"]);
    assert!(
        j["result"]["packs_uncondemned"].as_u64().unwrap() >= 1,
        "{j}"
    );
    let objects = pack_objects(&app);
    assert!(
        a_packs.iter().all(|p| objects.contains_key(p)),
        "a pack the writer used is gone"
    );
    let index = index_state(&app).await;
    assert!(index.values().all(|p| !p.condemned), "{index:?}");

    // And what the manifest references reads back as x.
    let reader = ChunkReader::new(
        repo.clone(),
        strata_engine::repo::index::PgIndex::shared(pool.clone()),
    );
    let mut content = Vec::new();
    for segment in &manifest.tree {
        let raw = reader.get(*segment).await.unwrap();
        for entry in parse_segment(&raw).unwrap() {
            for chunk in entry.chunks {
                content.extend_from_slice(&reader.get(chunk).await.unwrap());
            }
        }
    }
    assert!(
        content == std::fs::read(b.join("x.bin")).unwrap(),
        "x does not read back"
    );
}

/// Deletes a backup through the API and waits for the delete job (and its collection)
/// to succeed; returns the job.
async fn delete_ok(app: &TestApp, backup_id: &str) -> Value {
    let (status, accepted) = app
        .request(Method::DELETE, &format!("/api/v1/backup/{backup_id}"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    app.wait_success(accepted["job_id"].as_str().unwrap()).await
}
