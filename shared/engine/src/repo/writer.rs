//! Writing a snapshot: walk the tree, cut files into content-defined chunks, skip chunks
//! the repository already has, compress the rest on every core, pack them, upload the
//! packs and record them in the chunk index. Stages overlap and talk through bounded
//! channels, so memory stays bounded whatever the size of the source.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use strata_core::errors::ErrorCode;

use anyhow::{anyhow, bail, Context};
pub use globset::GlobSet;
use globset::{Glob, GlobSetBuilder};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::chain::EntryStream;
use super::format::{BlobCodec, BlobKind, ChunkId, PACK_TARGET};
use super::index::{DynIndex, Index};
use super::manifest::{SnapshotStats, Warning};
use super::pack::{pack_key, PackBuilder};
use super::progress::{CancelFlag, Progress, Stopped};
use super::tree::{dfs_cmp, is_below, Entry, EntryKind, RelPath, TreeWriter};
use super::Repository;
use strata_catalog as db;
use strata_core::model::FieldError;

/// Compiles exclude patterns; an invalid one is a field error naming it.
pub fn compile_excludes(patterns: &[String]) -> Result<GlobSet, FieldError> {
    let mut b = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        let glob = Glob::new(p).map_err(|e| {
            FieldError::new(
                ErrorCode::InvalidExclude,
                format!("files.exclude[{i}]"),
                e.to_string(),
            )
        })?;
        b.add(glob);
    }
    b.build()
        .map_err(|e| FieldError::new(ErrorCode::InvalidExclude, "files.exclude", e.to_string()))
}

/// Whether a source's exclude patterns leave out `rel` (a path relative to the source's
/// directory): a pattern matches the relative path or its base name.
pub fn is_excluded(excludes: &GlobSet, rel: &Path) -> bool {
    !excludes.is_empty()
        && (excludes.is_match(rel) || rel.file_name().is_some_and(|n| excludes.is_match(n)))
}

/// A byte stream to store as one chunk list (a database dump), read before the files.
pub struct StreamInput {
    pub reader: Box<dyn Read + Send>,
    /// The expected size, for progress (0 when unknown).
    pub size_hint: u64,
}

/// What a stream became.
#[derive(Debug, Clone, Default)]
pub struct StreamOutput {
    pub chunks: Vec<ChunkId>,
    pub size: u64,
}

/// What to back up.
pub struct SnapshotInput {
    /// The directory, when the backup has a files part.
    pub root: Option<PathBuf>,
    pub exclude: Vec<String>,
    /// Relative paths the walk leaves out, with their `-wal`, `-shm` and `-journal`
    /// companions (an SQLite database stored as the database part).
    pub skip: Vec<PathBuf>,
    /// A database dump, read first: its snapshot is the backup's moment.
    pub stream: Option<StreamInput>,
    /// For an incremental or differential: the parent's resolved entries. Files whose
    /// size, mtime, ctime and inode match are not read again, and only differences
    /// (with tombstones for what disappeared) are written. `None` writes a full list.
    pub parent: Option<EntryStream>,
}

/// What writing a snapshot produced; the caller writes the manifest.
#[derive(Debug, Clone)]
pub struct SnapshotOutput {
    pub stream: Option<StreamOutput>,
    pub tree: Vec<ChunkId>,
    /// The first path of each segment of `tree` (see [`Manifest::tree_index`]).
    pub tree_index: Vec<RelPath>,
    pub stats: SnapshotStats,
    pub warnings: Vec<Warning>,
}

struct RawBlob {
    id: ChunkId,
    kind: BlobKind,
    data: Vec<u8>,
}

struct EncodedBlob {
    id: ChunkId,
    kind: BlobKind,
    encoded: Vec<u8>,
    raw_length: usize,
}

