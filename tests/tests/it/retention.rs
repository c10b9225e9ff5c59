//! Delete, prune and garbage collection, through the real services: chains are never
//! broken, storage is reclaimed, and what a kept or running backup needs survives.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strata_tests::tree::{assert_same_tree, build_sample_tree, write_noise};
use strata_tests::{Options, TestApp};

const MIB: usize = 1024 * 1024;

async fn delete(app: &TestApp, id: &str, query: &str) -> (StatusCode, Value) {
    app.request(Method::DELETE, &format!("/api/v1/backup/{id}{query}"), None)
        .await
}

/// Runs a backup to success; returns its id.
async fn backup_ok(app: &TestApp, source: &str, backup_type: &str) -> String {
    let accepted = app.backup(source, backup_type).await;
    app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    accepted["backup_id"].as_str().unwrap().to_string()
}

/// Total bytes and count of the pack objects in the local repository.
fn packs(app: &TestApp) -> (u64, usize) {
    fn walk(dir: &Path, acc: &mut (u64, usize)) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(&e.path(), acc);
            } else {
                acc.0 += e.metadata().unwrap().len();
                acc.1 += 1;
            }
        }
    }
    let mut acc = (0, 0);
    walk(&app.dir.path().join("data/repo/packs"), &mut acc);
    acc
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn delete_refuses_to_break_a_chain_unless_cascading() {
    let app = TestApp::spawn(Options::default()).await;
    let source = app.dir.path().join("src");
    build_sample_tree(&source, MIB);
    app.create_source("chain", &source).await;
    let full = backup_ok(&app, "chain", "full").await;
    std::fs::write(source.join("added.txt"), b"new in the incremental").unwrap();
    let incr = backup_ok(&app, "chain", "incremental").await;
    let (_, b) = app.get(&format!("/api/v1/backup/{incr}")).await;
    assert_eq!(b["parent_id"], full.as_str(), "{b}");

    let (status, body) = delete(&app, &full, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "backup_has_dependents", "{body}");
    assert_eq!(strs(&body["error"]["dependents"]), vec![incr.clone()]);
    let (status, body) = delete(&app, &full, "?cascade=yes").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    assert_eq!(body["error"]["field"], "cascade");
    let (status, body) = delete(&app, "no-such-backup", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "backup_not_found");
    // Refusals changed nothing: both still restorable.
    let (_, b) = app.get(&format!("/api/v1/backup/{full}")).await;
    assert_eq!(b["status"], "complete", "{b}");

    let (status, accepted) = delete(&app, &full, "?cascade=true").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let mut deleted = strs(&accepted["deleted"]);
    deleted.sort();
    let mut expected = vec![full.clone(), incr.clone()];
    expected.sort();
    assert_eq!(deleted, expected);
    let job_id = accepted["job_id"].as_str().unwrap();
    assert_eq!(
        accepted["status_url"],
        format!("/api/v1/backup/restore/{job_id}/status")
    );
    // While the job has not removed them, a second delete is refused.
    let (status, again) = delete(&app, &full, "?cascade=true").await;
    assert!(
        status == StatusCode::CONFLICT || status == StatusCode::NOT_FOUND,
        "{status} {again}"
    );
    if status == StatusCode::CONFLICT {
        assert_eq!(again["error"]["code"], "backup_being_deleted", "{again}");
    }
    let job = app.wait_success(job_id).await;
    assert_eq!(job["kind"], "delete");
    let result = &job["result"];
    let mut gone = strs(&result["deleted_backups"]);
    gone.sort();
    assert_eq!(gone, expected, "{result}");
    assert!(result["packs_deleted"].as_u64().unwrap() >= 1, "{result}");
    assert!(result["bytes_reclaimed"].as_u64().unwrap() > 0, "{result}");

    for id in [&full, &incr] {
        let (status, body) = app.get(&format!("/api/v1/backup/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let (_, list) = app.get("/api/v1/backup/list").await;
    assert_eq!(list["items"], json!([]), "{list}");
    // Everything was reclaimed: no backup is left, so no pack is either.
    assert_eq!(packs(&app), (0, 0));
}

#[tokio::test]
async fn deleting_a_backup_reclaims_its_storage_and_spares_the_others() {
    // Encrypted: garbage collection reads sealed entry lists and pack trailers.
    let app = TestApp::spawn(Options {
        env: vec![(
            "STRATA_ENCRYPTION_KEY".into(),
            "retention test key, long enough".into(),
        )],
        ..Default::default()
    })
    .await;
    let a = app.dir.path().join("a");
    let b = app.dir.path().join("b");
    for (dir, seed) in [(&a, 11u64), (&b, 977u64)] {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        write_noise(&dir.join("big.bin"), seed, 6 * MIB);
        write_noise(&dir.join("sub/small.bin"), seed + 1, 100 * 1024);
    }
    app.create_source("a", &a).await;
    app.create_source("b", &b).await;
    let backup_a = backup_ok(&app, "a", "full").await;
    let backup_b = backup_ok(&app, "b", "full").await;
    let (before, count_before) = packs(&app);

    let (status, accepted) = delete(&app, &backup_a, "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let job = app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    let (after, count_after) = packs(&app);
    let reclaimed = before - after;
    eprintln!(
        "packs: {count_before} -> {count_after}, bytes {before} -> {after} (reclaimed {reclaimed}); result {}",
        job["result"]
    );
    assert!(count_after < count_before);
    // About the 6.1 MiB of incompressible data of `a`, plus pack overhead.
    assert!(
        reclaimed >= (6 * MIB) as u64 && reclaimed < (7 * MIB) as u64,
        "reclaimed {reclaimed}"
    );
    assert_eq!(job["result"]["bytes_reclaimed"].as_u64(), Some(reclaimed));

    // The other backup is intact.
    let target = app.dir.path().join("restored-b");
    let r = app.restore(&backup_b, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&b, &target);

    // A new backup of the deleted data finds no stale index entry to deduplicate against.
    let again = backup_ok(&app, "a", "full").await;
    let target = app.dir.path().join("restored-a");
    let r = app.restore(&again, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&a, &target);
    let (grown, _) = packs(&app);
    assert!(grown >= before - 64 * 1024, "{grown} vs {before}");
}

/// Moves a backup in time.
async fn set_created(app: &TestApp, id: &str, at: DateTime<Utc>) {
    let mut db = app.db().await;
    sqlx::query("UPDATE backups SET created_at = $2, completed_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(&mut db)
        .await
        .unwrap();
}

fn noon(days_ago: i64, hour: u32) -> DateTime<Utc> {
    (Utc::now() - chrono::Duration::days(days_ago))
        .date_naive()
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
}

async fn prune(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.post("/api/v1/backup/prune", body).await
}

#[tokio::test]
async fn prune_applies_the_policy_and_keeps_chains() {
    let app = TestApp::spawn(Options::default()).await;
    let src = app.dir.path().join("p");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f.txt"), b"prune me").unwrap();
    app.create_source("p", &src).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(backup_ok(&app, "p", "full").await);
    }
    let (b0, b1, b2, b3) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    set_created(&app, b0, noon(60, 12)).await;
    set_created(&app, b1, noon(30, 12)).await;
    set_created(&app, b2, noon(3, 11)).await;
    set_created(&app, b3, noon(3, 12)).await;

    // Defaults (7 daily, 4 weekly): b2 is not the newest of its day, nor of its week.
    let (status, dry) = prune(&app, json!({"source": "p", "dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(strs(&dry["deleted"]), vec![b2.clone()], "{dry}");
    assert_eq!(dry["count"], 1);
    assert_eq!(strs(&dry["kept"]), vec![b3.clone(), b1.clone(), b0.clone()]);
    // A dry run changes nothing.
    let (_, b) = app.get(&format!("/api/v1/backup/{b2}")).await;
    assert_eq!(b["status"], "complete", "{b}");

    let (_, daily) = prune(&app, json!({"daily": 1, "dry_run": true})).await;
    assert_eq!(strs(&daily["kept"]), vec![b3.clone()], "{daily}");
    assert_eq!(daily["count"], 3);
    let (_, weekly) = prune(&app, json!({"weekly": 2, "dry_run": true})).await;
    assert_eq!(
        strs(&weekly["kept"]),
        vec![b3.clone(), b1.clone()],
        "{weekly}"
    );
    let (_, recent) = prune(&app, json!({"retention_days": 31, "dry_run": true})).await;
    assert_eq!(
        strs(&recent["kept"]),
        vec![b3.clone(), b2.clone(), b1.clone()],
        "{recent}"
    );

    // The source's stored policy applies when the request names none.
    let mut db = app.db().await;
    sqlx::query("UPDATE sources SET retention = '{\"keep_last\": 2}' WHERE name = 'p'")
        .execute(&mut db)
        .await
        .unwrap();
    let (_, stored) = prune(&app, json!({"dry_run": true})).await;
    assert_eq!(
        strs(&stored["kept"]),
        vec![b3.clone(), b2.clone()],
        "{stored}"
    );
    sqlx::query("UPDATE sources SET retention = NULL WHERE name = 'p'")
        .execute(&mut db)
        .await
        .unwrap();

    // Bad input: 400 naming the field, 404 for an unknown source; nothing deleted.
    for (body, field) in [
        (json!({"keep_last": -1}), "keep_last"),
        (json!({"daily": "seven"}), "daily"),
        (json!({"weekly": 1.5}), "weekly"),
        (json!({"dry_run": "yes"}), "dry_run"),
        (json!({"forever": 1}), "forever"),
        (json!({"keep_last": 0}), "keep_last"),
    ] {
        let (status, err) = prune(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {err}");
        assert_eq!(err["error"]["field"], field, "{body} → {err}");
    }
    let (status, err) = prune(&app, json!({"source": "nope"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    assert_eq!(err["error"]["code"], "source_not_found");

    // The real prune deletes what the dry run announced.
    let (status, done) = prune(&app, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{done}");
    assert_eq!(done["dry_run"], false);
    assert_eq!(strs(&done["deleted"]), vec![b2.clone()]);
    assert_eq!(done["count"], 1);
    let job = app.wait_success(done["job_id"].as_str().unwrap()).await;
    assert_eq!(job["kind"], "prune");
    let (status, _) = app.get(&format!("/api/v1/backup/{b2}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for id in [b0, b1, b3] {
        let (status, b) = app.get(&format!("/api/v1/backup/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "complete");
    }
    // Nothing left to delete: 200 and no job.
    let (status, none) = prune(&app, json!({"source": "p"})).await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(none["count"], 0);
    assert_eq!(none["job_id"], Value::Null);

    // Chain protection: keeping the newest incremental keeps its whole chain.
    let chain_src = app.dir.path().join("c");
    std::fs::create_dir_all(&chain_src).unwrap();
    std::fs::write(chain_src.join("1.txt"), b"one").unwrap();
    app.create_source("c", &chain_src).await;
    let f = backup_ok(&app, "c", "full").await;
    std::fs::write(chain_src.join("2.txt"), b"two").unwrap();
    let i1 = backup_ok(&app, "c", "incremental").await;
    std::fs::write(chain_src.join("3.txt"), b"three").unwrap();
    let i2 = backup_ok(&app, "c", "incremental").await;
    let (status, kept) = prune(&app, json!({"source": "c", "keep_last": 1})).await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(strs(&kept["kept"]), vec![i2.clone(), i1.clone(), f.clone()]);
    assert_eq!(kept["count"], 0);
    assert_eq!(kept["job_id"], Value::Null);
    let target = app.dir.path().join("c-restored");
    let r = app.restore(&i2, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&chain_src, &target);
}

/// Registers a repository session by hand, as a running job does.
async fn fake_session(app: &TestApp, started_secs_ago: i64, heartbeat_secs_ago: i64) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    let mut db = app.db().await;
    sqlx::query(
        "INSERT INTO repo_sessions (id, kind, started_at, heartbeat_at)
         VALUES ($1, 'test', now() - make_interval(secs => $2), now() - make_interval(secs => $3))",
    )
    .bind(id)
    .bind(started_secs_ago as f64)
    .bind(heartbeat_secs_ago as f64)
    .execute(&mut db)
    .await
    .unwrap();
    id
}

async fn gc_job(app: &TestApp) -> Value {
    let (status, accepted) = app.post("/api/v1/repository/gc", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    app.wait_success(accepted["job_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn garbage_collection_runs_alongside_backups_and_spares_what_they_may_use() {
    let app = TestApp::spawn(Options {
        workers: 2,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("w");
    std::fs::create_dir_all(&src).unwrap();
    write_noise(&src.join("data.bin"), 5, 2 * MIB);
    app.create_source("w", &src).await;
    let id = backup_ok(&app, "w", "full").await;
    let before = packs(&app);
    assert!(before.1 >= 1);

    // A session that started before the deletion (a backup that may deduplicate
    // against the deleted backup's chunks): the delete job does not wait for it, and
    // condemns the packs without deleting them.
    let live = fake_session(&app, 0, 0).await;
    let (status, accepted) = delete(&app, &id, "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let started = Instant::now();
    let job = app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    let r = &job["result"];
    assert!(r["packs_condemned"].as_u64().unwrap() >= 1, "{job}");
    assert_eq!(r["packs_deleted"], 0, "{job}");
    assert!(r["packs_kept_for_sessions"].as_u64().unwrap() >= 1, "{job}");
    assert!(r["live_sessions"].as_i64().unwrap() >= 1, "{job}");
    assert_eq!(
        packs(&app),
        before,
        "a pack was deleted under a live session"
    );

    // A backup started while a collection runs is not held up by it, and the
    // collection does not delete what the backup writes.
    let other = app.dir.path().join("o");
    std::fs::create_dir_all(&other).unwrap();
    write_noise(&other.join("big.bin"), 77, 24 * MIB);
    app.create_source("o", &other).await;
    let backup = app.backup("o", "full").await;
    let backup_job = backup["job_id"].as_str().unwrap().to_string();
    loop {
        let j = app.job(&backup_job).await;
        if j["status"] == "running" {
            break;
        }
        assert_eq!(j["status"], "queued", "{j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gc = gc_job(&app).await;
    let b = app.wait_success(&backup_job).await;
    eprintln!(
        "gc finished at {}, backup at {}; gc result {}",
        gc["finished_at"], b["finished_at"], gc["result"]
    );
    let target = app.dir.path().join("restored-o");
    let r = app
        .restore(backup["backup_id"].as_str().unwrap(), &target)
        .await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&other, &target);

    // A stale session (its process died) holds nothing back; once the live one ends,
    // the next collection deletes the condemned packs.
    let stale = fake_session(&app, 3600, 3600).await;
    let gc = gc_job(&app).await;
    assert_eq!(gc["result"]["packs_deleted"], 0, "{gc}");
    assert!(
        gc["result"]["stale_sessions_removed"].as_u64().unwrap() >= 1,
        "{gc}"
    );
    let mut db = app.db().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM repo_sessions WHERE id = $1")
        .bind(stale)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    sqlx::query("DELETE FROM repo_sessions WHERE id = $1")
        .bind(live)
        .execute(&mut db)
        .await
        .unwrap();
    let gc = gc_job(&app).await;
    assert!(gc["result"]["packs_deleted"].as_u64().unwrap() >= 1, "{gc}");
    let restored = app.dir.path().join("restored-o2");
    let r = app
        .restore(backup["backup_id"].as_str().unwrap(), &restored)
        .await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_same_tree(&other, &restored);
    let after = packs(&app);
    assert!(
        after.0 + 2 * MIB as u64 <= before.0 + (25 * MIB) as u64,
        "{after:?}"
    );
}
