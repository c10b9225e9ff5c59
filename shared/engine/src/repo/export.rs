//! Exporting a backup as an archive stream (tar or zip), or its database part as the
//! database's own file, for downloads.
//!
//! The chain is resolved into entries on a blocking thread, file contents are fetched
//! (a few chunks at a time, in order) on the runtime, and a second blocking thread
//! writes the archive into bounded blocks sent through a small channel. Memory stays
//! bounded by the reader's pack cache, the chunks in flight and the channel, whatever
//! the backup's size. When the receiver is dropped (the client went away) every stage
//! stops at its next send.
//!
//! Tar keeps names and symlink targets as raw bytes (GNU long names when needed), the
//! mode, and the mtime to the nanosecond (a PAX `mtime` record when it has a fraction).
//! Zip names are UTF-8 and safe for any extractor: `\`, `%` and bytes that are not
//! UTF-8 are percent-encoded (see `zip_name`); times are the DOS timestamp (2-second
//! resolution, UTC).
//!
//! An archive carries the backup's database part as one more file (see
//! [`database_path`]); a database download is that file alone (an SQLite database, or
//! `pg_dump`'s plain SQL), its chunks fetched in order like a file's.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::format::ChunkId;
use super::index::DynIndex;
use super::manifest::{DatabasePart, Manifest};
use super::reader::ChunkReader;
use super::tree::{Entry, EntryKind, RelPath};
use super::Repository;
use strata_core::model::ArchiveFormat;

/// Size of the blocks sent to the client.
pub const BLOCK: usize = 128 * 1024;
/// Blocks waiting in the channel to the client.
const BODY_BLOCKS: usize = 2;
/// Chunks fetched ahead of the archive writer.
const PARALLEL_CHUNKS: usize = 4;
/// Entries handed from the resolver to the fetcher at a time.
const BATCH_ENTRIES: usize = 1024;
/// Chunks of a database part located in the index at a time (a dump of many GB lists
/// hundreds of thousands).
const BATCH_DATABASE_CHUNKS: usize = 1024;

/// The archive as a stream of blocks; an `Err` means the archive is incomplete and the
/// response must be aborted.
pub type ArchiveStream = mpsc::Receiver<io::Result<Bytes>>;

/// One step for the archive writer.
enum Op {
    Dir(PathBuf, Entry),
    Symlink(PathBuf, Entry),
    FileStart(PathBuf, Entry),
    Data(Bytes),
    FileEnd,
    /// Every entry was sent.
    Done,
    Fail(anyhow::Error),
}

/// What an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Content {
    /// An archive of the backup: its files (when `files`) and its database part (when
    /// `database` and it has one) as a file at [`database_path`].
    Archive {
        format: ArchiveFormat,
        files: bool,
        database: bool,
    },
    /// The database part alone, as its own file (SQLite database or plain SQL).
    Database,
}

impl Content {
    fn name(self) -> &'static str {
        match self {
            Content::Archive { format, .. } => format.as_str(),
            Content::Database => "database",
        }
    }
}

/// Where an archive of a backup carries its database part: an SQLite file that lives in
/// the files part at its own path there (the archive looks like the directory did);
/// otherwise `database.db` (SQLite) or `database.sql` (PostgreSQL), at the root of an
/// archive without files and under `.strata/` beside the files of one with them.
pub fn database_path(part: &DatabasePart, with_files: bool) -> PathBuf {
    match (&part.inside_files, with_files) {
        (Some(inside), true) => PathBuf::from(inside),
        _ => {
            let name = match part.engine.as_str() {
                "sqlite" => "database.db",
                _ => "database.sql",
            };
            if with_files {
                Path::new(".strata").join(name)
            } else {
                PathBuf::from(name)
            }
        }
    }
}

/// Starts exporting the last backup of `chain` (full first) as `format`, its files and
/// its database part (see [`export_content`]).
pub fn export<G: Send + 'static>(
    repo: Repository,
    index: DynIndex,
    chain: Vec<Manifest>,
    format: ArchiveFormat,
    stall: std::time::Duration,
    guard: G,
) -> ArchiveStream {
    export_content(
        repo,
        index,
        chain,
        Content::Archive {
            format,
            files: true,
            database: true,
        },
        Vec::new(),
        stall,
        guard,
    )
}

