//! A snapshot's entry list: one JSON line per file, directory or symlink, in depth-first
//! order with children sorted by name bytes, so every directory comes before its content.
//! The list is cut into segments stored as `Tree` blobs, so neither writing nor reading
//! it needs memory proportional to the number of files.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::format::ChunkId;

/// A path as stored in an entry list: relative to the snapshot's root for entry paths,
/// anything for symlink targets. Names that are not UTF-8 are kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RelPath {
    Utf8(String),
    Bytes { hex: String },
}

impl RelPath {
    pub fn from_os(p: &std::ffi::OsStr) -> Self {
        match p.to_str() {
            Some(s) => Self::Utf8(s.to_string()),
            None => Self::Bytes {
                hex: hex::encode(p.as_bytes()),
            },
        }
    }

    /// The stored bytes as they are.
    pub fn to_os(&self) -> anyhow::Result<OsString> {
        Ok(match self {
            Self::Utf8(s) => OsString::from(s),
            Self::Bytes { hex } => {
                OsString::from_vec(hex::decode(hex).context("bad hex in a stored name")?)
            }
        })
    }

    /// The stored path, refused unless it is relative and plain.
    pub fn to_path(&self) -> anyhow::Result<PathBuf> {
        let path = PathBuf::from(self.to_os()?);
        // A manifest is data from storage: never let it write outside the target.
        if path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            anyhow::bail!("entry path {path:?} would escape the restore target");
        }
        Ok(path)
    }

    pub fn display(&self) -> String {
        match self {
            Self::Utf8(s) => s.clone(),
            Self::Bytes { hex } => match hex::decode(hex) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(_) => hex.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    /// In an incremental or differential list: the path (and everything below it) no
    /// longer exists.
    Deleted,
}

/// One item of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path; the root directory itself has the empty path.
    pub path: RelPath,
    pub kind: EntryKind,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    #[serde(default)]
    pub size: u64,
    /// Symlink target: any bytes, absolute or relative, kept as they are (read it with
    /// [`RelPath::to_os`], never [`RelPath::to_path`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RelPath>,
    /// File content, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkId>,
    /// Identity and change time, so a later backup can tell unchanged files without reading them.
    #[serde(default)]
    pub ino: u64,
    #[serde(default)]
    pub ctime_ns: i64,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

impl Entry {
    /// A tombstone for `path`.
    pub fn deleted(path: RelPath) -> Self {
        Self {
            path,
            kind: EntryKind::Deleted,
            mode: 0,
            mtime_ns: 0,
            size: 0,
            target: None,
            chunks: Vec::new(),
            ino: 0,
            ctime_ns: 0,
            uid: 0,
            gid: 0,
        }
    }
}

/// The order of every entry list: depth first, children by name bytes — which is the
/// component-wise comparison of paths (an ancestor comes before its descendants).
pub fn dfs_cmp(a: &std::path::Path, b: &std::path::Path) -> std::cmp::Ordering {
    a.components()
        .map(|c| c.as_os_str().as_bytes())
        .cmp(b.components().map(|c| c.as_os_str().as_bytes()))
}

/// Whether `path` lies strictly below `ancestor`.
pub fn is_below(path: &std::path::Path, ancestor: &std::path::Path) -> bool {
    path != ancestor && path.starts_with(ancestor)
}

type EntryResult = anyhow::Result<(PathBuf, Entry)>;

/// Applies a delta list over a base list, both in [`dfs_cmp`] order, as a stream:
/// a delta entry replaces the base entry at its path (and, unless it is a directory,
/// everything below it); a tombstone removes the path and everything below it.
/// Memory: one entry of each side.
pub struct Overlay<B: Iterator<Item = EntryResult>, D: Iterator<Item = EntryResult>> {
    base: std::iter::Peekable<B>,
    delta: std::iter::Peekable<D>,
    drop_below: Option<PathBuf>,
}

impl<B: Iterator<Item = EntryResult>, D: Iterator<Item = EntryResult>> Overlay<B, D> {
    pub fn new(base: B, delta: D) -> Self {
        Self {
            base: base.peekable(),
            delta: delta.peekable(),
            drop_below: None,
        }
    }
}

fn take_err<T>(
    it: &mut std::iter::Peekable<impl Iterator<Item = anyhow::Result<T>>>,
) -> Option<anyhow::Error> {
    if matches!(it.peek(), Some(Err(_))) {
        return it.next().and_then(|r| r.err());
    }
    None
}

impl<B: Iterator<Item = EntryResult>, D: Iterator<Item = EntryResult>> Iterator for Overlay<B, D> {
    type Item = EntryResult;

    fn next(&mut self) -> Option<EntryResult> {
        loop {
            if let Some(e) = take_err(&mut self.base).or_else(|| take_err(&mut self.delta)) {
                return Some(Err(e));
            }
            let base_path = self
                .base
                .peek()
                .and_then(|r| r.as_ref().map(|(p, _)| p.clone()).ok());
            if let (Some(prefix), Some(bp)) = (&self.drop_below, &base_path) {
                if is_below(bp, prefix) {
                    self.base.next();
                    continue;
                }
            }
            self.drop_below = None;
            let delta_path = self
                .delta
                .peek()
                .and_then(|r| r.as_ref().map(|(p, _)| p.clone()).ok());
            let order = match (&base_path, &delta_path) {
                (None, None) => return None,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(b), Some(d)) => dfs_cmp(b, d),
            };
            match order {
                std::cmp::Ordering::Less => return self.base.next(),
                std::cmp::Ordering::Greater => {
                    let item = self.delta.next()?;
                    if let Ok((path, entry)) = &item {
                        // A base read from the middle of its list (`resolve_from`) may hold
                        // entries below this path without the entry at it: a file or a
                        // tombstone here still removes them. (A whole base holds none.)
                        if entry.kind != EntryKind::Dir {
                            self.drop_below = Some(path.clone());
                        }
                        if entry.kind == EntryKind::Deleted {
                            continue;
                        }
                    }
                    return Some(item);
                }
                std::cmp::Ordering::Equal => {
                    self.base.next();
                    let item = self.delta.next()?;
                    if let Ok((path, entry)) = &item {
                        if entry.kind != EntryKind::Dir {
                            self.drop_below = Some(path.clone());
                        }
                        if entry.kind == EntryKind::Deleted {
                            continue;
                        }
                    }
                    return Some(item);
                }
            }
        }
    }
}

