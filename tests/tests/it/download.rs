//! Downloads: a backup comes back as a tar or zip stream with its chain resolved, to a
//! bearer or a file-token holder, in constant memory whatever its size.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use strata_tests::tree::{
    assert_same_tree, assert_tree_matches, build_sample_tree, noise, snapshot,
};
use strata_tests::{Options, TestApp};

/// Streams a download into `dest`; returns the response's headers.
async fn download_to(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
) -> reqwest::header::HeaderMap {
    let mut res = client.get(url).send().await.expect("download request");
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    let headers = res.headers().clone();
    let mut out = File::create(dest).unwrap();
    while let Some(block) = res.chunk().await.expect("download body") {
        out.write_all(&block).unwrap();
    }
    headers
}

/// Unpacks a tar with the tar crate, then applies what it leaves out: the exact
/// (nanosecond) mtimes of the PAX records, and the root directory's mode and time.
fn unpack_tar(archive: &Path, dest: &Path) {
    let mut ar = tar::Archive::new(File::open(archive).unwrap());
    ar.set_preserve_permissions(true);
    ar.unpack(dest).expect("unpacking the tar");
    let mut ar = tar::Archive::new(File::open(archive).unwrap());
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = dest.join(entry.path().unwrap());
        let mut mtime =
            filetime::FileTime::from_unix_time(entry.header().mtime().unwrap() as i64, 0);
        if let Some(exts) = entry.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                if ext.key().unwrap() == "mtime" {
                    let (s, ns) = ext.value().unwrap().split_once('.').unwrap();
                    mtime =
                        filetime::FileTime::from_unix_time(s.parse().unwrap(), ns.parse().unwrap());
                }
            }
        }
        if entry.header().entry_type().is_symlink() {
            filetime::set_symlink_file_times(&path, mtime, mtime).unwrap();
        } else {
            filetime::set_file_times(&path, mtime, mtime).unwrap();
        }
        if path == dest.join(".") {
            let mode = entry.header().mode().unwrap();
            fs::set_permissions(dest, fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

fn assert_attachment(
    headers: &reqwest::header::HeaderMap,
    backup_id: &str,
    ext: &str,
    ctype: &str,
) {
    assert_eq!(headers["content-type"], ctype);
    let disposition = headers["content-disposition"].to_str().unwrap();
    let prefix = format!("attachment; filename=\"{backup_id}_");
    let stamp = disposition
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(&format!(".{ext}\"")))
        .unwrap_or_else(|| panic!("unexpected Content-Disposition {disposition:?}"));
    // YYYYmmdd_HHMMSS
    assert_eq!(stamp.len(), 15, "{disposition}");
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S").is_ok(),
        "{disposition}"
    );
}

async fn backup_and_wait(app: &TestApp, source: &str, kind: &str) -> String {
    let accepted = app.backup(source, kind).await;
    app.wait_success(accepted["job_id"].as_str().unwrap()).await;
    accepted["backup_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tar_download_resolves_the_chain() {
    let app = TestApp::spawn(Options::default()).await;
    let source = app.dir.path().join("src");
    build_sample_tree(&source, 3 * 1024 * 1024);
    app.create_source("src", &source).await;
    let full = backup_and_wait(&app, "src", "full").await;
    let at_full = snapshot(&source);

    // Change, delete and add between the full and the incremental.
    fs::write(
        source.join("docs/readme.txt"),
        "changed after the full backup\n",
    )
    .unwrap();
    fs::remove_file(source.join("empty.txt")).unwrap();
    fs::remove_dir_all(source.join("docs/deep")).unwrap();
    fs::write(source.join("new.bin"), noise(9, 200_000)).unwrap();
    let incr = backup_and_wait(&app, "src", "incremental").await;

    let url = |id: &str| format!("{}/api/v1/backup/{id}/download", app.base);
    let archive = app.dir.path().join("incr.tar");
    let headers = download_to(&app.client, &url(&incr), &archive).await;
    assert_attachment(&headers, &incr, "tar", "application/x-tar");
    let out = app.dir.path().join("incr-out");
    unpack_tar(&archive, &out);
    assert_same_tree(&source, &out);

    let archive = app.dir.path().join("full.tar");
    let headers = download_to(&app.client, &url(&full), &archive).await;
    assert_attachment(&headers, &full, "tar", "application/x-tar");
    let out = app.dir.path().join("full-out");
    unpack_tar(&archive, &out);
    assert_tree_matches(&at_full, &out, "download of the full backup");
}

/// A file name as a zip download writes it: UTF-8, with `%`, `\\` and the bytes that are
/// not UTF-8 percent-encoded (docs: README, Download).
fn zip_name(raw: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(all) => (all, &[][..]),
            Err(e) => {
                let (ok, after) = rest.split_at(e.valid_up_to());
                let n = e.error_len().unwrap_or(after.len());
                (std::str::from_utf8(ok).unwrap(), &after[..n])
            }
        };
        for c in valid.chars() {
            match c {
                '%' => out.push_str("%25"),
                '\\' => out.push_str("%5C"),
                c => out.push(c),
            }
        }
        for b in bad {
            out.push_str(&format!("%{b:02X}"));
        }
        rest = &rest[valid.len() + bad.len()..];
    }
    out
}

/// Every regular file below `root`: its zip name → bytes and mode.
fn files_by_zip_name(root: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                let name = zip_name(rel.as_os_str().as_bytes());
                let mode = e.metadata().unwrap().mode() & 0o7777;
                out.insert(name, (fs::read(e.path()).unwrap(), mode));
            }
        }
    }
    out
}