/// Whether `path` belongs to a download limited to `include` (relative paths): it is one
/// of them, lies below one, or is a directory above one (so the archive holds the
/// directories that lead to what was asked for). No `include`: everything.
pub fn included(path: &Path, include: &[PathBuf]) -> bool {
    include.is_empty()
        || include
            .iter()
            .any(|i| path.starts_with(i) || i.starts_with(path))
}

/// Starts exporting `content` of the last backup of `chain` (full first); returns the
/// stream of blocks. A client that takes no block for `stall` is given up on (it would
/// hold the download's memory and permit forever). `guard` (a download permit) is held
/// while the output is being written and dropped as soon as the export ends, whatever
/// the client does. Must be called on a Tokio runtime.
pub fn export_content<G: Send + 'static>(
    repo: Repository,
    index: DynIndex,
    chain: Vec<Manifest>,
    content: Content,
    include: Vec<PathBuf>,
    stall: std::time::Duration,
    guard: G,
) -> ArchiveStream {
    let (body_tx, body_rx) = mpsc::channel(BODY_BLOCKS);
    let (op_tx, op_rx) = mpsc::channel::<Op>(PARALLEL_CHUNKS * 2);
    let last = chain.last();
    let backup_id = last.map(|m| m.backup_id.clone()).unwrap_or_default();
    let has_files = last.is_some_and(|m| m.has_files);
    let with_files = matches!(content, Content::Archive { files: true, .. }) && has_files;
    let with_database = matches!(
        content,
        Content::Archive { database: true, .. } | Content::Database
    );
    let database = last
        .and_then(|m| m.database.clone())
        .filter(|_| with_database)
        .map(|part| (database_path(&part, with_files), part))
        .filter(|(path, _)| included(path, &include));
    // Chunks are read one by one: many downloads may run at once in one API process,
    // and a pack cache would hold 16 MiB packs for each.
    let reader = Arc::new(ChunkReader::ranged(repo, index));
    let files_chain = if with_files { chain } else { Vec::new() };
    tokio::spawn(produce(reader, files_chain, database, include, op_tx));
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Handle::current();
        let sink = ChannelWriter::new(body_tx.clone(), stall);
        let written = match content {
            Content::Archive {
                format: ArchiveFormat::Tar,
                ..
            } => write_tar(op_rx, sink),
            Content::Archive {
                format: ArchiveFormat::Zip,
                ..
            } => write_zip(op_rx, sink),
            Content::Database => write_raw(op_rx, sink),
        };
        let format = content.name();
        match written {
            Ok(bytes) => tracing::info!(%backup_id, %format, bytes, "download complete"),
            Err(e) if is_disconnect(&e) => {
                tracing::info!(%backup_id, "download stopped: the client went away")
            }
            Err(e) if is_stalled(&e) => {
                tracing::warn!(%backup_id, stall_secs = stall.as_secs(), "download stopped: the client took nothing for too long");
                // Should the client read again, the archive must end in an error, never
                // look complete; the channel is full, so this waits for room (or for
                // the response to be dropped).
                let tx = body_tx.clone();
                runtime.spawn(async move {
                    let _ = tx
                        .send(Err(io::Error::other(
                            "the client took nothing for too long",
                        )))
                        .await;
                });
            }
            Err(e) => {
                tracing::error!(%backup_id, error = %format!("{e:#}"), "download failed");
                let _ = body_tx.blocking_send(Err(io::Error::other(format!(
                    "the archive could not be completed: {e:#}"
                ))));
            }
        }
        drop(guard);
        release_freed_memory();
    });
    body_rx
}

/// Gives the memory a finished download freed back to the system. The blocks and chunks
/// of a download are allocated on several threads; glibc keeps what they free in
/// per-thread arenas, so without this the process stays at its peak after a burst of
/// downloads (measured: 434 MB after 100 abandoned ones).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn is_disconnect(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn is_stalled(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
}