/// Segments are cut at entry boundaries once they reach this size.
pub const SEGMENT_TARGET: usize = 1024 * 1024;

/// Accumulates entry lines and hands out full segments, noting the first path of each
/// (the manifest's `tree_index`).
#[derive(Default)]
pub struct TreeWriter {
    buf: Vec<u8>,
    first: Option<RelPath>,
    index: Vec<RelPath>,
}

impl TreeWriter {
    /// Adds an entry; returns a full segment when one is ready.
    pub fn push(&mut self, entry: &Entry) -> anyhow::Result<Option<Vec<u8>>> {
        if self.buf.is_empty() {
            self.first = Some(entry.path.clone());
        }
        serde_json::to_writer(&mut self.buf, entry)?;
        self.buf.push(b'\n');
        if self.buf.len() >= SEGMENT_TARGET {
            return Ok(self.cut());
        }
        Ok(None)
    }

    fn cut(&mut self) -> Option<Vec<u8>> {
        if self.buf.is_empty() {
            return None;
        }
        self.index.extend(self.first.take());
        Some(std::mem::take(&mut self.buf))
    }

    /// The last, partial segment.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.cut()
    }

    /// The first path of every segment handed out so far, in order.
    pub fn take_index(&mut self) -> Vec<RelPath> {
        std::mem::take(&mut self.index)
    }
}

/// The segment of a list to start reading at so that every entry at or after `start`
/// (in [`dfs_cmp`] order) is read: the last segment whose first path is not after
/// `start`. `0` (read everything) when the list has no index (older manifests) or the
/// index does not fit it.
pub fn first_segment(index: &[RelPath], segments: usize, start: &std::path::Path) -> usize {
    if index.len() != segments {
        return 0;
    }
    let mut at = 0;
    for (i, first) in index.iter().enumerate() {
        match first.to_path() {
            Ok(p) if dfs_cmp(&p, start) != std::cmp::Ordering::Greater => at = i,
            Ok(_) => break,
            Err(_) => return 0,
        }
    }
    at
}

