//! Backup chains: a full snapshot holds the complete entry list; an incremental or
//! differential holds a delta (new and changed entries, tombstones) over its parent.
//! Resolving a chain overlays the deltas on the full one, as a stream.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::runtime::Handle;

use super::format::ChunkId;
use super::manifest::Manifest;
use super::reader::ChunkReader;
use super::tree::{parse_segment, Entry, Overlay};
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
    let mut stream: EntryStream = Box::new(SegmentIter::new(
        reader.clone(),
        handle.clone(),
        chain[0].tree.clone(),
    ));
    for delta in &chain[1..] {
        let d = SegmentIter::new(reader.clone(), handle.clone(), delta.tree.clone());
        stream = Box::new(Overlay::new(stream, d));
    }
    stream
}