#[tokio::test]
async fn zip_download_and_file_tokens() {
    let app = TestApp::spawn(Options::default()).await;
    let source = app.dir.path().join("src");
    build_sample_tree(&source, 2 * 1024 * 1024);
    app.create_source("src", &source).await;
    let id = backup_and_wait(&app, "src", "full").await;
    let url = format!("{}/api/v1/backup/{id}/download", app.base);

    let archive = app.dir.path().join("b.zip");
    let headers = download_to(&app.client, &format!("{url}?format=zip"), &archive).await;
    assert_attachment(&headers, &id, "zip", "application/zip");
    let mut zip = zip::ZipArchive::new(File::open(&archive).unwrap()).expect("a valid zip");
    let expected = files_by_zip_name(&source);
    let mut seen = 0;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        if f.is_dir() || f.is_symlink() {
            continue;
        }
        let name = f.name().unwrap().to_string();
        let (bytes, mode) = expected
            .get(&name)
            .unwrap_or_else(|| panic!("{name:?} is extra in the zip"));
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert!(got == *bytes, "{name:?}: content differs");
        assert_eq!(f.unix_mode().map(|m| m & 0o7777), Some(*mode), "{name:?}");
        seen += 1;
    }
    assert_eq!(seen, expected.len(), "files missing from the zip");
    let link = zip
        .by_name("link-to-readme")
        .expect("the symlink is in the zip");
    assert!(link.is_symlink());
    drop(link);
    assert!(zip.by_name("empty-dir/").unwrap().is_dir());

    // A file token lets a plain client (a browser) download.
    let (status, token) = app.post("/api/v1/files/token", serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let token = token["token"].as_str().unwrap();
    let plain = reqwest::Client::new();
    let tarball = app.dir.path().join("token.tar");
    download_to(&plain, &format!("{url}?token={token}"), &tarball).await;
    let out = app.dir.path().join("token-out");
    unpack_tar(&tarball, &out);
    assert_same_tree(&source, &out);

    let bad = plain
        .get(format!("{url}?token=not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let none = plain.get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn download_errors() {
    // No worker: the backup stays pending.
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let source = app.dir.path().join("src");
    fs::create_dir_all(&source).unwrap();
    app.create_source("src", &source).await;
    let pending = app.backup("src", "full").await;
    let pending = pending["backup_id"].as_str().unwrap();

    let (status, body) = app.get("/api/v1/backup/no-such-backup/download").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "backup_not_found");

    let (status, body) = app
        .get(&format!("/api/v1/backup/{pending}/download?format=rar"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_archive_format");
    assert_eq!(body["error"]["field"], "format");

    let (status, body) = app.get(&format!("/api/v1/backup/{pending}/download")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "backup_not_complete");
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A `Read` over body blocks handed from the async side, for the tar parser's thread.
struct BlockReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl Read for BlockReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[tokio::test]
async fn one_gib_download_keeps_memory_flat() {
    const SIZE: usize = 1 << 30;
    let app = TestApp::spawn(Options::default()).await;
    let source = app.dir.path().join("big");
    fs::create_dir_all(&source).unwrap();
    // A repeating 1 MiB pseudo-random pattern: dedup keeps the backup quick.
    let pattern = noise(42, 1 << 20);
    let mut expected = blake3::Hasher::new();
    {
        let mut f = std::io::BufWriter::new(File::create(source.join("one-gib.bin")).unwrap());
        for _ in 0..SIZE / pattern.len() {
            f.write_all(&pattern).unwrap();
            expected.update(&pattern);
        }
        f.flush().unwrap();
    }
    let expected = expected.finalize();
    app.create_source("big", &source).await;
    let started = Instant::now();
    let id = backup_and_wait(&app, "big", "full").await;
    let backup_secs = started.elapsed().as_secs_f64();

    let pid = app.api_pid().expect("the API runs as a child process");
    let before = vm_rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(vm_rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // The body is parsed as it arrives: the big file's content is hashed, never held.
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    let parser = std::thread::spawn(move || {
        let mut ar = tar::Archive::new(BlockReader {
            rx,
            current: bytes::Bytes::new(),
        });
        let mut found = None;
        for entry in ar.entries().unwrap() {
            let entry = entry.unwrap();
            if entry.path().unwrap() == Path::new("one-gib.bin") {
                let mut h = blake3::Hasher::new();
                let n = std::io::copy(&mut { entry }, &mut h).unwrap();
                found = Some((n, h.finalize()));
            }
        }
        found
    });
    let started = Instant::now();
    // No overall timeout (the shared client has one of 30 s).
    let mut res = reqwest::Client::new()
        .get(format!("{}/api/v1/backup/{id}/download", app.base))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body_bytes = 0u64;
    while let Some(block) = res.chunk().await.expect("download body") {
        body_bytes += block.len() as u64;
        tx.send(block).await.expect("the tar parser stopped early");
    }
    drop(tx);
    let secs = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.await.unwrap();
    let (size, hash) = parser.join().unwrap().expect("one-gib.bin is in the tar");
    assert_eq!(size, SIZE as u64);
    assert_eq!(
        hash, expected,
        "the downloaded content differs from the source"
    );

    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "download of 1 GiB: backup {backup_secs:.1} s, download {body_bytes} bytes in {secs:.1} s ({:.0} MiB/s); API RSS before {:.1} MiB, peak {:.1} MiB, growth {growth_mib:.1} MiB",
        body_bytes as f64 / secs / 1048576.0,
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    assert!(before > 0, "could not read the API's VmRSS");
    assert!(
        growth_mib < 128.0,
        "the API's memory grew by {growth_mib:.1} MiB during a 1 GiB download"
    );
}
