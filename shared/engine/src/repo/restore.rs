//! Writing a snapshot's tree back to disk: into a staging directory that is swapped
//! into place only when complete.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::format::ChunkId;
use super::index::DynIndex;
use super::manifest::Manifest;
use super::progress::{CancelFlag, Progress, Stopped};
use super::tree::{Entry, EntryKind};
use super::Repository;

use super::reader::{ChunkReader, PARALLEL_CHUNKS};

/// One step for the blocking writer.
enum Op {
    Dir(Entry),
    Symlink(Entry),
    FileStart(Entry),
    Data(Bytes),
    FileEnd,
}

/// What a restore wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// Entries sent from the resolving thread to the fetcher at a time.
const BATCH_ENTRIES: usize = 2048;

/// Whether `path` is wanted by a subset restore: inside an included path, or a
/// directory on the way to one (created so the included paths have a home).
pub fn included(path: &Path, include: &[PathBuf]) -> bool {
    include.is_empty()
        || include
            .iter()
            .any(|inc| path.starts_with(inc) || inc.starts_with(path))
}

/// Restores the last backup of `chain` (full first) into `staging`, which must not
/// exist yet. With a non-empty `include`, only those relative paths (and the
/// directories leading to them) are restored. With `durable`, the tree is flushed to
/// disk before returning (needed when it will replace live data that is then deleted).
#[tracing::instrument(skip_all, fields(backup_id = %chain.last().map(|m| m.backup_id.as_str()).unwrap_or_default(), staging = %staging.display()))]
#[allow(clippy::too_many_arguments)]
pub async fn restore_into(
    repo: &Repository,
    index: &DynIndex,
    chain: &[Manifest],
    include: &[PathBuf],
    staging: &Path,
    durable: bool,
    progress: Arc<Progress>,
    cancel: CancelFlag,
) -> anyhow::Result<RestoreStats> {
    let last = chain.last().context("empty backup chain")?;
    if include.is_empty() {
        progress
            .bytes_total
            .store(last.stats.logical_size, Ordering::Relaxed);
        progress
            .files_total
            .store(last.stats.files, Ordering::Relaxed);
    }
    progress.set_phase("restoring");

    let reader = Arc::new(ChunkReader::new(repo.clone(), index.clone()));
    // The chain is resolved on a blocking thread and handed over in batches.
    let (batch_tx, mut batch_rx) = mpsc::channel::<anyhow::Result<Vec<Entry>>>(2);
    let entries = super::chain::resolve(reader.clone(), tokio::runtime::Handle::current(), chain);
    let include_owned = include.to_vec();
    let resolver_cancel = cancel.clone();
    let resolver = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH_ENTRIES);
        for item in entries {
            if resolver_cancel.load(Ordering::Relaxed) {
                return;
            }
            match item {
                Ok((path, entry)) => {
                    if included(&path, &include_owned) {
                        batch.push(entry);
                    }
                }
                Err(e) => {
                    let _ = batch_tx.blocking_send(Err(e));
                    return;
                }
            }
            if batch.len() >= BATCH_ENTRIES
                && batch_tx
                    .blocking_send(Ok(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(BATCH_ENTRIES),
                    )))
                    .is_err()
            {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = batch_tx.blocking_send(Ok(batch));
        }
    });

    let (tx, rx) = mpsc::channel::<Op>(8);
    let writer_progress = progress.clone();
    let root = staging.to_path_buf();
    let writer =
        tokio::task::spawn_blocking(move || write_ops(&root, rx, &writer_progress, durable));

    let produce = async {
        while let Some(entries) = batch_rx.recv().await {
            let entries = entries?;
            if cancel.load(Ordering::Relaxed) {
                return Err(Stopped.into());
            }
            let wanted: Vec<ChunkId> = entries
                .iter()
                .flat_map(|e| e.chunks.iter().copied())
                .collect();
            let locations = Arc::new(reader.locate(&wanted).await?);
            if let Some(missing) = wanted.iter().find(|id| !locations.contains_key(id)) {
                let owner = entries.iter().find(|e| e.chunks.contains(missing));
                bail!(
                    "chunk {missing} of {} is not in the chunk index",
                    owner.map(|e| e.path.display()).unwrap_or_default()
                );
            }
            // Flatten the batch into ops; chunk ops are fetched in parallel, in order.
            let mut plan: Vec<Result<Op, (ChunkId, String)>> = Vec::new();
            for entry in entries {
                match entry.kind {
                    EntryKind::Dir => plan.push(Ok(Op::Dir(entry))),
                    EntryKind::Symlink => plan.push(Ok(Op::Symlink(entry))),
                    EntryKind::File => {
                        let chunks = entry.chunks.clone();
                        let path = entry.path.display();
                        plan.push(Ok(Op::FileStart(entry)));
                        plan.extend(chunks.into_iter().map(|c| Err((c, path.clone()))));
                        plan.push(Ok(Op::FileEnd));
                    }
                    EntryKind::Deleted => {}
                }
            }
            let reader = &reader;
            let mut ops = futures::stream::iter(plan)
                .map(|item| {
                    let locations = locations.clone();
                    async move {
                        match item {
                            Ok(op) => Ok(op),
                            Err((id, path)) => reader
                                .fetch(id, &locations[&id])
                                .await
                                .map(Op::Data)
                                .with_context(|| format!("restoring {path}")),
                        }
                    }
                })
                .buffered(PARALLEL_CHUNKS);
            while let Some(op) = ops.try_next().await? {
                // Large files hold many chunks: a cancel is seen between two of them.
                if cancel.load(Ordering::Relaxed) {
                    return Err(Stopped.into());
                }
                if tx.send(op).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    let produced = produce.await;
    drop(tx);
    drop(batch_rx);
    let written = writer.await.context("the restore writer panicked")?;
    resolver.await.context("the chain resolver panicked")?;
    // The resolver stops at a cancel without a word: the entries it did not send were
    // never restored, so the tree is incomplete whatever the other stages say.
    if cancel.load(Ordering::Relaxed) {
        return Err(Stopped.into());
    }
    produced?;
    written
}

fn set_mtime(path: &Path, mtime_ns: i64, symlink: bool) -> std::io::Result<()> {
    let t = filetime::FileTime::from_unix_time(
        mtime_ns.div_euclid(1_000_000_000),
        mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    if symlink {
        filetime::set_symlink_file_times(path, t, t)
    } else {
        filetime::set_file_times(path, t, t)
    }
}

fn write_ops(
    root: &Path,
    mut rx: mpsc::Receiver<Op>,
    progress: &Progress,
    durable: bool,
) -> anyhow::Result<RestoreStats> {
    let mut stats = RestoreStats::default();
    let mut dirs: Vec<(PathBuf, u32, i64)> = Vec::new();
    let mut current: Option<(File, PathBuf, Entry, u64)> = None;
    while let Some(op) = rx.blocking_recv() {
        match op {
            Op::Dir(entry) => {
                let path = root.join(entry.path.to_path()?);
                fs::create_dir_all(&path)
                    .with_context(|| format!("creating directory {}", path.display()))?;
                dirs.push((path, entry.mode, entry.mtime_ns));
                stats.dirs += 1;
            }
            Op::Symlink(entry) => {
                let path = root.join(entry.path.to_path()?);
                let target = entry
                    .target
                    .as_ref()
                    .context("symlink entry without a target")?
                    .to_os()?;
                std::os::unix::fs::symlink(&target, &path)
                    .with_context(|| format!("creating symlink {}", path.display()))?;
                set_mtime(&path, entry.mtime_ns, true)
                    .with_context(|| format!("setting the time of {}", path.display()))?;
                stats.symlinks += 1;
            }
            Op::FileStart(entry) => {
                let path = root.join(entry.path.to_path()?);
                let file = File::create(&path)
                    .with_context(|| format!("creating file {}", path.display()))?;
                current = Some((file, path, entry, 0));
            }
            Op::Data(data) => {
                let (file, path, _, written) =
                    current.as_mut().context("file data outside a file")?;
                file.write_all(&data)
                    .with_context(|| format!("writing {}", path.display()))?;
                *written += data.len() as u64;
                progress
                    .bytes_done
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Op::FileEnd => {
                let (file, path, entry, written) =
                    current.take().context("end of a file never started")?;
                if written != entry.size {
                    bail!(
                        "{}: restored {written} bytes but the backup recorded {}",
                        path.display(),
                        entry.size
                    );
                }
                // No fsync per file: when durability matters, one syncfs below makes
                // the whole tree durable before it is swapped in, at a fraction of the cost.
                drop(file);
                fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))
                    .with_context(|| format!("setting the mode of {}", path.display()))?;
                set_mtime(&path, entry.mtime_ns, false)
                    .with_context(|| format!("setting the time of {}", path.display()))?;
                stats.files += 1;
                stats.bytes += written;
                progress.files_done.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if current.is_some() {
        bail!("the restore stopped in the middle of a file");
    }
    // Deepest first, so a read-only directory is made read-only after its content.
    for (path, mode, mtime) in dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(*mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        set_mtime(path, *mtime, false)
            .with_context(|| format!("setting the time of {}", path.display()))?;
    }
    if durable {
        sync_filesystem(root)?;
    }
    Ok(stats)
}

/// Flushes the filesystem holding `path` to disk (`syncfs`).
pub fn sync_filesystem(path: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the descriptor is valid for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("flushing {} to disk", path.display()));
    }
    Ok(())
}

/// The staging directory of a restore into `target`: beside it, so the swap is a rename
/// on one filesystem.
pub fn staging_path(target: &Path, job_id: &str) -> anyhow::Result<PathBuf> {
    let parent = target
        .parent()
        .with_context(|| format!("{} has no parent directory", target.display()))?;
    let name = target
        .file_name()
        .with_context(|| format!("{} has no name", target.display()))?;
    let mut staged = std::ffi::OsString::from(".strata-restore-");
    staged.push(name);
    staged.push(format!("-{job_id}"));
    Ok(parent.join(staged))
}

/// Puts a complete staging directory in place of `target` in one atomic step
/// (`renameat2(RENAME_EXCHANGE)`), then removes what was there before. When the target
/// does not exist the staging directory is simply renamed.
pub fn swap_into_place(staging: &Path, target: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::rename(staging, target)
                .with_context(|| format!("moving {} to {}", staging.display(), target.display()))?;
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", target.display())),
        Ok(_) => {}
    }
    let a = CString::new(staging.as_os_str().as_bytes())?;
    let b = CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(err)
            .with_context(|| format!("swapping {} into {}", staging.display(), target.display()));
    }
    // `staging` now holds the previous content.
    remove_all(staging)
}

/// Removes a directory tree, making read-only directories writable first.
pub fn remove_all(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
        Ok(md) if !md.is_dir() => return Ok(fs::remove_file(path)?),
        Ok(_) => {}
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    fn unlock(p: &Path) {
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    unlock(&e.path());
                }
            }
        }
    }
    unlock(path);
    fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}