/// Writes the data and entry list of a snapshot of `input.root` into the repository.
#[tracing::instrument(skip_all, fields(root = %input.root.as_deref().unwrap_or(Path::new("")).display()))]
pub async fn write_snapshot(
    repo: &Repository,
    index: &DynIndex,
    input: SnapshotInput,
    progress: Arc<Progress>,
    cancel: CancelFlag,
) -> anyhow::Result<SnapshotOutput> {
    let excludes = compile_excludes(&input.exclude)?;
    progress.set_phase("indexing");
    // The caller registered a repository session before this: chunks of packs condemned
    // since are left out, so they are written again rather than referenced.
    let known: HashSet<ChunkId> = index.known_ids().await?;

    let (raw_tx, raw_rx) = mpsc::channel::<RawBlob>(4);
    let (enc_tx, mut enc_rx) = mpsc::channel::<EncodedBlob>(4);

    let codec = repo.codec().clone();
    let chunker = repo.config.chunker;
    let scan_progress = progress.clone();
    let scan_cancel = cancel.clone();
    let parent = input.parent;
    let root = input.root;
    let stream = input.stream;
    let mut skip = Vec::new();
    for path in input.skip {
        skip.extend(strata_core::model::sqlite_files(&path));
    }
    let scan_codec = codec.clone();
    let scanner = tokio::task::spawn_blocking(move || {
        let mut scan = Scanner {
            codec: scan_codec,
            delta: parent.is_some(),
            parent: parent.map(Iterator::peekable),
            gone: None,
            min: chunker.min,
            avg: chunker.avg,
            max: chunker.max,
            excludes,
            skip,
            known,
            tx: raw_tx,
            progress: scan_progress,
            cancel: scan_cancel,
            stats: SnapshotStats::default(),
            warnings: Vec::new(),
            tree: TreeWriter::default(),
            tree_ids: Vec::new(),
        };
        let stream = scan.run(root.as_deref(), stream)?;
        let index = scan.tree.take_index();
        Ok::<_, anyhow::Error>((stream, (scan.tree_ids, index), scan.stats, scan.warnings))
    });

    // Compression uses every core but one for the scanner.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    let raw_rx = Arc::new(Mutex::new(raw_rx));
    let mut compressors = JoinSet::new();
    for _ in 0..workers {
        let rx = raw_rx.clone();
        let tx = enc_tx.clone();
        let codec = codec.clone();
        compressors.spawn_blocking(move || loop {
            let next = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
            let Some(blob) = next else { return };
            let encoded = codec.encode(blob.id, &blob.data);
            let out = EncodedBlob {
                id: blob.id,
                kind: blob.kind,
                encoded,
                raw_length: blob.data.len(),
            };
            if tx.blocking_send(out).is_err() {
                return;
            }
        });
    }
    drop(enc_tx);
    // Only the compressors hold the raw receiver: when they all stop (the packing stage
    // failed or was stopped), the scanner's next send fails instead of waiting forever.
    drop(raw_rx);

    let packing = async {
        let uploads = Arc::new(Semaphore::new(3));
        let mut in_flight = JoinSet::new();
        let mut stored = 0u64;
        let filled = async {
            let mut pack = PackBuilder::new();
            while let Some(blob) = enc_rx.recv().await {
                pack.add(blob.id, blob.kind, &blob.encoded, blob.raw_length);
                if pack.len() >= PACK_TARGET {
                    let full = std::mem::take(&mut pack);
                    let permit = {
                        let _waiting = progress.wait("a free upload slot (3 packs in flight)");
                        uploads.clone().acquire_owned().await?
                    };
                    let (repo, index, progress) = (repo.clone(), index.clone(), progress.clone());
                    in_flight.spawn(async move {
                        let size = upload_pack(&repo, index.as_ref(), full, &progress).await;
                        drop(permit);
                        size
                    });
                }
                while let Some(done) = in_flight.try_join_next() {
                    stored += done??;
                }
            }
            if !pack.is_empty() {
                stored += upload_pack(repo, index.as_ref(), pack, &progress).await?;
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        // Every upload still in flight ends on its own (its transaction commits or rolls
        // back), error or not: an upload aborted in the middle of its transaction could
        // leave a pooled connection holding the pack's lock, on which the job's next
        // attempt, writing the same packs, would wait.
        let mut result = filled;
        while let Some(done) = in_flight.join_next().await {
            match done {
                Ok(Ok(size)) => stored += size,
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(e) => result = result.and(Err(e.into())),
            }
        }
        result.map(|()| stored)
    };
    let packed = packing.await;
    if packed.is_err() {
        // Stop the scanner early: its sends now fail.
        cancel.store(true, Ordering::Relaxed);
    }
    drop(enc_rx);
    while compressors.join_next().await.is_some() {}
    let scanned = scanner.await.context("the scanner panicked")?;
    let stored = packed?;
    let (stream, (tree, tree_index), mut stats, warnings) = scanned?;
    stats.stored_size = stored;
    Ok(SnapshotOutput {
        stream,
        tree,
        tree_index,
        stats,
        warnings,
    })
}

/// Closes, uploads and indexes one pack; returns its size.
/// Uploads a pack and records it in the index; what it waits on is listed in the job's
/// progress (the stall watchdog's log names it).
async fn upload_pack(
    repo: &Repository,
    index: &dyn Index,
    pack: PackBuilder,
    progress: &Progress,
) -> anyhow::Result<u64> {
    let stored = {
        let _waiting = progress.wait("storage: uploading a pack");
        put_pack(repo, pack).await?
    };
    let write = {
        let _waiting = progress.wait("chunk index: the pack's lock");
        index.lock_pack(&stored.id).await?
    };
    {
        let _waiting = progress.wait("storage: checking the uploaded pack");
        ensure_stored(repo, &stored).await?;
    }
    let _waiting = progress.wait("chunk index: recording the pack");
    write.commit(stored.size, &stored.rows).await?;
    Ok(stored.size)
}

/// A pack uploaded, not indexed yet.
pub(crate) struct StoredPack {
    pub id: String,
    pub size: u64,
    pub rows: Vec<db::chunks::ChunkRow>,
    bytes: bytes::Bytes,
}

/// Closes and uploads one pack; the caller indexes it after [`lock_stored_pack`].
pub(crate) async fn put_pack(repo: &Repository, pack: PackBuilder) -> anyhow::Result<StoredPack> {
    let cipher = repo.codec().cipher().cloned();
    let (id, bytes, entries) =
        tokio::task::spawn_blocking(move || pack.finish(cipher.as_ref())).await??;
    let bytes = bytes::Bytes::from(bytes);
    let size = bytes.len() as u64;
    let key = pack_key(&id);
    repo.storage
        .put(&key, bytes.clone())
        .await
        .with_context(|| format!("uploading pack {key}"))?;
    let rows: Vec<db::chunks::ChunkRow> = entries.iter().map(|e| e.row(&id)).collect();
    Ok(StoredPack {
        id,
        size,
        rows,
        bytes,
    })
}

/// Takes the pack's lock in `tx` (held until it commits, with the index rows) and makes
/// sure the object is still there (see [`ensure_stored`]).
pub(crate) async fn lock_stored_pack(
    repo: &Repository,
    tx: &mut sqlx::PgConnection,
    pack: &StoredPack,
) -> anyhow::Result<()> {
    db::repo_lock::pack_xact(tx, &pack.id).await?;
    ensure_stored(repo, pack).await
}

/// Makes sure an uploaded pack's object is still there, its lock held: garbage
/// collection may have swept a byte-identical pack (same id) between the upload and
/// the lock; it cannot any more until the lock is released with the index rows, and
/// after that only once the pack is condemned again.
async fn ensure_stored(repo: &Repository, pack: &StoredPack) -> anyhow::Result<()> {
    let key = pack_key(&pack.id);
    if repo.storage.head(&key).await?.is_none() {
        tracing::info!(pack = %pack.id, "a pack with the same bytes was swept meanwhile; uploading it again");
        repo.storage
            .put(&key, pack.bytes.clone())
            .await
            .with_context(|| format!("uploading pack {key} again"))?;
    }
    Ok(())
}

/// The blocking stage: walks, reads, chunks and hashes.
struct Scanner {
    codec: BlobCodec,
    min: u32,
    avg: u32,
    max: u32,
    excludes: GlobSet,
    skip: Vec<PathBuf>,
    known: HashSet<ChunkId>,
    tx: mpsc::Sender<RawBlob>,
    /// Writing a delta against `parent`.
    delta: bool,
    parent: Option<std::iter::Peekable<EntryStream>>,
    /// The last parent path found deleted: its descendants need no tombstones of their own.
    gone: Option<PathBuf>,
    progress: Arc<Progress>,
    cancel: CancelFlag,
    stats: SnapshotStats,
    warnings: Vec<Warning>,
    tree: TreeWriter,
    tree_ids: Vec<ChunkId>,
}

fn time_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

fn base_entry(path: RelPath, kind: EntryKind, md: &fs::Metadata) -> Entry {
    Entry {
        path,
        kind,
        mode: md.permissions().mode() & 0o7777,
        mtime_ns: time_ns(md.mtime(), md.mtime_nsec()),
        size: 0,
        target: None,
        chunks: Vec::new(),
        ino: md.ino(),
        ctime_ns: time_ns(md.ctime(), md.ctime_nsec()),
        uid: md.uid(),
        gid: md.gid(),
    }
}

impl Scanner {
    fn run(
        &mut self,
        root: Option<&Path>,
        stream: Option<StreamInput>,
    ) -> anyhow::Result<Option<StreamOutput>> {
        self.progress.set_phase("scanning");
        let hint = stream.as_ref().map_or(0, |s| s.size_hint);
        let md = match root {
            Some(root) => {
                let md = fs::metadata(root).with_context(|| {
                    format!("the source directory {} cannot be read", root.display())
                })?;
                if !md.is_dir() {
                    bail!("the source path {} is not a directory", root.display());
                }
                let (files, bytes) = self.count(root, Path::new(""));
                self.progress.files_total.store(files, Ordering::Relaxed);
                self.progress
                    .bytes_total
                    .store(bytes + hint, Ordering::Relaxed);
                Some((root, md))
            }
            None => {
                self.progress.bytes_total.store(hint, Ordering::Relaxed);
                None
            }
        };
        let stream = match stream {
            Some(stream) => {
                self.progress.set_phase("dumping database");
                Some(self.read_stream(stream.reader)?)
            }
            None => None,
        };
        if let Some((root, md)) = md {
            self.walk_root(root, md)?;
        }
        if let Some(segment) = self.tree.finish() {
            self.store_tree_segment(segment)?;
        }
        Ok(stream)
    }

    /// Cuts a stream into database-sized chunks.
    fn read_stream(&mut self, reader: Box<dyn Read + Send>) -> anyhow::Result<StreamOutput> {
        let mut out = StreamOutput::default();
        let chunks = fastcdc::v2020::StreamCDC::new(
            reader,
            super::format::DB_CHUNK_MIN,
            super::format::DB_CHUNK_AVG,
            super::format::DB_CHUNK_MAX,
        );
        for chunk in chunks {
            let chunk = chunk.map_err(|e| anyhow!("reading the database dump: {e}"))?;
            out.size += chunk.data.len() as u64;
            out.chunks.push(self.add_chunk(BlobKind::Data, chunk.data)?);
        }
        self.stats.logical_size += out.size;
        Ok(out)
    }

    fn walk_root(&mut self, root: &Path, md: fs::Metadata) -> anyhow::Result<()> {
        self.progress.set_phase("uploading");

        let prev = self.parent_at(Path::new(""))?;
        self.visit_meta(
            base_entry(RelPath::Utf8(String::new()), EntryKind::Dir, &md),
            prev.as_ref(),
        )?;
        self.stats.dirs += 1;
        self.walk(root, Path::new(""))?;
        // Whatever the parent still lists after the walk no longer exists.
        self.parent_at_end()
    }

    fn excluded(&self, rel: &Path) -> bool {
        self.skip.iter().any(|s| s == rel) || is_excluded(&self.excludes, rel)
    }

    fn sorted_children(dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
        let mut names = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<Vec<_>>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names)
    }

    /// Counts regular files and their bytes, for progress totals.
    fn count(&self, dir: &Path, rel: &Path) -> (u64, u64) {
        let Ok(names) = Self::sorted_children(dir) else {
            return (0, 0);
        };
        let (mut files, mut bytes) = (0, 0);
        for name in names {
            let rel = rel.join(&name);
            if self.excluded(&rel) {
                continue;
            }
            let path = dir.join(&name);
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            if md.is_dir() {
                let (f, b) = self.count(&path, &rel);
                files += f;
                bytes += b;
            } else if md.is_file() {
                files += 1;
                bytes += md.len();
            }
        }
        (files, bytes)
    }

    fn check_cancel(&self) -> anyhow::Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        Ok(())
    }

    fn warn(&mut self, rel: &Path, code: ErrorCode, message: String) {
        tracing::warn!(path = %rel.display(), code = code.as_str(), %message, "backup warning");
        self.warnings.push(Warning {
            path: rel.to_string_lossy().into_owned(),
            code: code.as_str().to_string(),
            message,
        });
    }

    fn walk(&mut self, dir: &Path, rel: &Path) -> anyhow::Result<()> {
        let names = match Self::sorted_children(dir) {
            Ok(n) => n,
            Err(e) => {
                self.warn(
                    rel,
                    ErrorCode::UnreadableDirectory,
                    format!("cannot list directory: {e}"),
                );
                return Ok(());
            }
        };
        for name in names {
            self.check_cancel()?;
            let rel = rel.join(&name);
            if self.excluded(&rel) {
                continue;
            }
            let path = dir.join(&name);
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) => {
                    self.warn(
                        &rel,
                        ErrorCode::Unreadable,
                        format!("cannot read metadata: {e}"),
                    );
                    continue;
                }
            };
            let relp = RelPath::from_os(rel.as_os_str());
            let ft = md.file_type();
            let prev = if ft.is_dir() || ft.is_symlink() || ft.is_file() {
                self.parent_at(&rel)?
            } else {
                None
            };
            if prev.as_ref().is_some_and(|p| p.kind == EntryKind::Dir) && !ft.is_dir() {
                // A directory became something else: its old content goes with it.
                self.gone = Some(rel.clone());
            }
            if ft.is_dir() {
                self.visit_meta(base_entry(relp, EntryKind::Dir, &md), prev.as_ref())?;
                self.stats.dirs += 1;
                self.walk(&path, &rel)?;
            } else if ft.is_symlink() {
                let target = match fs::read_link(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        self.warn(
                            &rel,
                            ErrorCode::Unreadable,
                            format!("cannot read symlink: {e}"),
                        );
                        continue;
                    }
                };
                let mut entry = base_entry(relp, EntryKind::Symlink, &md);
                entry.target = Some(RelPath::from_os(target.as_os_str()));
                self.visit_meta(entry, prev.as_ref())?;
                self.stats.symlinks += 1;
            } else if ft.is_file() {
                if let Some(p) = prev.as_ref().filter(|p| file_unchanged(p, &md)) {
                    // Unchanged since the parent: not read, not written.
                    self.stats.files += 1;
                    self.stats.unchanged_files += 1;
                    self.stats.logical_size += p.size;
                    self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                    self.progress
                        .bytes_done
                        .fetch_add(p.size, Ordering::Relaxed);
                    continue;
                }
                match self.read_file(&path, &rel, &md) {
                    Ok(chunks) => {
                        let mut entry = base_entry(relp, EntryKind::File, &md);
                        entry.size = chunks.1;
                        entry.chunks = chunks.0;
                        self.stats.files += 1;
                        self.stats.changed_files += 1;
                        self.stats.logical_size += entry.size;
                        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                        self.emit(entry)?;
                    }
                    Err(e) if e.is::<Stopped>() || e.is::<PipelineClosed>() => return Err(e),
                    Err(e) => {
                        self.warn(
                            &rel,
                            ErrorCode::Unreadable,
                            format!("cannot read file: {e:#}"),
                        );
                    }
                }
            } else {
                let what = if ft.is_socket() {
                    "socket"
                } else if ft.is_fifo() {
                    "fifo"
                } else {
                    "device"
                };
                self.warn(
                    &rel,
                    ErrorCode::SkippedSpecialFile,
                    format!("{what} skipped: only files, directories and symlinks are backed up"),
                );
            }
        }
        Ok(())
    }

    /// Reads one file into chunks; returns their ids and the bytes read. Never more than
    /// the file's size at open plus [`READ_MARGIN`]: a file that grows meanwhile, or whose
    /// size says nothing (`/proc`-like files say 0), is stored up to that bound with a
    /// `changed_while_reading` warning, so memory and time stay bounded whatever the file
    /// system says.
    fn read_file(
        &mut self,
        path: &Path,
        rel: &Path,
        before: &fs::Metadata,
    ) -> anyhow::Result<(Vec<ChunkId>, u64)> {
        let mut file = open_regular(path)?;
        let size = file.metadata()?.len();
        let limit = size.saturating_add(READ_MARGIN);
        let mut ids = Vec::new();
        let params = (self.min, self.avg, self.max);
        let read = chunk_bounded(&mut file, size, limit, params, |data| {
            ids.push(self.add_chunk(BlobKind::Data, data)?);
            Ok(())
        })?;
        let total = read.bytes;
        if read.cut {
            self.warn(
                rel,
                ErrorCode::ChangedWhileReading,
                format!(
                    "the file grew while it was read: it had {size} bytes when opened and reading \
                     stops {READ_MARGIN} bytes past that; the backup holds its first {total} bytes"
                ),
            );
        } else if size == 0 && total > 0 {
            self.warn(
                rel,
                ErrorCode::ChangedWhileReading,
                format!(
                    "the file's size said 0 bytes but {total} were read (a file system that does not \
                     report sizes); the backup holds the bytes as read"
                ),
            );
        } else if let Ok(after) = fs::symlink_metadata(path) {
            if after.len() != total
                || after.mtime() != before.mtime()
                || after.mtime_nsec() != before.mtime_nsec()
            {
                self.warn(
                    rel,
                    ErrorCode::ChangedWhileReading,
                    "the file changed while it was read; the backup holds the bytes as read".into(),
                );
            }
        }
        Ok((ids, total))
    }

    fn add_chunk(&mut self, kind: BlobKind, data: Vec<u8>) -> anyhow::Result<ChunkId> {
        self.check_cancel()?;
        let id = self.codec.id(&data);
        // Entry-list segments are made here, not read from the source.
        let read = if kind == BlobKind::Data {
            data.len() as u64
        } else {
            0
        };
        self.progress.bytes_done.fetch_add(read, Ordering::Relaxed);
        self.stats.read_bytes += read;
        if self.known.insert(id) {
            self.stats.new_chunks += 1;
            self.tx
                .blocking_send(RawBlob { id, kind, data })
                .map_err(|_| PipelineClosed)?;
        } else {
            self.stats.reused_chunks += 1;
            self.stats.reused_bytes += read;
        }
        Ok(id)
    }

    /// Advances the parent's list up to `rel`. Parent paths before it no longer exist
    /// (a tombstone each, none for their descendants); returns the parent's entry at
    /// `rel`, if any.
    fn parent_at(&mut self, rel: &Path) -> anyhow::Result<Option<Entry>> {
        let Some(mut parent) = self.parent.take() else {
            return Ok(None);
        };
        let found = loop {
            let order = match parent.peek() {
                None => break Ok(None),
                Some(Err(_)) => {
                    break Err(parent
                        .next()
                        .and_then(|r| r.err())
                        .expect("peeked an error"))
                }
                Some(Ok((p, _))) => dfs_cmp(p, rel),
            };
            match order {
                std::cmp::Ordering::Greater => break Ok(None),
                std::cmp::Ordering::Equal => {
                    break parent.next().transpose().map(|o| o.map(|(_, e)| e))
                }
                std::cmp::Ordering::Less => {
                    let Some(Ok((p, _))) = parent.next() else {
                        unreachable!("peeked an entry")
                    };
                    if self.gone.as_ref().is_some_and(|g| is_below(&p, g)) {
                        continue;
                    }
                    if let Err(e) = self.emit(Entry::deleted(RelPath::from_os(p.as_os_str()))) {
                        break Err(e);
                    }
                    self.stats.deleted += 1;
                    self.gone = Some(p);
                }
            }
        };
        self.parent = Some(parent);
        found
    }

    fn parent_at_end(&mut self) -> anyhow::Result<()> {
        if self.parent.is_none() {
            return Ok(());
        }
        // A path that sorts after every real one: drains the parent's list.
        let end = PathBuf::from(std::ffi::OsString::from_vec(vec![0xff; 256]));
        self.parent_at(&end)?;
        Ok(())
    }

    /// Writes a directory or symlink entry unless the parent recorded it identically.
    fn visit_meta(&mut self, entry: Entry, prev: Option<&Entry>) -> anyhow::Result<()> {
        if self.delta && prev.is_some_and(|p| same_meta(p, &entry)) {
            return Ok(());
        }
        self.emit(entry)
    }

    fn emit(&mut self, entry: Entry) -> anyhow::Result<()> {
        if let Some(segment) = self.tree.push(&entry)? {
            self.store_tree_segment(segment)?;
        }
        Ok(())
    }

    fn store_tree_segment(&mut self, segment: Vec<u8>) -> anyhow::Result<()> {
        let id = self.add_chunk(BlobKind::Tree, segment)?;
        self.tree_ids.push(id);
        Ok(())
    }
}

