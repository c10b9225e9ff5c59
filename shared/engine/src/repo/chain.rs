//! Backup chains: a full snapshot holds the complete entry list; an incremental or
//! differential holds a delta (new and changed entries, tombstones) over its parent.
//! Resolving a chain overlays the deltas on the full one, as a stream.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::runtime::Handle;

use super::format::ChunkId;
use super::manifest::Manifest;
use super::reader::ChunkReader;
use super::tree::{dfs_cmp, is_below, parse_segment, Entry, EntryKind, Overlay};
use super::Repository;

/// An entry with its path decoded.
pub type EntryResult = anyhow::Result<(PathBuf, Entry)>;

/// A resolved entry stream, for a blocking thread.
pub type EntryStream = Box<dyn Iterator<Item = EntryResult> + Send>;

/// The entries of one list, fetched segment by segment. Blocking: call it from a
/// blocking thread (it drives the async reader with `handle`).
pub struct SegmentIter {
    reader: Arc<ChunkReader>,
    handle: Handle,
    segments: Vec<ChunkId>,
    next_segment: usize,
    buf: std::vec::IntoIter<Entry>,
}

impl SegmentIter {
    pub fn new(reader: Arc<ChunkReader>, handle: Handle, segments: Vec<ChunkId>) -> Self {
        Self {
            reader,
            handle,
            segments,
            next_segment: 0,
            buf: Vec::new().into_iter(),
        }
    }
}

impl Iterator for SegmentIter {
    type Item = EntryResult;

    fn next(&mut self) -> Option<EntryResult> {
        loop {
            if let Some(e) = self.buf.next() {
                return Some(e.path.to_path().map(|p| (p, e)));
            }
            let id = *self.segments.get(self.next_segment)?;
            self.next_segment += 1;
            let fetched = self
                .handle
                .block_on(self.reader.get(id))
                .and_then(|raw| parse_segment(&raw));
            match fetched {
                Ok(entries) => self.buf = entries.into_iter(),
                Err(e) => {
                    // Stop after an error: the rest of the list cannot be trusted.
                    self.next_segment = self.segments.len();
                    return Some(Err(e.context(format!("reading entry list segment {id}"))));
                }
            }
        }
    }
}

/// The manifests of a backup's chain, full first, the backup itself last.
pub async fn load_chain(repo: &Repository, manifest: Manifest) -> anyhow::Result<Vec<Manifest>> {
    let mut chain = Vec::with_capacity(manifest.chain.len().max(1));
    for id in manifest
        .chain
        .iter()
        .take(manifest.chain.len().saturating_sub(1))
    {
        chain.push(repo.get_manifest(id).await?);
    }
    chain.push(manifest);
    if chain[0].backup_type != "full" {
        anyhow::bail!(
            "the chain of backup {} does not start with a full backup",
            chain
                .last()
                .map(|m| m.backup_id.as_str())
                .unwrap_or_default()
        );
    }
    Ok(chain)
}

/// The tree as it was at the last backup of `chain`. Blocking iterator.
pub fn resolve(reader: Arc<ChunkReader>, handle: Handle, chain: &[Manifest]) -> EntryStream {
    resolve_from(reader, handle, chain, None)
}

/// [`resolve`], for a reader that needs only the entries at or after `start` (in
/// [`dfs_cmp`] order): the full backup's list is read from the segment that holds
/// `start` (by its `tree_index`), so a page deep in a large tree does not read every
/// segment before it. The stream may still begin with entries before `start`. The
/// deltas of the chain are read whole: an entry of theirs before `start` (a tombstone of
/// an ancestor directory) can remove entries after it.
pub fn resolve_from(
    reader: Arc<ChunkReader>,
    handle: Handle,
    chain: &[Manifest],
    start: Option<&std::path::Path>,
) -> EntryStream {
    let base = &chain[0];
    let skip = start.map_or(0, |s| {
        super::tree::first_segment(&base.tree_index, base.tree.len(), s)
    });
    let mut stream: EntryStream = Box::new(SegmentIter::new(
        reader.clone(),
        handle.clone(),
        base.tree[skip..].to_vec(),
    ));
    for delta in &chain[1..] {
        let d = SegmentIter::new(reader.clone(), handle.clone(), delta.tree.clone());
        stream = Box::new(Overlay::new(stream, d));
    }
    stream
}

