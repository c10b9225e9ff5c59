//! Looking inside backups (issue 19): the tree at each moment of an incremental chain,
//! single files whole and by range, diffs, search across backups, and who may do it —
//! through the real API, worker, PostgreSQL and storage.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::tree::{snapshot, write_noise, Node};
use strata_tests::{authed_client, Options, TestApp};

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

async fn backup(app: &TestApp, kind: &str) -> String {
    let accepted = app.backup("app", kind).await;
    app.wait_success(s(&accepted, "job_id")).await;
    s(&accepted, "backup_id").to_string()
}

/// `(type, size, mode, mtime ns)` of every path below the root, as the API shows them
/// (the whole tree, recursive, every page followed with a small page size).
async fn tree_of(
    app: &TestApp,
    backup: &str,
    path: &str,
) -> BTreeMap<String, (String, u64, u32, i64)> {
    let mut out = BTreeMap::new();
    let mut from: Option<String> = None;
    loop {
        let mut url = format!("/api/v1/backup/{backup}/tree?recursive=true&limit=3&path={path}");
        if let Some(f) = &from {
            url.push_str(&format!("&from={f}"));
        }
        let (status, page) = app.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        for e in page["entries"].as_array().unwrap() {
            let mtime: chrono::DateTime<chrono::Utc> = s(e, "mtime").parse().unwrap();
            let key = s(e, "path").to_string();
            assert!(
                out.insert(
                    key.clone(),
                    (
                        s(e, "type").to_string(),
                        e["size"].as_u64().unwrap(),
                        e["mode"].as_u64().unwrap() as u32,
                        mtime.timestamp_nanos_opt().unwrap(),
                    )
                )
                .is_none(),
                "{key} listed twice"
            );
        }
        match page["next"].as_str() {
            Some(n) => from = Some(n.to_string()),
            None => return out,
        }
    }
}

/// The same view of the directory on disk.
fn tree_on_disk(root: &Path) -> BTreeMap<String, (String, u64, u32, i64)> {
    let ns = |(s, n): (i64, i64)| s * 1_000_000_000 + n;
    snapshot(root)
        .into_iter()
        .filter(|(path, _)| !path.is_empty())
        .map(|(path, node)| {
            let v = match node {
                Node::Dir { mode, mtime } => ("dir".to_string(), 0, mode & 0o7777, ns(mtime)),
                Node::File {
                    mode, mtime, size, ..
                } => ("file".to_string(), size, mode & 0o7777, ns(mtime)),
                Node::Symlink { mtime, .. } => ("symlink".to_string(), 0, 0o777, ns(mtime)),
            };
            (String::from_utf8(path).unwrap(), v)
        })
        .collect()
}

fn same_trees(
    api: &BTreeMap<String, (String, u64, u32, i64)>,
    disk: &BTreeMap<String, (String, u64, u32, i64)>,
    what: &str,
) {
    let keys_api: Vec<&String> = api.keys().collect();
    let keys_disk: Vec<&String> = disk.keys().collect();
    assert_eq!(keys_api, keys_disk, "{what}: paths");
    for (k, (t, size, mode, mtime)) in disk {
        let (at, asize, amode, amtime) = &api[k];
        assert_eq!(t, at, "{what}: {k} type");
        if t == "file" {
            assert_eq!(size, asize, "{what}: {k} size");
        }
        if t != "symlink" {
            assert_eq!(mode, amode, "{what}: {k} mode");
            assert_eq!(mtime, amtime, "{what}: {k} mtime");
        }
    }
}

