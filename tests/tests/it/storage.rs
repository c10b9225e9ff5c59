//! Conformance suite for the `Storage` trait, run against every backend: a local directory and a
//! real S3-compatible server (started by scripts/test).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use strata_storage as storage;
use strata_storage::{self, DynStorage, ObjectMeta, S3Options, S3Storage, Storage, StorageError};

/// The S3 secret the tests use; no description or Debug output may contain it.
const TEST_SECRET: &str = "strata-testsecret-do-not-print";

/// Deterministic, incompressible-ish bytes so that an offset mix-up cannot go unnoticed.
fn pattern(len: usize, seed: u64) -> Bytes {
    Bytes::from(strata_tests::tree::noise(seed, len))
}

fn is_not_found<T: std::fmt::Debug>(r: &Result<T, StorageError>) -> bool {
    matches!(r, Err(StorageError::NotFound(_)))
}

/// Asserts `list(prefix)` returns exactly `expected` (key, size), in key order.
async fn assert_list(storage: &DynStorage, prefix: &str, expected: &[(&str, u64)]) {
    let got = storage
        .list(prefix)
        .await
        .unwrap_or_else(|e| panic!("list({prefix:?}): {e:#}"));
    let want: Vec<ObjectMeta> = expected
        .iter()
        .map(|(k, s)| ObjectMeta {
            key: k.to_string(),
            size: *s,
        })
        .collect();
    assert_eq!(got, want, "list({prefix:?}) on {}", storage.describe());
}