/// The unchanged-file rule: same size, mtime, ctime and inode as the parent's record.
fn file_unchanged(prev: &Entry, md: &fs::Metadata) -> bool {
    prev.kind == EntryKind::File
        && prev.size == md.len()
        && prev.mtime_ns == time_ns(md.mtime(), md.mtime_nsec())
        && prev.ctime_ns == time_ns(md.ctime(), md.ctime_nsec())
        && prev.ino == md.ino()
}

/// Whether a directory or symlink is recorded identically.
fn same_meta(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.mtime_ns == b.mtime_ns
        && a.uid == b.uid
        && a.gid == b.gid
        && a.target == b.target
}

/// How far past its size at open a file is read (1 MiB). See [`Scanner::read_file`].
pub const READ_MARGIN: u64 = 1 << 20;

/// What [`chunk_bounded`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundedRead {
    /// Bytes read (and handed over as chunks).
    pub bytes: u64,
    /// Whether more bytes were there past the limit (they were not read).
    pub cut: bool,
}

/// Cuts at most `limit` bytes of `reader` into content-defined chunks (`(min, avg, max)`)
/// and hands each to `add`, in order. An input whose `size_hint` is at most `max` is
/// read in one go and cut in memory (at most `limit` bytes held); a larger one is
/// streamed (one chunk held). Then one byte more is asked for, to tell whether the input
/// went on past the limit.
pub fn chunk_bounded<R: Read>(
    mut reader: R,
    size_hint: u64,
    limit: u64,
    (min, avg, max): (u32, u32, u32),
    mut add: impl FnMut(Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<BoundedRead> {
    let mut bytes = 0u64;
    {
        let bounded = (&mut reader).take(limit);
        if size_hint <= max as u64 {
            let mut buf = Vec::with_capacity(size_hint.min(limit) as usize);
            let mut bounded = bounded;
            bounded.read_to_end(&mut buf)?;
            let cuts: Vec<(usize, usize)> = fastcdc::v2020::FastCDC::new(&buf, min, avg, max)
                .map(|c| (c.offset, c.length))
                .collect();
            for (offset, length) in cuts {
                bytes += length as u64;
                add(buf[offset..offset + length].to_vec())?;
            }
        } else {
            for chunk in fastcdc::v2020::StreamCDC::new(bounded, min, avg, max) {
                let chunk = chunk.map_err(|e| anyhow!("reading: {e}"))?;
                bytes += chunk.data.len() as u64;
                add(chunk.data)?;
            }
        }
    }
    // A few bytes, not one: some files only read in whole records (`pagemap`: 8 bytes).
    let cut = bytes >= limit && matches!(reader.read(&mut [0u8; 64]), Ok(n) if n > 0);
    Ok(BoundedRead { bytes, cut })
}

/// Opens a file the walk found regular, refusing anything else it may have become since
/// (a FIFO would block the open, a symlink could lead anywhere): `O_NOFOLLOW` and
/// `O_NONBLOCK` for the open, then the descriptor's own type is checked.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "it is no longer a regular file (it was replaced while the backup ran)",
        ));
    }
    // Blocking reads again (O_NONBLOCK only mattered for the open).
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let fd = file.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

