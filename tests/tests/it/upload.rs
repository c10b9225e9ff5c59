//! Tests of the upload part of the API: archives in, backups out, and every unsafe or
//! oversized archive refused with its code and nothing written.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::Path;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::Value;
use strata_tests::tree::{noise, snapshot, write_noise, Node};
use strata_tests::{Options, TestApp};

const MIB: usize = 1024 * 1024;

/// A tree an archive can carry: nested folders, binary and text files, an empty file,
/// an empty folder, an executable, a relative symlink, whole-second mtimes.
fn build_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("docs/deep")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::write(root.join("docs/readme.txt"), "hello strata\n".repeat(500)).unwrap();
    std::fs::write(root.join("docs/deep/data.bin"), noise(3, 200_000)).unwrap();
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    std::fs::write(root.join("héllo ☃.txt"), "unicode name\n").unwrap();
    write_noise(&root.join("big.bin"), 11, 4 * MIB);
    let script = root.join("docs/run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../big.bin", root.join("docs/link-to-big")).unwrap();
    for (p, t) in [
        ("docs/deep/data.bin", 1_500_000_000),
        ("docs/readme.txt", 1_600_000_000),
        ("docs/deep", 1_300_000_000),
        ("empty-dir", 1_200_000_000),
    ] {
        filetime::set_file_mtime(root.join(p), filetime::FileTime::from_unix_time(t, 0)).unwrap();
    }
}

fn tar_of(root: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", root).unwrap();
    b.into_inner().unwrap()
}

fn zip_of(root: &Path) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt;
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let mode = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                z.add_symlink(rel, target.to_str().unwrap(), opts).unwrap();
            } else if md.is_dir() {
                z.add_directory(rel, opts.unix_permissions(mode)).unwrap();
                stack.push(e.path());
            } else {
                z.start_file(rel, opts.unix_permissions(mode)).unwrap();
                z.write_all(&std::fs::read(e.path()).unwrap()).unwrap();
            }
        }
    }
    z.finish().unwrap().into_inner()
}

/// A zip of one entry, written by hand around the crate's checks where needed.
fn zip_one(name: &str, data: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file(name, opts).unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap().into_inner()
}

/// A tar of raw headers: names written into the header bytes, as `tar` refuses `..`.
/// (path, type, content, link target)
type TarEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], Option<&'a [u8]>);

fn raw_tar(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, ty, data, link) in entries {
        let mut h = tar::Header::new_ustar();
        let bytes = h.as_mut_bytes();
        bytes[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            bytes[157..157 + l.len()].copy_from_slice(l);
        }
        h.set_entry_type(*ty);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

async fn upload_raw(app: &TestApp, query: &str, ctype: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let res = app
        .client
        .post(format!("{}/api/v1/backup/upload?{query}", app.base))
        .header(CONTENT_TYPE, ctype)
        .body(body)
        .send()
        .await
        .expect("upload request");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn upload_form(
    app: &TestApp,
    fields: &[(&str, &str)],
    filename: &str,
    data: &[u8],
) -> (StatusCode, Value) {
    let boundary = "strata-test-boundary-7d1c";
    let mut body = Vec::new();
    for (k, v) in fields {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        )
        .unwrap();
    }
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .unwrap();
    body.extend_from_slice(data);
    write!(body, "\r\n--{boundary}--\r\n").unwrap();
    upload_raw(
        app,
        "",
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
    .await
}

/// Every path's kind, bytes and mode (and, with `mtimes`, whole-second mtime); the root
/// itself is left out.
fn comparable(root: &Path, mtimes: bool) -> BTreeMap<Vec<u8>, Node> {
    snapshot(root)
        .into_iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, n)| {
            let n = match n {
                Node::Dir { mode, mtime } => Node::Dir {
                    mode,
                    mtime: if mtimes { (mtime.0, 0) } else { (0, 0) },
                },
                Node::File {
                    mode,
                    mtime,
                    size,
                    digest,
                } => Node::File {
                    mode,
                    mtime: if mtimes { (mtime.0, 0) } else { (0, 0) },
                    size,
                    digest,
                },
                Node::Symlink { target, .. } => Node::Symlink {
                    target,
                    mtime: (0, 0),
                },
            };
            (k, n)
        })
        .collect()
}