/// What a tree had that another does not (see [`removed_between`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// Every entry missing from the second tree (files, directories, symlinks; the
    /// content of a missing directory included).
    pub count: u64,
    /// The topmost missing paths (a missing directory once, not its content), in
    /// tree order, at most the `limit` given.
    pub paths: Vec<String>,
    /// Whether more topmost paths were missing than listed.
    pub truncated: bool,
}

/// The entries of `before` that `after` does not hold, both streams in tree (DFS)
/// order, read once side by side: memory holds one entry of each and the list.
pub fn removed_between(
    before: impl Iterator<Item = EntryResult>,
    after: impl Iterator<Item = EntryResult>,
    limit: usize,
) -> anyhow::Result<Removed> {
    let mut after = after.peekable();
    let mut out = Removed::default();
    let mut gone: Option<PathBuf> = None;
    for item in before {
        let (path, entry) = item?;
        if entry.kind == EntryKind::Deleted {
            continue;
        }
        if gone.as_ref().is_some_and(|g| is_below(&path, g)) {
            out.count += 1;
            continue;
        }
        let present = loop {
            match after.peek() {
                Some(Ok((p, _))) => match dfs_cmp(p, &path) {
                    std::cmp::Ordering::Less => {
                        after.next();
                    }
                    std::cmp::Ordering::Equal => break true,
                    std::cmp::Ordering::Greater => break false,
                },
                Some(Err(_)) => {
                    return Err(after.next().and_then(|r| r.err()).expect("peeked an error"))
                }
                None => break false,
            }
        };
        if !present {
            out.count += 1;
            if out.paths.len() < limit {
                out.paths.push(path.to_string_lossy().into_owned());
            } else {
                out.truncated = true;
            }
            gone = Some(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::RelPath;

    fn list(items: &[(&str, EntryKind)]) -> Vec<EntryResult> {
        items
            .iter()
            .map(|(p, k)| {
                let mut e = Entry::deleted(RelPath::Utf8((*p).to_string()));
                e.kind = *k;
                Ok((PathBuf::from(p), e))
            })
            .collect()
    }

    #[test]
    fn removed_lists_topmost_missing_paths_and_counts_everything() {
        use EntryKind::*;
        let before = list(&[
            ("", Dir),
            ("a.txt", File),
            ("later", Dir),
            ("later/inner", Dir),
            ("later/inner/z.txt", File),
            ("new.txt", File),
            ("sub", Dir),
            ("sub/kept.txt", File),
            ("sub/old.txt", File),
        ]);
        let after = list(&[
            ("", Dir),
            ("a.txt", File),
            ("b.txt", File),
            ("sub", Dir),
            ("sub/kept.txt", File),
        ]);
        let r = removed_between(before.into_iter(), after.into_iter(), 100).unwrap();
        assert_eq!(r.paths, ["later", "new.txt", "sub/old.txt"]);
        assert_eq!(r.count, 5);
        assert!(!r.truncated);
        let before = list(&[("", Dir), ("x", File), ("y", File), ("z", File)]);
        let r = removed_between(before.into_iter(), list(&[("", Dir)]).into_iter(), 2).unwrap();
        assert_eq!((r.paths.len(), r.count, r.truncated), (2, 3, true));
        // An error on either side is an error.
        let mut bad = list(&[("", Dir)]);
        bad.push(Err(anyhow::anyhow!("damaged segment")));
        let before = list(&[("", Dir), ("x", File)]);
        assert!(removed_between(before.into_iter(), bad.into_iter(), 2).is_err());
    }
}
