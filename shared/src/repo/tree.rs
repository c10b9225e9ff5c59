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

/// A path relative to the snapshot's root. Names that are not UTF-8 are kept as bytes.
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

    pub fn to_path(&self) -> anyhow::Result<PathBuf> {
        let os = match self {
            Self::Utf8(s) => OsString::from(s),
            Self::Bytes { hex } => {
                OsString::from_vec(hex::decode(hex).context("bad hex in entry path")?)
            }
        };
        let path = PathBuf::from(os);
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
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RelPathOrAbs>,
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

/// A symlink target: any bytes, absolute or relative, kept as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RelPathOrAbs {
    Utf8(String),
    Bytes { hex: String },
}

impl RelPathOrAbs {
    pub fn from_os(p: &std::ffi::OsStr) -> Self {
        match p.to_str() {
            Some(s) => Self::Utf8(s.to_string()),
            None => Self::Bytes {
                hex: hex::encode(p.as_bytes()),
            },
        }
    }
    pub fn to_os(&self) -> anyhow::Result<OsString> {
        Ok(match self {
            Self::Utf8(s) => OsString::from(s),
            Self::Bytes { hex } => OsString::from_vec(hex::decode(hex)?),
        })
    }
}

/// Segments are cut at entry boundaries once they reach this size.
pub const SEGMENT_TARGET: usize = 1024 * 1024;

/// Accumulates entry lines and hands out full segments.
#[derive(Default)]
pub struct TreeWriter {
    buf: Vec<u8>,
}

impl TreeWriter {
    /// Adds an entry; returns a full segment when one is ready.
    pub fn push(&mut self, entry: &Entry) -> anyhow::Result<Option<Vec<u8>>> {
        serde_json::to_writer(&mut self.buf, entry)?;
        self.buf.push(b'\n');
        if self.buf.len() >= SEGMENT_TARGET {
            return Ok(Some(std::mem::take(&mut self.buf)));
        }
        Ok(None)
    }

    /// The last, partial segment.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then_some(self.buf)
    }
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

    #[test]
    fn escaping_paths_are_refused() {
        assert!(RelPath::Utf8("../etc/passwd".into()).to_path().is_err());
        assert!(RelPath::Utf8("/etc/passwd".into()).to_path().is_err());
        assert!(RelPath::Utf8("a/./b".into()).to_path().is_ok());
        assert!(RelPath::Utf8("a/b".into()).to_path().is_ok());
    }
}