/// The upload side stopped; its own error says why.
#[derive(Debug, thiserror::Error)]
#[error("the upload pipeline stopped")]
struct PipelineClosed;

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: (u32, u32, u32) = (
        super::super::format::CHUNK_MIN,
        super::super::format::CHUNK_AVG,
        super::super::format::CHUNK_MAX,
    );

    fn collect<R: Read>(reader: R, hint: u64, limit: u64) -> (BoundedRead, Vec<u8>) {
        let mut out = Vec::new();
        let read = chunk_bounded(reader, hint, limit, PARAMS, |c| {
            out.extend_from_slice(&c);
            Ok(())
        })
        .unwrap();
        assert_eq!(read.bytes, out.len() as u64);
        (read, out)
    }

    #[test]
    fn an_endless_input_whose_size_says_zero_is_read_up_to_the_margin() {
        // What `/proc/self/pagemap` does: size 0, and data without end.
        let (read, out) = collect(std::io::repeat(7), 0, READ_MARGIN);
        assert_eq!(read.bytes, READ_MARGIN);
        assert!(read.cut);
        assert!(out.iter().all(|b| *b == 7));
        // A growing file above the streaming threshold stops at size + margin too.
        let size = 20 << 20;
        let (read, _) = collect(std::io::repeat(1), size, size + READ_MARGIN);
        assert_eq!(
            read,
            BoundedRead {
                bytes: size + READ_MARGIN,
                cut: true
            }
        );
    }

    #[test]
    fn files_that_keep_their_size_are_read_whole_and_exactly() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (read, out) = collect(
            &data[..],
            data.len() as u64,
            data.len() as u64 + READ_MARGIN,
        );
        assert_eq!(
            read,
            BoundedRead {
                bytes: data.len() as u64,
                cut: false
            }
        );
        assert_eq!(out, data);
        // Streamed (over the chunker's maximum).
        let big: Vec<u8> = (0..12_000_000u32).map(|i| (i % 253) as u8).collect();
        let (read, out) = collect(&big[..], big.len() as u64, big.len() as u64 + READ_MARGIN);
        assert!(!read.cut);
        assert_eq!(out, big);
        // A file much longer than its size at open is cut at that size plus the margin.
        let (read, out) = collect(&data[..], 1000, 1000 + READ_MARGIN);
        assert_eq!(
            read,
            BoundedRead {
                bytes: 1000 + READ_MARGIN,
                cut: true
            }
        );
        assert_eq!(out, &data[..out.len()]);
        let empty: &[u8] = &[];
        assert_eq!(
            collect(empty, 0, READ_MARGIN).0,
            BoundedRead {
                bytes: 0,
                cut: false
            }
        );
    }

    #[test]
    fn proc_files_are_bounded_and_small_ones_read_whole() {
        // Reading `/proc/self/pagemap` without a bound grew a worker to 6.4 GB.
        let started = std::time::Instant::now();
        let mut file = open_regular(Path::new("/proc/self/pagemap")).unwrap();
        let size = file.metadata().unwrap().len();
        assert_eq!(size, 0);
        let (read, _) = collect(&mut file, size, size + READ_MARGIN);
        assert_eq!(
            read,
            BoundedRead {
                bytes: READ_MARGIN,
                cut: true
            }
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // `/proc/self/status` says 0 bytes and holds a page: read whole.
        let mut file = open_regular(Path::new("/proc/self/status")).unwrap();
        let (read, out) = collect(&mut file, 0, READ_MARGIN);
        assert!(!read.cut && read.bytes > 0);
        assert!(String::from_utf8_lossy(&out).contains("Pid:"));
    }

    #[test]
    fn only_regular_files_are_opened_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A FIFO opened for reading would block until a writer came: refused at once.
        let err = open_regular(&fifo).unwrap_err();
        assert!(
            err.to_string().contains("no longer a regular file"),
            "{err}"
        );
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("file"), dir.path().join("link")).unwrap();
        assert!(open_regular(&dir.path().join("link")).is_err());
        assert!(open_regular(&dir.path().join("file")).is_ok());
        assert!(open_regular(Path::new("/dev/zero")).is_err());
    }
}