/// Resolves the chain (when it is not empty) and fetches file contents, then the
/// database part's (when there is one, at its path), sending ops in archive order.
async fn produce(
    reader: Arc<ChunkReader>,
    chain: Vec<Manifest>,
    database: Option<(PathBuf, DatabasePart)>,
    include: Vec<PathBuf>,
    tx: mpsc::Sender<Op>,
) {
    let (batch_tx, batch_rx) = mpsc::channel::<anyhow::Result<Vec<(PathBuf, Entry)>>>(2);
    // A file of the tree at the database's path (a source whose spec changed between
    // backups of a chain) gives way to the database: an archive never lists a name twice.
    let skip = database.as_ref().map(|(path, _)| path.clone());
    let resolver = if chain.is_empty() {
        drop(batch_tx);
        None
    } else {
        let entries =
            super::chain::resolve(reader.clone(), tokio::runtime::Handle::current(), &chain);
        Some(tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(BATCH_ENTRIES);
            for item in entries {
                match item {
                    Ok(pair) if skip.as_ref() == Some(&pair.0) => {}
                    Ok(pair) if !included(&pair.0, &include) => {}
                    Ok(pair) => batch.push(pair),
                    Err(e) => {
                        let _ = batch_tx.blocking_send(Err(e));
                        return;
                    }
                }
                if batch.len() >= BATCH_ENTRIES
                    && batch_tx
                        .blocking_send(Ok(std::mem::take(&mut batch)))
                        .is_err()
                {
                    return;
                }
            }
            if !batch.is_empty() {
                let _ = batch_tx.blocking_send(Ok(batch));
            }
        }))
    };
    let sent = async {
        send_batches(&reader, batch_rx, &tx).await?;
        if let Some((path, part)) = &database {
            send_database(&reader, path, part, &tx).await?;
        }
        anyhow::Ok(())
    };
    let last = match sent.await {
        Ok(()) => Op::Done,
        Err(e) => Op::Fail(e),
    };
    let _ = tx.send(last).await;
    if let Some(resolver) = resolver {
        if resolver.await.is_err() {
            tracing::error!("the chain resolver of a download panicked");
        }
    }
}

/// The database part as one file at `path`: its chunks located a batch at a time and
/// fetched a few at a time, in order.
async fn send_database(
    reader: &ChunkReader,
    path: &Path,
    part: &DatabasePart,
    tx: &mpsc::Sender<Op>,
) -> anyhow::Result<()> {
    let entry = Entry {
        path: RelPath::from_os(path.as_os_str()),
        kind: EntryKind::File,
        // A database holds the application's data: readable by its owner only.
        mode: 0o600,
        mtime_ns: part
            .snapshot_at
            .timestamp_nanos_opt()
            .unwrap_or_else(|| part.snapshot_at.timestamp() * 1_000_000_000),
        size: part.size,
        target: None,
        chunks: Vec::new(),
        ino: 0,
        ctime_ns: 0,
        uid: 0,
        gid: 0,
    };
    if tx
        .send(Op::FileStart(path.to_path_buf(), entry))
        .await
        .is_err()
    {
        return Ok(());
    }
    for batch in part.chunks.chunks(BATCH_DATABASE_CHUNKS) {
        let locations = Arc::new(reader.locate(batch).await?);
        if let Some(missing) = batch.iter().find(|id| !locations.contains_key(id)) {
            bail!("chunk {missing} of the database part is not in the chunk index");
        }
        let mut data = futures::stream::iter(batch.iter().copied())
            .map(|id| {
                let locations = locations.clone();
                async move {
                    reader
                        .fetch(id, &locations[&id])
                        .await
                        .map(Op::Data)
                        .with_context(|| format!("reading the database part ({})", part.name))
                }
            })
            .buffered(PARALLEL_CHUNKS);
        while let Some(op) = data.try_next().await? {
            if tx.send(op).await.is_err() {
                return Ok(());
            }
        }
    }
    let _ = tx.send(Op::FileEnd).await;
    Ok(())
}

