//! Building directory trees for tests and comparing them the way a user would: every
//! path, its type, bytes, mode and modification time.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// What a user would compare about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
        mtime: (i64, i64),
    },
    File {
        mode: u32,
        mtime: (i64, i64),
        size: u64,
        digest: String,
    },
    Symlink {
        target: OsString,
        mtime: (i64, i64),
    },
}

/// Every path below `root` (and `root` itself as the empty path), with what it holds.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    visit(root, Path::new(""), &mut out);
    out
}

fn visit(path: &Path, rel: &Path, out: &mut BTreeMap<Vec<u8>, Node>) {
    let md = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mtime = (md.mtime(), md.mtime_nsec());
    let key = rel.as_os_str().to_owned().into_vec();
    if md.file_type().is_symlink() {
        out.insert(
            key,
            Node::Symlink {
                target: fs::read_link(path).unwrap().into_os_string(),
                mtime,
            },
        );
    } else if md.is_dir() {
        out.insert(
            key,
            Node::Dir {
                mode: md.permissions().mode() & 0o7777,
                mtime,
            },
        );
        for e in fs::read_dir(path).unwrap() {
            let e = e.unwrap();
            visit(&e.path(), &rel.join(e.file_name()), out);
        }
    } else {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(fs::File::open(path).unwrap()).unwrap();
        out.insert(
            key,
            Node::File {
                mode: md.permissions().mode() & 0o7777,
                mtime,
                size: md.len(),
                digest: hasher.finalize().to_hex().to_string(),
            },
        );
    }
}

/// Asserts two trees are identical, naming the first difference.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = snapshot(expected);
    let b = snapshot(actual);
    for (k, v) in &a {
        let name = String::from_utf8_lossy(k);
        match b.get(k) {
            None => panic!("{name:?} is missing from {}", actual.display()),
            Some(w) => assert_eq!(v, w, "{name:?} differs"),
        }
    }
    for k in b.keys() {
        assert!(
            a.contains_key(k),
            "{:?} is extra in {}",
            String::from_utf8_lossy(k),
            actual.display()
        );
    }
}

/// Deterministic bytes that do not compress (xorshift), `len` of them.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` bytes of noise to `path` without holding them all in memory.
pub fn write_noise(path: &Path, seed: u64, len: usize) {
    let mut f = fs::File::create(path).unwrap();
    let mut left = len;
    let mut s = seed;
    while left > 0 {
        let n = left.min(4 << 20);
        f.write_all(&noise(s, n)).unwrap();
        // Far-apart seeds per block, so two files with nearby seeds share no block.
        s = s.wrapping_mul(31).wrapping_add(7);
        left -= n;
    }
}

/// The tree of the foundation's round trip: nested folders, binary files, an empty file,
/// an empty folder, symlinks, non-ASCII and non-UTF-8 names, modes, old mtimes, and a
/// file of `big` bytes.
pub fn build_sample_tree(root: &Path, big: usize) {
    fs::create_dir_all(root.join("docs/deep/deeper")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("docs/readme.txt"), "hello strata\n".repeat(1000)).unwrap();
    fs::write(root.join("docs/deep/deeper/data.bin"), noise(1, 300_000)).unwrap();
    fs::write(root.join("empty.txt"), b"").unwrap();
    fs::write(root.join("héllo wörld ☃.txt"), "unicode name\n").unwrap();
    fs::write(root.join("日本語.md"), "# 日本語\n").unwrap();
    let raw_name = OsString::from_vec(b"caf\xe9-latin1.txt".to_vec());
    fs::write(root.join(&raw_name), b"not utf-8 name").unwrap();
    write_noise(&root.join("big.bin"), 7, big);
    std::os::unix::fs::symlink("docs/readme.txt", root.join("link-to-readme")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling-link")).unwrap();
    let script = root.join("docs/run.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let private = root.join("docs/private.key");
    fs::write(&private, "secret-ish").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    // Old, distinct mtimes, set deepest first so parents keep theirs.
    let t = |s: i64| filetime::FileTime::from_unix_time(s, 123_456_789);
    filetime::set_file_mtime(root.join("docs/deep/deeper/data.bin"), t(1_500_000_000)).unwrap();
    filetime::set_file_mtime(root.join("docs/readme.txt"), t(1_600_000_000)).unwrap();
    filetime::set_symlink_file_times(
        root.join("link-to-readme"),
        t(1_650_000_000),
        t(1_650_000_000),
    )
    .unwrap();
    filetime::set_file_mtime(root.join("docs/deep/deeper"), t(1_400_000_000)).unwrap();
    filetime::set_file_mtime(root.join("docs/deep"), t(1_300_000_000)).unwrap();
    filetime::set_file_mtime(root.join("empty-dir"), t(1_200_000_000)).unwrap();
}

/// Asserts a directory matches a snapshot taken earlier with [`snapshot`].
pub fn assert_tree_matches(expected: &BTreeMap<Vec<u8>, Node>, actual: &Path, what: &str) {
    let got = snapshot(actual);
    for (k, v) in expected {
        let name = String::from_utf8_lossy(k);
        match got.get(k) {
            None => panic!("{what}: {name:?} is missing"),
            Some(w) => assert_eq!(v, w, "{what}: {name:?} differs"),
        }
    }
    for k in got.keys() {
        assert!(
            expected.contains_key(k),
            "{what}: {:?} is extra",
            String::from_utf8_lossy(k)
        );
    }
}