#[tokio::test]
async fn browsing_a_chain_shows_each_moment_diffs_and_finds_renamed_files() {
    let app = TestApp::spawn(Options {
        workers: 1,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("app");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::create_dir_all(src.join("data/deep")).unwrap();
    std::fs::write(src.join("readme.txt"), b"version one\n").unwrap();
    std::fs::write(src.join("etc/app.conf"), b"listen 80\n").unwrap();
    write_noise(&src.join("data/big.bin"), 7, 5 * 1024 * 1024 + 123);
    std::fs::write(src.join("data/deep/notes.md"), b"# notes\n").unwrap();
    std::os::unix::fs::symlink("readme.txt", src.join("link")).unwrap();
    app.create_source("app", &src).await;

    let full = backup(&app, "full").await;
    let at_full = tree_on_disk(&src);
    let big_at_full = std::fs::read(src.join("data/big.bin")).unwrap();

    // Edits: content, a chmod, a rename, an addition, a removal.
    std::fs::write(src.join("readme.txt"), b"version two, longer\n").unwrap();
    std::fs::set_permissions(
        src.join("data/big.bin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::rename(src.join("etc/app.conf"), src.join("etc/app-old.conf")).unwrap();
    std::fs::write(src.join("etc/new.conf"), b"added\n").unwrap();
    std::fs::remove_file(src.join("data/deep/notes.md")).unwrap();
    let incr1 = backup(&app, "incremental").await;
    let at_incr1 = tree_on_disk(&src);

    std::fs::write(src.join("later.txt"), b"later\n").unwrap();
    let incr2 = backup(&app, "incremental").await;
    let at_incr2 = tree_on_disk(&src);

    // The tree at each moment equals the source as it was.
    same_trees(&tree_of(&app, &full, "").await, &at_full, "full");
    same_trees(&tree_of(&app, &incr1, "").await, &at_incr1, "incremental 1");
    same_trees(&tree_of(&app, &incr2, "").await, &at_incr2, "incremental 2");
    // A subdirectory, not recursive: its children only, sorted.
    let (status, etc) = app
        .get(&format!("/api/v1/backup/{incr1}/tree?path=etc"))
        .await;
    assert_eq!(status, StatusCode::OK, "{etc}");
    let names: Vec<&str> = etc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| s(e, "name"))
        .collect();
    assert_eq!(names, ["app-old.conf", "new.conf"]);
    assert_eq!(etc["next"], Value::Null);
    let (_, root) = app.get(&format!("/api/v1/backup/{full}/tree?path=/")).await;
    let link = root["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "link")
        .unwrap();
    assert_eq!(
        (s(link, "type"), s(link, "target")),
        ("symlink", "readme.txt")
    );

    // One file, whole and by ranges, byte for byte.
    let admin = authed_client(&app.admin_key);
    let file_url = |b: &str, p: &str| format!("{}/api/v1/backup/{b}/file?path={p}", app.base);
    let res = admin
        .get(file_url(&full, "data/big.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-length"],
        big_at_full.len().to_string().as_str()
    );
    assert!(res.headers()["etag"].to_str().unwrap().starts_with('"'));
    assert_eq!(res.bytes().await.unwrap().as_ref(), &big_at_full[..]);
    for (range, start, end) in [
        ("bytes=0-99", 0usize, 100usize),
        ("bytes=1048570-2097160", 1048570, 2097161),
        ("bytes=5242880-", 5242880, big_at_full.len()),
        ("bytes=-77", big_at_full.len() - 77, big_at_full.len()),
    ] {
        let res = admin
            .get(file_url(&full, "data/big.bin"))
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            res.headers()["content-range"].to_str().unwrap(),
            format!("bytes {start}-{}/{}", end - 1, big_at_full.len()),
            "{range}"
        );
        assert_eq!(
            res.bytes().await.unwrap().as_ref(),
            &big_at_full[start..end],
            "{range}"
        );
    }
    let res = admin
        .get(file_url(&full, "data/big.bin"))
        .header("Range", format!("bytes={}-", big_at_full.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        res.headers()["content-range"].to_str().unwrap(),
        format!("bytes */{}", big_at_full.len())
    );
    let res = admin
        .get(file_url(&full, "readme.txt"))
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"version one\n");
    let res = admin
        .get(file_url(&incr2, "readme.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        b"version two, longer\n"
    );

    // Clear errors.
    for (url, status, code) in [
        (
            format!("/api/v1/backup/{full}/file?path=data"),
            400,
            "not_a_file",
        ),
        (
            format!("/api/v1/backup/{full}/file?path=nope.txt"),
            404,
            "path_not_found",
        ),
        (
            format!("/api/v1/backup/{full}/file?path=../etc/passwd"),
            400,
            "invalid_path",
        ),
        (
            format!("/api/v1/backup/{full}/tree?path=readme.txt"),
            400,
            "not_a_directory",
        ),
        (
            format!("/api/v1/backup/{full}/tree?path=etc/nope"),
            404,
            "path_not_found",
        ),
        (
            format!("/api/v1/backup/{full}/tree?path=a/../../b"),
            400,
            "invalid_path",
        ),
        (
            format!("/api/v1/backup/{full}/tree?from=%%%"),
            400,
            "invalid_cursor",
        ),
        (
            format!("/api/v1/backup/{full}/tree?limit=0"),
            400,
            "invalid_limit",
        ),
        (
            "/api/v1/backup/no-such-backup/tree".to_string(),
            404,
            "backup_not_found",
        ),
        (
            format!("/api/v1/backup/{full}/diff?against=no-such"),
            404,
            "backup_not_found",
        ),
        ("/api/v1/search?glob=a[".to_string(), 400, "invalid_glob"),
        (
            "/api/v1/search?glob=*&newer_than=yesterday".to_string(),
            400,
            "invalid_time",
        ),
    ] {
        let (got, body) = app.get(&url).await;
        assert_eq!(
            (got.as_u16(), body["error"]["code"].as_str().unwrap_or("")),
            (status, code),
            "{url}: {body}"
        );
    }

    // The diff from the full backup to the first incremental: exactly the edits.
    let (status, diff) = app
        .get(&format!("/api/v1/backup/{incr1}/diff?against={full}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    let paths = |k: &str| -> Vec<String> {
        diff[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| s(e, "path").to_string())
            .collect()
    };
    assert_eq!(paths("added"), ["etc/app-old.conf", "etc/new.conf"]);
    assert_eq!(paths("removed"), ["data/deep/notes.md", "etc/app.conf"]);
    assert_eq!(paths("changed"), ["data/big.bin", "readme.txt"]);
    let big = &diff["changed"][0];
    assert_eq!(
        (
            big["before"]["mode"].as_u64(),
            big["after"]["mode"].as_u64()
        ),
        (Some(0o644), Some(0o600)),
        "{big}"
    );
    assert_eq!(
        diff["counts"],
        json!({"added": 2, "removed": 2, "changed": 2})
    );
    // Paged, the same changes in the same order.
    let (_, first) = app
        .get(&format!(
            "/api/v1/backup/{incr1}/diff?against={full}&limit=4"
        ))
        .await;
    let next = s(&first, "next").to_string();
    let (_, second) = app
        .get(&format!(
            "/api/v1/backup/{incr1}/diff?against={full}&limit=4&from={next}"
        ))
        .await;
    let count = |v: &Value| {
        ["added", "removed", "changed"]
            .iter()
            .map(|k| v[k].as_array().unwrap().len())
            .sum::<usize>()
    };
    assert_eq!((count(&first), count(&second)), (4, 2));
    assert_eq!(second["next"], Value::Null);

    // Search finds the renamed file before and after the rename, newest backup first.
    let (status, found) = app.get("/api/v1/search?source=app&glob=app*.conf").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let hits: Vec<(String, String)> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (s(h, "backup_id").to_string(), s(h, "path").to_string()))
        .collect();
    assert_eq!(
        hits,
        [
            (incr2.clone(), "etc/app-old.conf".to_string()),
            (incr1.clone(), "etc/app-old.conf".into()),
            (full.clone(), "etc/app.conf".into()),
        ]
    );
    assert_eq!(found["next"], Value::Null);
    // One result per page: the cursor walks all three.
    let mut seen = Vec::new();
    let mut url = "/api/v1/search?glob=etc/app*.conf&limit=1".to_string();
    loop {
        let (_, page) = app.get(&url).await;
        for h in page["items"].as_array().unwrap() {
            seen.push(s(h, "backup_id").to_string());
        }
        match page["next"].as_str() {
            Some(n) => url = format!("/api/v1/search?glob=etc/app*.conf&limit=1&from={n}"),
            None => break,
        }
        assert!(seen.len() <= 3, "{seen:?}");
    }
    assert_eq!(seen, [incr2.clone(), incr1.clone(), full.clone()]);
    let (_, recent) = app
        .get("/api/v1/search?glob=**/*.md&older_than=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(
        recent["items"],
        json!([]),
        "nothing was modified before 2000"
    );

    // Who may: a viewer browses but fetches no bytes; anonymous callers nothing; a file
    // token opens one file.
    let (_, viewer) = app
        .post("/api/v1/keys", json!({"name": "v", "role": "viewer"}))
        .await;
    let viewer = authed_client(s(&viewer, "key"));
    let tree_url = format!("{}/api/v1/backup/{full}/tree", app.base);
    assert_eq!(
        viewer.get(&tree_url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        viewer
            .get(format!("{}/api/v1/search?glob=*", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        viewer
            .get(file_url(&full, "readme.txt"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let anonymous = reqwest::Client::new();
    for url in [
        tree_url.clone(),
        file_url(&full, "readme.txt"),
        format!("{}/api/v1/backup/{incr1}/diff?against={full}", app.base),
        format!("{}/api/v1/search?glob=*", app.base),
    ] {
        assert_eq!(
            anonymous.get(&url).send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{url}"
        );
    }
    let (_, token) = app
        .post("/api/v1/files/token", json!({"backup_id": full}))
        .await;
    let with_token = format!(
        "{}&token={}",
        file_url(&full, "readme.txt"),
        s(&token, "token")
    );
    let res = anonymous.get(&with_token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"version one\n");
    let other = format!(
        "{}&token={}",
        file_url(&incr1, "readme.txt"),
        s(&token, "token")
    );
    assert_eq!(
        anonymous.get(&other).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // A file token opens files and downloads only, never a listing.
    let listing = format!("{tree_url}?token={}", s(&token, "token"));
    assert_eq!(
        anonymous.get(&listing).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // A directory downloads as an archive with `include`: that subtree and the
    // directories leading to it, nothing else.
    let res = admin
        .get(format!(
            "{}/api/v1/backup/{full}/download?format=zip&include=data/deep",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["data/", "data/deep/", "data/deep/notes.md"],
        "{names:?}"
    );
    for (include, status, code) in [
        ("nope", 404, "path_not_found"),
        ("../x", 400, "invalid_path"),
    ] {
        let (got, body) = app
            .get(&format!("/api/v1/backup/{full}/download?include={include}"))
            .await;
        assert_eq!(
            (got.as_u16(), body["error"]["code"].as_str().unwrap_or("")),
            (status, code),
            "{body}"
        );
        assert_eq!(body["error"]["field"], "include", "{body}");
    }

    // Another source's backup is no baseline.
    let other_src = app.dir.path().join("other");
    std::fs::create_dir_all(&other_src).unwrap();
    std::fs::write(other_src.join("x"), b"x").unwrap();
    app.create_source("other", &other_src).await;
    let accepted = app.backup("other", "full").await;
    app.wait_success(s(&accepted, "job_id")).await;
    let (status, err) = app
        .get(&format!(
            "/api/v1/backup/{full}/diff?against={}",
            s(&accepted, "backup_id")
        ))
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("different_sources")),
        "{err}"
    );
    // A search cursor naming another source's backup (or none) is not this search's.
    for cursor in [
        format!("{}.", s(&accepted, "backup_id")),
        "no-such-backup.".into(),
        "%2E%2E".into(),
    ] {
        let (status, err) = app
            .get(&format!("/api/v1/search?source=app&glob=*&from={cursor}"))
            .await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_cursor")),
            "{cursor}: {err}"
        );
    }
    let (status, err) = app.get("/api/v1/search?glob=*").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("source_required")),
        "{err}"
    );
}

/// A tree of several entry-list segments (12,000 files), an incremental that removes a
/// whole directory: paging through it with cursors (each page read from the segment that
/// holds its cursor) gives exactly the source's tree, and a diff paged by 100 lists every
/// removed path once.
#[tokio::test]
async fn pages_of_a_large_tree_and_diff_match_the_source() {
    let app = TestApp::spawn(Options {
        workers: 1,
        ..Default::default()
    })
    .await;
    let src = app.dir.path().join("app");
    for d in 0..30 {
        let dir = src.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..400 {
            std::fs::File::create(dir.join(format!("f{f:04}"))).unwrap();
        }
    }
    app.create_source("app", &src).await;
    let full = backup(&app, "full").await;
    std::fs::remove_dir_all(src.join("d015")).unwrap();
    std::fs::write(src.join("d020/f0100"), b"now with content").unwrap();
    let incr = backup(&app, "incremental").await;

    let mut listed = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut url = format!("/api/v1/backup/{incr}/tree?recursive=true&limit=1000");
        if let Some(f) = &from {
            url.push_str(&format!("&from={f}"));
        }
        let (status, page) = app.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        listed.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| s(e, "path").to_string()),
        );
        match page["next"].as_str() {
            Some(n) => from = Some(n.to_string()),
            None => break,
        }
    }
    let on_disk: Vec<String> = tree_on_disk(&src).into_keys().collect();
    let mut sorted = listed.clone();
    sorted.sort_by(|a, b| strata_engine::repo::tree::dfs_cmp(Path::new(a), Path::new(b)));
    assert_eq!(listed, sorted, "pages come in tree order");
    listed.sort();
    assert_eq!(listed.len(), 29 * 401);
    assert_eq!(listed, on_disk);

    let (_, last_dir) = app
        .get(&format!("/api/v1/backup/{incr}/tree?path=d029"))
        .await;
    assert_eq!(
        last_dir["entries"].as_array().unwrap().len(),
        400,
        "{last_dir}"
    );
    let (status, gone) = app
        .get(&format!("/api/v1/backup/{incr}/tree?path=d015"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");

    let (mut removed, mut changed, mut counts) = (0, 0, Value::Null);
    let mut from: Option<String> = None;
    loop {
        let mut url = format!("/api/v1/backup/{incr}/diff?against={full}&limit=100");
        if let Some(f) = &from {
            url.push_str(&format!("&from={f}"));
        } else {
            counts = Value::Null;
        }
        let (status, page) = app.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if from.is_none() {
            counts = page["counts"].clone();
        }
        removed += page["removed"].as_array().unwrap().len();
        changed += page["changed"].as_array().unwrap().len();
        assert!(page["added"].as_array().unwrap().is_empty(), "{page}");
        match page["next"].as_str() {
            Some(n) => from = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!((removed, changed), (401, 1));
    assert_eq!(counts, json!({"added": 0, "removed": 401, "changed": 1}));
}