async fn send_batches(
    reader: &ChunkReader,
    mut batches: mpsc::Receiver<anyhow::Result<Vec<(PathBuf, Entry)>>>,
    tx: &mpsc::Sender<Op>,
) -> anyhow::Result<()> {
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        let wanted: Vec<ChunkId> = batch
            .iter()
            .flat_map(|(_, e)| e.chunks.iter().copied())
            .collect();
        let locations = Arc::new(reader.locate(&wanted).await?);
        if let Some(missing) = wanted.iter().find(|id| !locations.contains_key(id)) {
            bail!("chunk {missing} is not in the chunk index");
        }
        // Entries become ops; chunk ops (`Err`) are fetched a few at a time, in order.
        let mut plan: Vec<Result<Op, (ChunkId, String)>> = Vec::new();
        for (path, entry) in batch {
            match entry.kind {
                EntryKind::Dir => plan.push(Ok(Op::Dir(path, entry))),
                EntryKind::Symlink => plan.push(Ok(Op::Symlink(path, entry))),
                EntryKind::File => {
                    let shown = entry.path.display();
                    let chunks = entry.chunks.clone();
                    plan.push(Ok(Op::FileStart(path, entry)));
                    plan.extend(chunks.into_iter().map(|c| Err((c, shown.clone()))));
                    plan.push(Ok(Op::FileEnd));
                }
                EntryKind::Deleted => {}
            }
        }
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
                            .with_context(|| format!("reading {path}")),
                    }
                }
            })
            .buffered(PARALLEL_CHUNKS);
        while let Some(op) = ops.try_next().await? {
            if tx.send(op).await.is_err() {
                // The writer stopped (client gone or write error): it reports why.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A `Write` that cuts the archive into blocks and sends them to the client; a closed
/// channel is `BrokenPipe`, a client that takes nothing for `stall` is `TimedOut`.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
    sent: u64,
    stall: std::time::Duration,
    runtime: tokio::runtime::Handle,
}

impl ChannelWriter {
    /// On a blocking thread of the runtime.
    fn new(tx: mpsc::Sender<io::Result<Bytes>>, stall: std::time::Duration) -> Self {
        Self {
            tx,
            buf: BytesMut::with_capacity(BLOCK),
            sent: 0,
            stall,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.buf, BytesMut::with_capacity(BLOCK)).freeze();
        self.sent += block.len() as u64;
        match self
            .runtime
            .block_on(self.tx.send_timeout(Ok(block), self.stall))
        {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing for too long",
            )),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= BLOCK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The next op; a closed channel before `Done` is an error (never a short archive).
fn next_op(rx: &mut mpsc::Receiver<Op>) -> anyhow::Result<Op> {
    match rx.blocking_recv() {
        Some(Op::Fail(e)) => Err(e),
        Some(op) => Ok(op),
        None => bail!("the export stopped before the end of the backup"),
    }
}

/// A file's content as a `Read`, pulled from the ops until `FileEnd`; fails unless it
/// is exactly `size` bytes (a tar header announces the size before the data).
struct FileData<'a> {
    rx: &'a mut mpsc::Receiver<Op>,
    current: Bytes,
    read: u64,
    size: u64,
    done: bool,
}

impl<'a> FileData<'a> {
    /// The data of a file of `size` bytes, read from the ops that follow its `FileStart`.
    fn new(rx: &'a mut mpsc::Receiver<Op>, size: u64) -> Self {
        Self {
            rx,
            current: Bytes::new(),
            read: 0,
            size,
            done: false,
        }
    }
}

impl Read for FileData<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() && !self.done {
            match next_op(self.rx).map_err(io::Error::other)? {
                Op::Data(b) => self.current = b,
                Op::FileEnd => self.done = true,
                _ => return Err(io::Error::other("file data interrupted by another entry")),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        self.read += n as u64;
        if self.read > self.size || (self.done && self.read != self.size) {
            return Err(io::Error::other(format!(
                "file content is {} bytes but the backup recorded {}",
                self.read, self.size
            )));
        }
        Ok(n)
    }
}

/// `"<seconds>.<nanoseconds>"` for a PAX record, or `None` when whole seconds suffice.
fn pax_mtime(mtime_ns: i64) -> Option<String> {
    let secs = mtime_ns.div_euclid(1_000_000_000);
    let nanos = mtime_ns.rem_euclid(1_000_000_000);
    (nanos != 0 && secs >= 0).then(|| format!("{secs}.{nanos:09}"))
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `len` counts the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

fn tar_header(entry: &Entry, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(entry.mode & 0o7777);
    h.set_mtime(entry.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
    h.set_uid(entry.uid.into());
    h.set_gid(entry.gid.into());
    h.set_size(size);
    h
}

/// Writes the PAX `mtime` record an entry needs, if any.
fn tar_pax<W: Write>(builder: &mut tar::Builder<W>, entry: &Entry) -> io::Result<()> {
    let Some(mtime) = pax_mtime(entry.mtime_ns) else {
        return Ok(());
    };
    let record = pax_record("mtime", &mtime);
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeader")?;
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_mode(0o644);
    h.set_size(record.len() as u64);
    h.set_cksum();
    builder.append(&h, record.as_slice())
}

/// The name of an entry in the archive; the root directory is `./`.
fn tar_name(path: &Path, dir: bool) -> PathBuf {
    if path.as_os_str().is_empty() {
        return PathBuf::from("./");
    }
    if dir {
        let mut name = path.as_os_str().to_owned();
        name.push("/");
        return PathBuf::from(name);
    }
    path.to_path_buf()
}

fn write_tar(mut rx: mpsc::Receiver<Op>, sink: ChannelWriter) -> anyhow::Result<u64> {
    let mut builder = tar::Builder::new(sink);
    loop {
        match next_op(&mut rx)? {
            Op::Dir(path, entry) => {
                tar_pax(&mut builder, &entry)?;
                let mut h = tar_header(&entry, tar::EntryType::Directory, 0);
                builder.append_data(&mut h, tar_name(&path, true), io::empty())?;
            }
            Op::Symlink(path, entry) => {
                let target = entry
                    .target
                    .as_ref()
                    .context("symlink entry without a target")?
                    .to_os()?;
                tar_pax(&mut builder, &entry)?;
                let mut h = tar_header(&entry, tar::EntryType::Symlink, 0);
                builder.append_link(&mut h, &path, Path::new(&target))?;
            }
            Op::FileStart(path, entry) => {
                tar_pax(&mut builder, &entry)?;
                let mut h = tar_header(&entry, tar::EntryType::Regular, entry.size);
                let data = FileData::new(&mut rx, entry.size);
                builder
                    .append_data(&mut h, &path, data)
                    .with_context(|| format!("archiving {}", path.display()))?;
            }
            Op::Data(_) | Op::FileEnd => bail!("file data outside a file"),
            Op::Done => break,
            Op::Fail(e) => return Err(e),
        }
    }
    let mut sink = builder.into_inner()?;
    sink.flush()?;
    Ok(sink.sent)
}

/// The one file of the ops (a database part) as it is, byte for byte.
fn write_raw(mut rx: mpsc::Receiver<Op>, mut sink: ChannelWriter) -> anyhow::Result<u64> {
    let mut files = 0;
    loop {
        match next_op(&mut rx)? {
            Op::FileStart(path, entry) => {
                files += 1;
                if files > 1 {
                    bail!("a raw download holds one file");
                }
                let mut data = FileData::new(&mut rx, entry.size);
                io::copy(&mut data, &mut sink)
                    .with_context(|| format!("sending {}", path.display()))?;
            }
            Op::Dir(..) | Op::Symlink(..) => bail!("a raw download holds one file"),
            Op::Data(_) | Op::FileEnd => bail!("file data outside a file"),
            Op::Done => break,
            Op::Fail(e) => return Err(e),
        }
    }
    if files == 0 {
        bail!("the backup has no database part");
    }
    sink.flush()?;
    Ok(sink.sent)
}

/// The DOS timestamp of an mtime (UTC); before 1980 it is the format's earliest.
fn zip_time(mtime_ns: i64) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    chrono::DateTime::from_timestamp(mtime_ns.div_euclid(1_000_000_000), 0)
        .and_then(|t| {
            zip::DateTime::from_date_and_time(
                u16::try_from(t.year()).ok()?,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

/// A zip name: UTF-8, `/`-separated, and safe for any extractor. A Unix file name may
/// hold `\` (a Windows extractor takes it for a separator: `..\..\x` would climb out of
/// the target) and bytes that are not UTF-8; these are percent-encoded (`\` → `%5C`,
/// a stray byte → `%XX`), and so is `%` itself (`%25`), so two names never become one.
fn zip_name(path: &OsStr, dir: bool) -> String {
    let mut name = String::with_capacity(path.len() + 1);
    let mut rest = path.as_bytes();
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(all) => (all, &[][..]),
            Err(e) => {
                let (ok, after) = rest.split_at(e.valid_up_to());
                let bad_len = e.error_len().unwrap_or(after.len());
                (
                    std::str::from_utf8(ok).unwrap_or_default(),
                    &after[..bad_len],
                )
            }
        };
        for c in valid.chars() {
            match c {
                '%' => name.push_str("%25"),
                '\\' => name.push_str("%5C"),
                c => name.push(c),
            }
        }
        for b in bad {
            name.push_str(&format!("%{b:02X}"));
        }
        rest = &rest[valid.len() + bad.len()..];
    }
    if dir {
        name.push('/');
    }
    name
}

fn zip_options(entry: &Entry, large: bool) -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(entry.mode & 0o7777)
        .last_modified_time(zip_time(entry.mtime_ns))
        .large_file(large)
}

fn write_zip(mut rx: mpsc::Receiver<Op>, sink: ChannelWriter) -> anyhow::Result<u64> {
    let mut zip = zip::ZipWriter::new_stream(sink);
    loop {
        match next_op(&mut rx)? {
            // The root has no entry in a zip.
            Op::Dir(path, _) if path.as_os_str().is_empty() => {}
            Op::Dir(path, entry) => {
                zip.add_directory(zip_name(path.as_os_str(), true), zip_options(&entry, false))?;
            }
            Op::Symlink(path, entry) => {
                let target = entry
                    .target
                    .as_ref()
                    .context("symlink entry without a target")?
                    .to_os()?;
                zip.add_symlink(
                    zip_name(path.as_os_str(), false),
                    String::from_utf8_lossy(target.as_bytes()),
                    zip_options(&entry, false),
                )?;
            }
            Op::FileStart(path, entry) => {
                let large = entry.size >= u64::from(u32::MAX);
                zip.start_file(
                    zip_name(path.as_os_str(), false),
                    zip_options(&entry, large),
                )?;
                let mut data = FileData::new(&mut rx, entry.size);
                io::copy(&mut data, &mut zip)
                    .with_context(|| format!("archiving {}", path.display()))?;
            }
            Op::Data(_) | Op::FileEnd => bail!("file data outside a file"),
            Op::Done => break,
            Op::Fail(e) => return Err(e),
        }
    }
    let mut sink = zip.finish()?.into_inner();
    sink.flush()?;
    Ok(sink.sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for value in ["1.5", "1500000000.123456789", &"x".repeat(95)] {
            let rec = pax_record("mtime", value);
            let text = String::from_utf8(rec.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), rec.len(), "{text:?}");
        }
    }

    #[test]
    fn pax_mtime_only_for_fractions() {
        assert_eq!(pax_mtime(1_500_000_000_000_000_000), None);
        assert_eq!(
            pax_mtime(1_500_000_000_123_456_789).as_deref(),
            Some("1500000000.123456789")
        );
    }

    #[test]
    fn zip_names_cannot_climb_out_on_any_extractor_and_stay_distinct() {
        use std::os::unix::ffi::OsStrExt;
        let name = |b: &[u8]| zip_name(OsStr::from_bytes(b), false);
        assert_eq!(name(b"sub/..\\..\\evil.txt"), "sub/..%5C..%5Cevil.txt");
        assert_eq!(name(b"a\\b"), "a%5Cb");
        assert_eq!(name(b"a%5Cb"), "a%255Cb");
        assert_eq!(name(b"caf\xc3\xa9/x"), "caf\u{e9}/x");
        assert_eq!(name(b"bad\xff\xfe.bin"), "bad%FF%FE.bin");
        assert_eq!(zip_name(OsStr::new("d"), true), "d/");
        for n in [&b"a\\..\\b"[..], b"..\\x", b"x\\.."] {
            let z = name(n);
            assert!(!z.contains('\\'), "{z}");
            assert!(z.split('/').all(|c| c != ".."), "{z}");
        }
    }

    #[test]
    fn an_archive_carries_the_database_where_the_docs_say() {
        let part = |engine: &str, inside: Option<&str>| DatabasePart {
            engine: engine.into(),
            format: String::new(),
            name: "x".into(),
            schemas: Vec::new(),
            inside_files: inside.map(String::from),
            size: 0,
            chunks: Vec::new(),
            tables: Vec::new(),
            snapshot_at: chrono::Utc::now(),
            server_version: String::new(),
            tool_version: None,
            settings: None,
        };
        let sqlite_inside = part("sqlite", Some("sub/data.db"));
        assert_eq!(
            database_path(&sqlite_inside, true),
            Path::new("sub/data.db")
        );
        assert_eq!(
            database_path(&sqlite_inside, false),
            Path::new("database.db")
        );
        let sqlite = part("sqlite", None);
        assert_eq!(
            database_path(&sqlite, true),
            Path::new(".strata/database.db")
        );
        let postgres = part("postgres", None);
        assert_eq!(
            database_path(&postgres, true),
            Path::new(".strata/database.sql")
        );
        assert_eq!(database_path(&postgres, false), Path::new("database.sql"));
    }

    #[test]
    fn zip_time_clamps_old_dates() {
        assert_eq!(zip_time(0), zip::DateTime::default());
        let t = zip_time(1_600_000_000_000_000_000);
        assert_eq!((t.year(), t.month(), t.day()), (2020, 9, 13));
    }
}