async fn restore_and_compare(
    app: &TestApp,
    backup_id: &str,
    source: &Path,
    target: &str,
    mtimes: bool,
) {
    let target = app.dir.path().join(target);
    let r = app.restore(backup_id, &target).await;
    app.wait_success(r["job_id"].as_str().unwrap()).await;
    assert_eq!(
        comparable(source, mtimes),
        comparable(&target, mtimes),
        "restored tree of {backup_id}"
    );
}

#[tokio::test]
async fn upload_tar_raw_and_zip_multipart_become_full_backups_restored_identical_and_deduplicated()
{
    let app = TestApp::spawn(Options::default()).await;
    let tree = app.dir.path().join("tree");
    build_tree(&tree);
    let live = app.dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    app.create_source("app", &live).await;

    // Raw tar body, name from the query.
    let (status, body) = upload_raw(
        &app,
        "source=app&name=from-tar",
        "application/x-tar",
        tar_of(&tree),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["backup_id"], "from-tar");
    let job = app.wait_success(body["job_id"].as_str().unwrap()).await;
    assert_eq!(job["kind"], "import", "{job}");
    let (_, first) = app.get("/api/v1/backup/from-tar").await;
    assert_eq!(first["status"], "complete", "{first}");
    assert_eq!(first["type"], "full", "{first}");
    let (_, list) = app.get("/api/v1/backup/list?source=app").await;
    assert_eq!(list["items"][0]["id"], "from-tar", "{list}");
    restore_and_compare(&app, "from-tar", &tree, "restored-tar", true).await;

    // The same content as a zip in a multipart form: the name comes from the file name,
    // and no data is stored twice.
    let (status, body) = upload_form(&app, &[("source", "app")], "again.zip", &zip_of(&tree)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["backup_id"], "again", "{body}");
    app.wait_success(body["job_id"].as_str().unwrap()).await;
    let (_, second) = app.get("/api/v1/backup/again").await;
    assert_eq!(second["status"], "complete", "{second}");
    assert_eq!(second["type"], "full");
    let logical = second["size"].as_i64().unwrap();
    let stored = second["stored_size"].as_i64().unwrap();
    assert!(logical > 4 * MIB as i64, "{second}");
    assert!(
        stored < logical / 20,
        "deduplicated: stored {stored} of {logical}: {second}"
    );
    assert!(
        first["stored_size"].as_i64().unwrap() > 4 * MIB as i64 / 2,
        "{first}"
    );
    restore_and_compare(&app, "again", &tree, "restored-zip", false).await;

    // The upload objects are gone once imported.
    let uploads = app.dir.path().join("data/repo/uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A name in use: 400, and the existing backup is untouched.
    let (status, body) = upload_raw(
        &app,
        "source=app&name=again",
        "application/zip",
        zip_of(&tree),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "backup_name_taken", "{body}");
    assert_eq!(body["error"]["field"], "name", "{body}");
    let (_, again) = app.get("/api/v1/backup/again").await;
    assert_eq!(again["status"], "complete");
}

#[tokio::test]
async fn unsafe_truncated_or_oversized_archives_are_refused_and_nothing_is_written() {
    let app = TestApp::spawn(Options {
        env: vec![
            ("STRATA_UPLOAD_MAX_BYTES".into(), (4 * MIB).to_string()),
            (
                "STRATA_UPLOAD_MAX_UNCOMPRESSED".into(),
                (2 * MIB).to_string(),
            ),
            ("STRATA_UPLOAD_MAX_RATIO".into(), "10".into()),
        ],
        ..Default::default()
    })
    .await;
    let live = app.dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    app.create_source("app", &live).await;

    let tag = uuid::Uuid::new_v4().simple().to_string();
    let evil = format!("evil-{tag}");
    let slip = format!("../{evil}");
    let deep_slip = format!("a/../../{evil}");
    let absolute = std::env::temp_dir().join(format!("abs-{tag}"));
    let absolute = absolute.to_str().unwrap();
    use tar::EntryType::{Char, Regular, Symlink};
    let good_tar = raw_tar(&[(b"f.bin", Regular, &noise(5, 100_000), None)]);
    let mut too_big = Vec::new();
    for i in 0..3u64 {
        too_big.push(noise(i + 20, MIB));
    }
    let names = [b"a.bin".as_slice(), b"b.bin", b"c.bin"];
    let big_entries: Vec<_> = names
        .iter()
        .zip(&too_big)
        .map(|(n, d)| (*n, Regular, d.as_slice(), None))
        .collect();

    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "zip-slip tar",
            raw_tar(&[(slip.as_bytes(), Regular, b"pwned", None)]),
            StatusCode::BAD_REQUEST,
            "path_escapes_root",
        ),
        (
            "zip-slip zip",
            zip_one(&slip, b"pwned"),
            StatusCode::BAD_REQUEST,
            "path_escapes_root",
        ),
        (
            "nested slip",
            raw_tar(&[(deep_slip.as_bytes(), Regular, b"pwned", None)]),
            StatusCode::BAD_REQUEST,
            "path_escapes_root",
        ),
        (
            "absolute tar",
            raw_tar(&[(absolute.as_bytes(), Regular, b"pwned", None)]),
            StatusCode::BAD_REQUEST,
            "path_escapes_root",
        ),
        (
            "absolute zip",
            zip_one(absolute, b"pwned"),
            StatusCode::BAD_REQUEST,
            "path_escapes_root",
        ),
        (
            "symlink out",
            raw_tar(&[(b"etc", Symlink, b"", Some(b"../../etc"))]),
            StatusCode::BAD_REQUEST,
            "symlink_escapes_root",
        ),
        (
            "absolute symlink",
            raw_tar(&[(b"etc", Symlink, b"", Some(b"/etc"))]),
            StatusCode::BAD_REQUEST,
            "symlink_escapes_root",
        ),
        (
            "write through a symlink",
            raw_tar(&[
                (b"d", Symlink, b"", Some(b".")),
                (b"d/x", Regular, b"pwned", None),
            ]),
            StatusCode::BAD_REQUEST,
            "path_escapes_root",
        ),
        (
            "device file",
            raw_tar(&[(b"null", Char, b"", None)]),
            StatusCode::BAD_REQUEST,
            "unsupported_entry",
        ),
        (
            "zip bomb",
            zip_one("zeros.bin", &vec![0u8; 50 * MIB]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "archive_too_large",
        ),
        (
            "high ratio",
            zip_one("zeros.bin", &vec![0u8; 3 * MIB / 2]),
            StatusCode::BAD_REQUEST,
            "compression_ratio_too_high",
        ),
        (
            "too large once extracted",
            raw_tar(&big_entries),
            StatusCode::PAYLOAD_TOO_LARGE,
            "archive_too_large",
        ),
        (
            "truncated tar",
            good_tar[..good_tar.len() / 2].to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_archive",
        ),
        (
            "truncated zip",
            {
                let z = zip_one("f.bin", &noise(6, 100_000));
                z[..z.len() - 30].to_vec()
            },
            StatusCode::BAD_REQUEST,
            "invalid_archive",
        ),
        (
            "not an archive",
            b"hello, this is not an archive".repeat(40),
            StatusCode::BAD_REQUEST,
            "invalid_archive",
        ),
        (
            "body over the limit",
            noise(9, 5 * MIB),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (what, body, status, code) in cases {
        let (got, answer) = upload_raw(&app, "source=app", "application/octet-stream", body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
        if code != "payload_too_large" {
            assert_eq!(answer["error"]["field"], "file", "{what}: {answer}");
        }
    }

    // Nothing was written: no file outside storage, no upload object, no backup, no job.
    for dir in [
        std::env::temp_dir(),
        app.dir.path().to_path_buf(),
        app.dir.path().parent().unwrap().to_path_buf(),
    ] {
        assert!(!dir.join(&evil).exists(), "{}", dir.join(&evil).display());
    }
    assert!(!Path::new(absolute).exists());
    let uploads = app.dir.path().join("data/repo/uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let mut db = app.db().await;
    let backups: i64 = sqlx::query_scalar("SELECT count(*) FROM backups")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!((backups, jobs), (0, 0));

    // The same API still takes a good archive, and an unknown source is a 404.
    let (status, body) =
        upload_raw(&app, "source=nope", "application/x-tar", good_tar.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "source_not_found");
    let (status, body) = upload_raw(&app, "source=app", "application/x-tar", good_tar).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_success(body["job_id"].as_str().unwrap()).await;
}