/// Parses one segment into entries.
pub fn parse_segment(segment: &[u8]) -> anyhow::Result<Vec<Entry>> {
    segment
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).context("bad entry in snapshot tree"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_names_survive() {
        let raw = std::ffi::OsStr::from_bytes(b"caf\xe9/na\xefve");
        let rel = RelPath::from_os(raw);
        assert!(matches!(rel, RelPath::Bytes { .. }));
        assert_eq!(rel.to_path().unwrap().as_os_str(), raw);
        let json = serde_json::to_string(&rel).unwrap();
        assert_eq!(serde_json::from_str::<RelPath>(&json).unwrap(), rel);
    }

    fn entry(path: &str, kind: EntryKind, size: u64) -> EntryResult {
        let mut e = Entry::deleted(RelPath::Utf8(path.into()));
        e.kind = kind;
        e.size = size;
        Ok((PathBuf::from(path), e))
    }

    fn paths(it: impl Iterator<Item = EntryResult>) -> Vec<(String, u64)> {
        it.map(|r| r.unwrap())
            .map(|(p, e)| (p.display().to_string(), e.size))
            .collect()
    }

    #[test]
    fn a_base_read_from_the_middle_still_loses_what_a_delta_removed_above_it() {
        use EntryKind::{Deleted as X, Dir as D, File as F};
        let base = [
            ("a", D),
            ("a/b", D),
            ("a/b/1", F),
            ("a/b/2", F),
            ("a/c", F),
            ("z", F),
        ];
        let delta = [("a/b", X), ("a/c", F)];
        let run = |from: usize| {
            let b: Vec<EntryResult> = base[from..].iter().map(|(p, k)| entry(p, *k, 0)).collect();
            let d: Vec<EntryResult> = delta.iter().map(|(p, k)| entry(p, *k, 1)).collect();
            paths(Overlay::new(b.into_iter(), d.into_iter()))
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| p.as_str() >= "a/b/1")
                .collect::<Vec<_>>()
        };
        // Whole, or starting inside the removed directory: the same entries after it.
        assert_eq!(run(0), ["a/c", "z"]);
        assert_eq!(run(2), ["a/c", "z"]);
        assert_eq!(run(3), ["a/c", "z"]);
    }

    #[test]
    fn the_segment_index_points_at_the_segment_holding_a_path() {
        let index: Vec<RelPath> = ["", "a/m", "c"]
            .iter()
            .map(|p| RelPath::Utf8(p.to_string()))
            .collect();
        let at = |p: &str| first_segment(&index, 3, std::path::Path::new(p));
        assert_eq!(
            (at("a"), at("a/m"), at("a/m/x"), at("b"), at("c"), at("d")),
            (0, 1, 1, 1, 2, 2)
        );
        // An index that does not fit the list (an older manifest): from the start.
        assert_eq!(first_segment(&index, 4, std::path::Path::new("d")), 0);
        let mut w = TreeWriter::default();
        let mut segments = 0;
        for i in 0..20_000 {
            let mut e = Entry::deleted(RelPath::Utf8(format!("f{i:06}")));
            e.kind = EntryKind::File;
            segments += usize::from(w.push(&e).unwrap().is_some());
        }
        segments += usize::from(w.finish().is_some());
        let index = w.take_index();
        assert!(segments > 1);
        assert_eq!(index.len(), segments);
        assert_eq!(index[0], RelPath::Utf8("f000000".into()));
    }

    #[test]
    fn dfs_order_puts_a_directory_before_its_content_and_siblings_by_bytes() {
        let mut v = vec!["a.b", "a/x", "a", "", "a/x/y", "b", "a-c"];
        v.sort_by(|x, y| dfs_cmp(std::path::Path::new(x), std::path::Path::new(y)));
        assert_eq!(v, vec!["", "a", "a/x", "a/x/y", "a-c", "a.b", "b"]);
    }

    #[test]
    fn overlay_applies_changes_and_deletions() {
        use EntryKind::*;
        let base = vec![
            entry("", Dir, 0),
            entry("a", Dir, 0),
            entry("a/1", File, 1),
            entry("a/2", File, 2),
            entry("b", Dir, 0),
            entry("b/1", File, 1),
            entry("c", File, 3),
            entry("d", Dir, 0),
            entry("d/x", File, 1),
        ];
        let delta = vec![
            entry("a/2", File, 20), // changed
            entry("a/3", File, 30), // new
            entry("b", Deleted, 0), // directory removed with its content
            entry("c", Dir, 0),     // file became a directory
            entry("c/n", File, 5),
            entry("d", File, 9),    // directory became a file
            entry("e", Deleted, 0), // tombstone for something the base never had
        ];
        let merged = paths(Overlay::new(base.into_iter(), delta.into_iter()));
        let expect: Vec<(String, u64)> = [
            ("", 0),
            ("a", 0),
            ("a/1", 1),
            ("a/2", 20),
            ("a/3", 30),
            ("c", 0),
            ("c/n", 5),
            ("d", 9),
        ]
        .iter()
        .map(|(p, s)| (p.to_string(), *s))
        .collect();
        assert_eq!(merged, expect);
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert!(RelPath::Utf8("../etc/passwd".into()).to_path().is_err());
        assert!(RelPath::Utf8("/etc/passwd".into()).to_path().is_err());
        assert!(RelPath::Utf8("a/./b".into()).to_path().is_ok());
        assert!(RelPath::Utf8("a/b".into()).to_path().is_ok());
    }
}