/// Every behaviour of the `Storage` contract that the repository code relies on. Expects an
/// empty storage.
async fn conformance(storage: DynStorage) {
    let s = &storage;
    let where_ = s.describe();

    // --- description and health
    assert!(!where_.is_empty());
    assert!(
        !where_.contains(TEST_SECRET),
        "describe() leaks the secret: {where_}"
    );
    let debug = format!("{s:?}");
    assert!(
        !debug.contains(TEST_SECRET),
        "Debug output leaks the secret: {debug}"
    );
    s.check()
        .await
        .unwrap_or_else(|e| panic!("check() on {where_}: {e:#}"));
    assert_list(s, "", &[]).await;

    // --- missing objects
    assert!(is_not_found(&s.get("config").await), "get of a missing key");
    assert!(
        is_not_found(&s.get("packs/zz/missing").await),
        "get of a missing nested key"
    );
    assert!(
        is_not_found(&s.get_range("config", 0, 1).await),
        "get_range of a missing key"
    );
    assert_eq!(s.head("config").await.unwrap(), None);
    assert_eq!(s.head("packs/zz/missing").await.unwrap(), None);

    // --- round trips: empty, small, 5 MiB
    s.put("objects/empty", Bytes::new()).await.unwrap();
    assert_eq!(s.get("objects/empty").await.unwrap(), Bytes::new());
    assert_eq!(s.head("objects/empty").await.unwrap(), Some(0));

    let small = Bytes::from_static(b"hello, strata");
    s.put("config", small.clone()).await.unwrap();
    assert_eq!(s.get("config").await.unwrap(), small);
    assert_eq!(s.head("config").await.unwrap(), Some(small.len() as u64));

    const BIG: usize = 5 * 1024 * 1024;
    let big = pattern(BIG, 1);
    s.put("packs/ff/big", big.clone()).await.unwrap();
    let got = s.get("packs/ff/big").await.unwrap();
    assert_eq!(got.len(), BIG);
    assert!(got == big, "5 MiB object came back different");
    assert_eq!(s.head("packs/ff/big").await.unwrap(), Some(BIG as u64));

    // --- ranges
    let n = BIG as u64;
    for (offset, len) in [
        (0u64, 1u64),
        (0, 100),
        (12_345, 4096),
        (1024 * 1024 - 7, 3 * 1024 * 1024), // spans MiB boundaries
        (n - 100, 100),                     // exactly at the end
        (n - 1, 1),
        (0, n), // the whole object
    ] {
        let got = s
            .get_range("packs/ff/big", offset, len)
            .await
            .unwrap_or_else(|e| panic!("get_range({offset}, {len}): {e:#}"));
        assert!(
            got == big.slice(offset as usize..(offset + len) as usize),
            "get_range({offset}, {len}) returned the wrong bytes"
        );
    }
    assert_eq!(
        s.get_range("packs/ff/big", n, 0).await.unwrap(),
        Bytes::new(),
        "an empty range at the very end is fine"
    );
    assert_eq!(
        s.get_range("config", 7, 6).await.unwrap(),
        Bytes::from_static(b"strata")
    );
    for (offset, len) in [
        (n - 10, 11),
        (n, 1),
        (n + 1, 0),
        (n + 100, 10),
        (u64::MAX, 2),
    ] {
        let r = s.get_range("packs/ff/big", offset, len).await;
        assert!(
            r.is_err() && !is_not_found(&r),
            "get_range({offset}, {len}) past the end must fail (not NotFound), got {:?}",
            r.map(|b| b.len())
        );
    }
    assert!(
        s.get_range("objects/empty", 0, 1).await.is_err(),
        "range of an empty object"
    );

    // --- overwrite replaces (with a shorter object: no stale tail)
    let replacement = Bytes::from_static(b"v2");
    s.put("config", replacement.clone()).await.unwrap();
    assert_eq!(s.get("config").await.unwrap(), replacement);
    assert_eq!(s.head("config").await.unwrap(), Some(2));
    s.put("packs/ff/big", pattern(1000, 2)).await.unwrap();
    assert_eq!(s.get("packs/ff/big").await.unwrap(), pattern(1000, 2));
    s.delete("packs/ff/big").await.unwrap();

    // --- overwrites are atomic: concurrent readers see the old or the new object, whole
    let key = "snapshots/atomic/manifest";
    const OBJ: usize = 256 * 1024;
    s.put(key, Bytes::from(vec![0u8; OBJ])).await.unwrap();
    let writer = {
        let s = Arc::clone(s);
        tokio::spawn(async move {
            for i in 1..=20u8 {
                s.put(key, Bytes::from(vec![i; OBJ])).await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let got = s.get(key).await.unwrap();
        assert_eq!(got.len(), OBJ, "a reader saw a partial object");
        assert!(
            got.iter().all(|b| *b == got[0]),
            "a reader saw a mix of two objects"
        );
        reads += 1;
    }
    writer.await.unwrap();
    assert_eq!(s.get(key).await.unwrap(), Bytes::from(vec![20u8; OBJ]));
    s.delete(key).await.unwrap();

    // --- listing with nested prefixes
    for (k, v) in [
        ("packs/aa/1", "a"),
        ("packs/ab/2", "bb"),
        ("packs/ab/3", "ccc"),
        ("packs/b0/4", "dddd"),
        ("snapshots/x/manifest", "manifest"),
        ("snapshots/xy/manifest", "other"),
    ] {
        s.put(k, Bytes::from(v)).await.unwrap();
    }
    assert_list(
        s,
        "packs/",
        &[
            ("packs/aa/1", 1),
            ("packs/ab/2", 2),
            ("packs/ab/3", 3),
            ("packs/b0/4", 4),
        ],
    )
    .await;
    assert_list(
        s,
        "packs/a",
        &[("packs/aa/1", 1), ("packs/ab/2", 2), ("packs/ab/3", 3)],
    )
    .await;
    assert_list(s, "packs/ab/", &[("packs/ab/2", 2), ("packs/ab/3", 3)]).await;
    assert_list(s, "packs/ab/3", &[("packs/ab/3", 3)]).await;
    assert_list(s, "snapshots/x/", &[("snapshots/x/manifest", 8)]).await;
    assert_list(
        s,
        "snapshots/x",
        &[("snapshots/x/manifest", 8), ("snapshots/xy/manifest", 5)],
    )
    .await;
    assert_list(s, "nothing/", &[]).await;
    assert_list(s, "packs/zz/", &[]).await;
    assert_list(s, "config/", &[]).await; // "config" is an object, not a directory
    let everything = [
        ("config", 2),
        ("objects/empty", 0),
        ("packs/aa/1", 1),
        ("packs/ab/2", 2),
        ("packs/ab/3", 3),
        ("packs/b0/4", 4),
        ("snapshots/x/manifest", 8),
        ("snapshots/xy/manifest", 5),
    ];
    assert_list(s, "", &everything).await;

    // --- listing is complete past one page (S3 pages hold 1000 keys)
    const MANY: usize = 1100;
    futures::stream::iter(0..MANY)
        .map(|i| {
            let s = Arc::clone(s);
            async move {
                s.put(&format!("many/{i:05}"), Bytes::from(i.to_string()))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
        .unwrap();
    let listed = s.list("many/").await.unwrap();
    let want: Vec<ObjectMeta> = (0..MANY)
        .map(|i| ObjectMeta {
            key: format!("many/{i:05}"),
            size: i.to_string().len() as u64,
        })
        .collect();
    assert_eq!(listed.len(), MANY, "list must paginate");
    assert_eq!(listed, want);
    let all = s.list("").await.unwrap();
    assert_eq!(all.len(), MANY + everything.len());
    assert!(
        all.windows(2).all(|w| w[0].key < w[1].key),
        "list must be sorted"
    );

    // --- delete
    s.delete("packs/ab/2").await.unwrap();
    assert!(is_not_found(&s.get("packs/ab/2").await));
    assert_eq!(s.head("packs/ab/2").await.unwrap(), None);
    assert_list(s, "packs/ab/", &[("packs/ab/3", 3)]).await;
    s.delete("packs/ab/2").await.expect("deleting twice is Ok");
    s.delete("never/existed")
        .await
        .expect("deleting a missing key is Ok");
    s.delete("objects/empty").await.unwrap();
    assert_eq!(s.head("objects/empty").await.unwrap(), None);
    // Deleting the last object under a prefix leaves nothing behind in listings.
    s.delete("packs/ab/3").await.unwrap();
    assert_list(s, "packs/ab", &[]).await;
    s.put("packs/ab/2", Bytes::from("again")).await.unwrap();
    assert_eq!(s.get("packs/ab/2").await.unwrap(), Bytes::from("again"));

    // --- keys that could escape the root are refused by every backend
    for bad in ["../escape", "/absolute", "a/../../b", "a//b", ""] {
        let r = s.put(bad, Bytes::from("x")).await;
        assert!(
            r.is_err() && !is_not_found(&r),
            "put({bad:?}) must be refused"
        );
        assert!(s.get(bad).await.is_err(), "get({bad:?}) must be refused");
    }

    // --- clean up everything; the storage ends empty
    let keys: Vec<String> = s
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    futures::stream::iter(keys)
        .map(|k| {
            let s = Arc::clone(s);
            async move { s.delete(&k).await }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
        .unwrap();
    assert_list(s, "", &[]).await;
    s.check().await.unwrap();
}

fn file_url(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_storage_conformance() {
    let dir = tempfile::tempdir().unwrap();
    // open() creates a missing root directory.
    let root = dir.path().join("repo").join("nested");
    let storage = storage::open(&file_url(&root), &S3Options::default())
        .await
        .unwrap();
    assert!(root.is_dir(), "open() must create the root directory");
    assert!(
        storage.describe().starts_with("file:///"),
        "{}",
        storage.describe()
    );

    // Leftovers of an interrupted put must never show up as objects.
    std::fs::create_dir_all(root.join("packs/aa")).unwrap();
    std::fs::write(root.join(".tmp-1-1"), b"partial").unwrap();
    std::fs::write(root.join("packs/aa/.tmp-99-7"), b"partial").unwrap();

    conformance(storage).await;

    // Nothing was written outside the root.
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("repo")]);
}

#[tokio::test]
async fn local_storage_refuses_escaping_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let storage = storage::open(&file_url(&root), &S3Options::default())
        .await
        .unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();

    for key in [
        "../victim",
        "a/../../victim",
        "/etc/passwd",
        "..",
        "./config",
    ] {
        let r = storage.put(key, Bytes::from("evil")).await;
        assert!(
            r.is_err() && !is_not_found(&r),
            "put({key:?}) must be refused"
        );
        assert!(storage.get(key).await.is_err(), "get({key:?})");
        assert!(
            storage.get_range(key, 0, 1).await.is_err(),
            "get_range({key:?})"
        );
        assert!(storage.head(key).await.is_err(), "head({key:?})");
        assert!(storage.delete(key).await.is_err(), "delete({key:?})");
    }
    assert!(storage.list("../").await.is_err(), "list(\"../\")");
    assert!(storage.list("/").await.is_err(), "list(\"/\")");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

#[tokio::test]
async fn local_storage_check_fails_without_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gone");
    let storage = storage::open(&file_url(&root), &S3Options::default())
        .await
        .unwrap();
    storage.check().await.unwrap();
    std::fs::remove_dir(&root).unwrap();
    assert!(storage.check().await.is_err(), "check() with no root");
}

#[tokio::test]
async fn s3_storage_conformance() {
    let endpoint = std::env::var("STRATA_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("STRATA_TEST_S3_ENDPOINT is not set: run scripts/test, which starts the S3 server")
    });
    let opts = S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some(TEST_SECRET.into()),
        force_path_style: true,
        ..Default::default()
    };
    let bucket = format!("strata-test-{}", uuid::Uuid::new_v4().simple());
    let bucket = &bucket[..bucket.len().min(63)];

    let root = S3Storage::new(bucket, "", &opts).await.unwrap();
    root.create_bucket_if_missing().await.unwrap();
    root.create_bucket_if_missing()
        .await
        .expect("creating an existing bucket is Ok");

    // Objects outside the prefix, including a string-prefix sibling, must stay invisible.
    root.put("outside", Bytes::from("x")).await.unwrap();
    root.put("some/prefixx/obj", Bytes::from("x"))
        .await
        .unwrap();
    root.put("some/prefix-sibling/config", Bytes::from("x"))
        .await
        .unwrap();

    let storage = storage::open(&format!("s3://{bucket}/some/prefix/"), &opts)
        .await
        .unwrap();
    assert_eq!(storage.describe(), format!("s3://{bucket}/some/prefix"));
    conformance(Arc::clone(&storage)).await;

    // Keys really live under the prefix, and the outsiders were left alone.
    storage.put("config", Bytes::from("cfg")).await.unwrap();
    assert_eq!(
        root.get("some/prefix/config").await.unwrap(),
        Bytes::from("cfg")
    );
    let outsiders: BTreeMap<String, u64> = root
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.key, m.size))
        .collect();
    assert_eq!(
        outsiders.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "outside",
            "some/prefix-sibling/config",
            "some/prefix/config",
            "some/prefixx/obj"
        ]
    );

    // A bucket that does not exist fails check(), with a message that names the bucket and
    // not the secret.
    let missing = format!("strata-missing-{}", uuid::Uuid::new_v4().simple());
    let missing = &missing[..missing.len().min(63)];
    let absent = storage::open(&format!("s3://{missing}/x"), &opts)
        .await
        .unwrap();
    let err = absent.check().await.expect_err("check() must fail");
    let msg = format!("{err:#} {err:?}");
    eprintln!("check() error for a missing bucket: {err:#}");
    assert!(msg.contains(missing), "{msg}");
    assert!(!msg.contains(TEST_SECRET), "{msg}");
}

#[tokio::test]
async fn open_rejects_unknown_schemes() {
    for url in [
        "ftp://x",
        "relative/path",
        "file://relative/path",
        "s3://",
        "http://bucket/x",
    ] {
        match storage::open(url, &S3Options::default()).await {
            Err(StorageError::InvalidUrl(msg)) => {
                assert!(
                    msg.contains("file://") && msg.contains("s3://"),
                    "the message should name the accepted schemes: {msg}"
                );
            }
            other => panic!("open({url:?}) should be InvalidUrl, got {other:?}"),
        }
    }
}

#[test]
fn s3_options_debug_hides_the_secret() {
    let opts = S3Options {
        endpoint: Some("http://127.0.0.1:9000".into()),
        access_key_id: Some("AKIDEXAMPLE".into()),
        secret_access_key: Some("supersecret".into()),
        ..Default::default()
    };
    let debug = format!("{opts:?}");
    assert!(!debug.contains("supersecret"), "{debug}");
    assert!(debug.contains("[REDACTED]"), "{debug}");
    assert!(debug.contains("AKIDEXAMPLE"), "{debug}");
}
