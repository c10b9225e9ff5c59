//! Uploaded archives (tar or zip): format detection, inspection that refuses anything
//! unsafe, and extraction into a fresh directory under the same rules.
//!
//! Nothing an archive declares is trusted: sizes are counted on the bytes actually read
//! (decompressed, for zip) and the limits apply to those counts. Entry paths must stay
//! below the root (no `..`, no absolute path, no path through a symlink or a file),
//! symlinks must point inside, hard links must name an earlier file, and only files,
//! directories, symlinks and hard links are accepted. Extraction never follows a
//! symlink: parents are created as plain directories and files with `O_NOFOLLOW` and
//! `create_new`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use strata_core::errors::ErrorCode;

use filetime::FileTime;
use serde::Serialize;

use strata_core::model::ArchiveFormat;

/// Below this many uncompressed bytes the compression ratio is not checked: a small
/// archive of repetitive text is not a bomb.
const RATIO_FLOOR: u64 = 1024 * 1024;
/// Longest symlink target accepted.
const MAX_LINK_TARGET: u64 = 4096;
/// Copy buffer.
const BUF: usize = 64 * 1024;
/// Longest name of one path component on Linux file systems (`NAME_MAX`).
const MAX_COMPONENT: usize = 255;
/// Longest entry path: `PATH_MAX` less room for the directory it is extracted or
/// restored into.
const MAX_PATH: usize = 3072;

/// What an archive may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total bytes of file content once extracted.
    pub max_uncompressed: u64,
    /// Extracted bytes per byte of archive (only beyond 1 MiB of content).
    pub max_ratio: u64,
    /// Number of entries.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_uncompressed: 100 << 30,
            max_ratio: 100,
            max_entries: 1_000_000,
        }
    }
}

/// Why an archive was refused, with a machine-readable code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ArchiveError {
    pub code: ErrorCode,
    pub message: String,
    /// Extraction stopped because it was asked to (not a refusal: no code is shown).
    stopped: bool,
}

impl ArchiveError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            stopped: false,
        }
    }

    fn stopped() -> Self {
        Self {
            code: ErrorCode::Released,
            message: "extraction was stopped".into(),
            stopped: true,
        }
    }

    fn invalid(what: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidArchive,
            format!("not a readable tar or zip archive: {what}"),
        )
    }

    /// Whether the refusal is about size (HTTP `413`) rather than content (`400`).
    pub fn is_too_large(&self) -> bool {
        self.code.status() == Some(413)
    }

    /// Whether extraction stopped because it was asked to.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }
}

/// What an archive holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Bytes of file content, counted while reading.
    pub uncompressed_size: u64,
    pub archive_size: u64,
}

/// The format of the archive at `path`: zip by its magic, tar by a valid header checksum.
pub fn detect(path: &Path) -> Result<ArchiveFormat, ArchiveError> {
    let mut head = Vec::with_capacity(512);
    File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(ArchiveError::invalid)?;
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(ArchiveFormat::Zip);
    }
    if head.len() == 512 && tar_checksum_ok(&head) {
        return Ok(ArchiveFormat::Tar);
    }
    Err(ArchiveError::invalid("neither a zip nor a tar header"))
}

/// A tar header's checksum: the byte sum with the checksum field read as spaces.
fn tar_checksum_ok(block: &[u8]) -> bool {
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(digits.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    stored == sum && block.iter().any(|b| *b != 0)
}

/// Walks every entry of the archive and checks it; writes nothing.
pub fn inspect(path: &Path, limits: &Limits) -> Result<Summary, ArchiveError> {
    walk(path, limits, None, &mut |_| true)
}

/// Extracts the archive into `dest` (an empty directory), with modes, mtimes and
/// symlinks, checking everything [`inspect`] checks on the bytes actually written.
/// `keep_going` is called with the bytes written so far after each entry and every few
/// MiB; when it returns false, extraction stops with the code `stopped`. On error the
/// caller removes `dest`.
pub fn extract(
    path: &Path,
    dest: &Path,
    limits: &Limits,
    keep_going: &mut dyn FnMut(u64) -> bool,
) -> Result<Summary, ArchiveError> {
    walk(path, limits, Some(dest), keep_going)
}

fn walk(
    path: &Path,
    limits: &Limits,
    dest: Option<&Path>,
    keep_going: &mut dyn FnMut(u64) -> bool,
) -> Result<Summary, ArchiveError> {
    let format = detect(path)?;
    let file = File::open(path).map_err(ArchiveError::invalid)?;
    let archive_size = file.metadata().map_err(ArchiveError::invalid)?.len();
    let mut state = State {
        limits: *limits,
        summary: Summary {
            archive_size,
            ..Summary::default()
        },
        seen: BTreeMap::new(),
        dest: dest.map(|d| Writer {
            root: d.to_path_buf(),
            dirs: Vec::new(),
        }),
        keep_going,
    };
    match format {
        ArchiveFormat::Tar => walk_tar(file, &mut state)?,
        ArchiveFormat::Zip => walk_zip(file, &mut state)?,
    }
    if let Some(w) = &state.dest {
        w.finish_dirs()?;
    }
    Ok(state.summary)
}

/// What one entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    HardLink(PathBuf),
}

/// What is known of a path already seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    File,
    Dir,
    Symlink,
}

struct Meta {
    path: PathBuf,
    kind: Kind,
    mode: u32,
    mtime: Option<i64>,
}

struct Writer {
    root: PathBuf,
    /// Directories whose mode and mtime are set last (children change the mtime).
    dirs: Vec<(PathBuf, u32, Option<i64>)>,
}

struct State<'a> {
    limits: Limits,
    summary: Summary,
    seen: BTreeMap<PathBuf, Seen>,
    dest: Option<Writer>,
    keep_going: &'a mut dyn FnMut(u64) -> bool,
}

fn walk_tar(file: File, state: &mut State<'_>) -> Result<(), ArchiveError> {
    let mut ar = tar::Archive::new(BufReader::new(file));
    for entry in ar.entries().map_err(ArchiveError::invalid)? {
        let mut entry = entry.map_err(ArchiveError::invalid)?;
        let name = entry.path_bytes().into_owned();
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(
                entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default();
                Kind::HardLink(entry_path(&target)?.unwrap_or_default())
            }
            // Extension headers tar already applied to the entry they describe.
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(ArchiveError::new(ErrorCode::UnsupportedEntry,
                    format!(
                        "{}: entries of type {other:?} are not accepted; only files, directories and links",
                        String::from_utf8_lossy(&name)
                    ),
                ))
            }
        };
        let Some(path) = entry_path(&name)? else {
            if kind == Kind::Dir {
                continue; // `./`: the root itself.
            }
            return Err(ArchiveError::invalid("an entry has an empty name"));
        };
        let meta = Meta {
            path,
            kind,
            mode: header.mode().unwrap_or(0o644),
            mtime: header.mtime().ok().map(|t| t as i64),
        };
        let declared = entry.size();
        let written = state.entry(meta, &mut entry)?;
        if written.is_some_and(|n| n != declared) {
            return Err(ArchiveError::invalid(format!(
                "{}: truncated ({} of {declared} bytes)",
                String::from_utf8_lossy(&name),
                written.unwrap_or(0)
            )));
        }
    }
    Ok(())
}

fn walk_zip(file: File, state: &mut State<'_>) -> Result<(), ArchiveError> {
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(ArchiveError::invalid)?;
    // The central directory is read into a map by name: of two entries with one name
    // only the last would be seen (and extracted), so such an archive is refused.
    if zip.has_duplicate_names() {
        return Err(ArchiveError::new(
            ErrorCode::DuplicateEntry,
            "the archive lists the same entry name more than once",
        ));
    }
    if zip.len() as u64 > state.limits.max_entries {
        return Err(too_many(state.limits.max_entries));
    }
    let mut declared_total: u64 = 0;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(ArchiveError::invalid)?;
        let name = f.name_raw().to_vec();
        let shown = String::from_utf8_lossy(&name).into_owned();
        if f.encrypted() {
            return Err(ArchiveError::new(
                ErrorCode::UnsupportedEntry,
                format!("{shown}: encrypted entries are not accepted"),
            ));
        }
        // A declared size is a lower bound of nothing, but a declared bomb is refused early.
        declared_total = declared_total.saturating_add(f.size());
        if declared_total > state.limits.max_uncompressed {
            return Err(too_large(state.limits.max_uncompressed));
        }
        let unix = f.unix_mode();
        let file_type = unix.map(|m| m & libc::S_IFMT).filter(|t| *t != 0);
        let kind = if f.is_dir() {
            Kind::Dir
        } else if f.is_symlink() {
            let mut target = Vec::new();
            (&mut f)
                .take(MAX_LINK_TARGET + 1)
                .read_to_end(&mut target)
                .map_err(ArchiveError::invalid)?;
            if target.len() as u64 > MAX_LINK_TARGET {
                return Err(ArchiveError::invalid(format!(
                    "{shown}: symlink target too long"
                )));
            }
            Kind::Symlink(target)
        } else if file_type.is_some_and(|t| t != libc::S_IFREG) {
            return Err(ArchiveError::new(
                ErrorCode::UnsupportedEntry,
                format!("{shown}: only files, directories and symlinks are accepted"),
            ));
        } else {
            Kind::File
        };
        let Some(path) = entry_path(&name)? else {
            if kind == Kind::Dir {
                continue;
            }
            return Err(ArchiveError::invalid("an entry has an empty name"));
        };
        let default_mode = if kind == Kind::Dir { 0o755 } else { 0o644 };
        let meta = Meta {
            path,
            kind,
            mode: unix.map(|m| m & 0o7777).unwrap_or(default_mode),
            mtime: f.last_modified().and_then(zip_time),
        };
        state.entry(meta, &mut f)?;
    }
    Ok(())
}

/// A zip (DOS) timestamp, read as UTC, in Unix seconds.
fn zip_time(t: zip::DateTime) -> Option<i64> {
    let date = chrono::NaiveDate::from_ymd_opt(t.year().into(), t.month().into(), t.day().into())?;
    let time = date.and_hms_opt(t.hour().into(), t.minute().into(), t.second().into())?;
    Some(time.and_utc().timestamp())
}

/// An entry's name as a relative path of plain components (`./` and empty components
/// dropped); `None` for the root itself. Absolute paths and `..` are refused.
fn entry_path(name: &[u8]) -> Result<Option<PathBuf>, ArchiveError> {
    let shown = || String::from_utf8_lossy(name).into_owned();
    if name.contains(&0) {
        return Err(ArchiveError::invalid(format!(
            "{:?}: NUL byte in a name",
            shown()
        )));
    }
    if name.starts_with(b"/") {
        return Err(ArchiveError::new(
            ErrorCode::PathEscapesRoot,
            format!("{:?} is an absolute path", shown()),
        ));
    }
    let mut path = PathBuf::new();
    for part in name.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(ArchiveError::new(ErrorCode::PathEscapesRoot,
                    format!("{:?} has a `..` component", shown()),
                ))
            }
            p if p.len() > MAX_COMPONENT => {
                return Err(ArchiveError::new(ErrorCode::NameTooLong,
                    format!(
                        "an entry's name has a component of {} bytes; file systems allow {MAX_COMPONENT}",
                        p.len()
                    ),
                ))
            }
            p => path.push(std::ffi::OsStr::from_bytes(p)),
        }
    }
    if path.as_os_str().len() > MAX_PATH {
        return Err(ArchiveError::new(
            ErrorCode::NameTooLong,
            format!(
                "an entry's path is {} bytes long; at most {MAX_PATH} are accepted",
                path.as_os_str().len()
            ),
        ));
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

fn too_large(limit: u64) -> ArchiveError {
    ArchiveError::new(
        ErrorCode::ArchiveTooLarge,
        format!("the archive holds more than {limit} bytes once extracted"),
    )
}

fn too_many(limit: u64) -> ArchiveError {
    ArchiveError::new(
        ErrorCode::TooManyEntries,
        format!("the archive holds more than {limit} entries"),
    )
}

impl State<'_> {
    /// Checks one entry and, when extracting, writes it. Returns the bytes of content
    /// read for a file.
    fn entry(&mut self, meta: Meta, data: &mut dyn Read) -> Result<Option<u64>, ArchiveError> {
        self.summary.entries += 1;
        if self.summary.entries > self.limits.max_entries {
            return Err(too_many(self.limits.max_entries));
        }
        self.check_place(&meta)?;
        let mut written = None;
        match &meta.kind {
            Kind::Dir => {
                self.summary.dirs += 1;
                if let Some(w) = &mut self.dest {
                    w.dir(&meta)?;
                }
            }
            Kind::File => {
                self.summary.files += 1;
                let mut out = match &self.dest {
                    Some(w) => Some(w.create_file(&meta.path)?),
                    None => None,
                };
                let n = self.copy(data, out.as_mut(), &meta.path)?;
                if let Some(f) = &out {
                    set_file_meta(f, &meta)?;
                }
                written = Some(n);
            }
            Kind::Symlink(target) => {
                check_symlink(&meta.path, target)?;
                self.summary.symlinks += 1;
                if let Some(w) = &self.dest {
                    w.symlink(&meta, target)?;
                }
            }
            Kind::HardLink(target) => {
                if self.seen.get(target) != Some(&Seen::File) || target == &meta.path {
                    return Err(ArchiveError::new(
                        ErrorCode::PathEscapesRoot,
                        format!(
                            "{}: a hard link must name a file earlier in the archive, not {}",
                            meta.path.display(),
                            target.display()
                        ),
                    ));
                }
                self.summary.hardlinks += 1;
                if let Some(w) = &self.dest {
                    w.hard_link(&meta.path, target)?;
                }
            }
        }
        let seen = match meta.kind {
            Kind::Dir => Seen::Dir,
            Kind::Symlink(_) => Seen::Symlink,
            Kind::File | Kind::HardLink(_) => Seen::File,
        };
        self.seen.insert(meta.path, seen);
        if !(self.keep_going)(self.summary.uncompressed_size) {
            return Err(ArchiveError::stopped());
        }
        Ok(written)
    }

    /// Refuses a path that repeats another or lies below a file or symlink, and a file
    /// or symlink that would hold entries already seen. Records implied directories.
    fn check_place(&mut self, meta: &Meta) -> Result<(), ArchiveError> {
        let mut ancestors: Vec<&Path> = meta.path.ancestors().skip(1).collect();
        ancestors.pop(); // the empty path: the root.
        for dir in ancestors.into_iter().rev() {
            match self.seen.get(dir) {
                None => {
                    self.seen.insert(dir.to_path_buf(), Seen::Dir);
                }
                Some(Seen::Dir) => {}
                Some(Seen::Symlink) => {
                    return Err(ArchiveError::new(
                        ErrorCode::PathEscapesRoot,
                        format!(
                            "{} lies below the symlink {}",
                            meta.path.display(),
                            dir.display()
                        ),
                    ))
                }
                Some(Seen::File) => {
                    return Err(ArchiveError::invalid(format!(
                        "{} lies below the file {}",
                        meta.path.display(),
                        dir.display()
                    )))
                }
            }
        }
        match (self.seen.get(&meta.path), &meta.kind) {
            (None, _) => Ok(()),
            (Some(Seen::Dir), Kind::Dir) => Ok(()),
            _ => Err(ArchiveError::new(
                ErrorCode::DuplicateEntry,
                format!("{} appears twice in the archive", meta.path.display()),
            )),
        }
    }

    /// Copies one file's content, counting it against the size and ratio limits.
    fn copy(
        &mut self,
        data: &mut dyn Read,
        mut out: Option<&mut File>,
        path: &Path,
    ) -> Result<u64, ArchiveError> {
        let ratio_cap = self
            .limits
            .max_ratio
            .saturating_mul(self.summary.archive_size)
            .max(RATIO_FLOOR);
        let mut buf = vec![0u8; BUF];
        let mut n: u64 = 0;
        let mut since_report: u64 = 0;
        loop {
            let got = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ArchiveError::invalid(format!("{}: {e}", path.display()))),
            };
            n += got as u64;
            let total = self.summary.uncompressed_size + got as u64;
            if total > self.limits.max_uncompressed {
                return Err(too_large(self.limits.max_uncompressed));
            }
            if total > ratio_cap {
                return Err(ArchiveError::new(
                    ErrorCode::CompressionRatioTooHigh,
                    format!(
                        "the archive expands more than {} times (a compression bomb?)",
                        self.limits.max_ratio
                    ),
                ));
            }
            self.summary.uncompressed_size = total;
            if let Some(f) = out.as_deref_mut() {
                f.write_all(&buf[..got]).map_err(write_error)?;
            }
            since_report += got as u64;
            if since_report >= 8 << 20 {
                since_report = 0;
                if !(self.keep_going)(total) {
                    return Err(ArchiveError::stopped());
                }
            }
        }
        Ok(n)
    }
}

/// A symlink's target must be relative and stay below the root, resolved from the
/// link's directory. `..` is accepted only at the start of the target (where it walks up
/// real directories), so no symlink inside the archive can change what it resolves to.
fn check_symlink(path: &Path, target: &[u8]) -> Result<(), ArchiveError> {
    let escapes = |why: &str| {
        ArchiveError::new(
            ErrorCode::SymlinkEscapesRoot,
            format!(
                "the symlink {} -> {} {why}",
                path.display(),
                String::from_utf8_lossy(target)
            ),
        )
    };
    if target.is_empty() || target.contains(&0) {
        return Err(ArchiveError::invalid(format!(
            "the symlink {} has an empty or invalid target",
            path.display()
        )));
    }
    if target.starts_with(b"/") {
        return Err(escapes("points to an absolute path"));
    }
    let mut depth = path.components().count() as i64 - 1;
    let mut descended = false;
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if descended => return Err(escapes("has `..` after a name")),
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(escapes("points outside the archive's root"));
                }
            }
            _ => descended = true,
        }
    }
    Ok(())
}

fn write_error(e: io::Error) -> ArchiveError {
    // A name the file system refuses will be refused again: not worth a retry.
    if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
        return ArchiveError::new(
            ErrorCode::NameTooLong,
            format!("an entry's name is too long for the file system: {e}"),
        );
    }
    ArchiveError::new(
        ErrorCode::ExtractFailed,
        format!("writing the extracted file failed: {e}"),
    )
}

fn set_file_meta(f: &File, meta: &Meta) -> Result<(), ArchiveError> {
    // No set-id bits: an archive never hands out privileges.
    f.set_permissions(fs::Permissions::from_mode(meta.mode & 0o1777))
        .map_err(write_error)?;
    if let Some(t) = meta.mtime {
        let ft = FileTime::from_unix_time(t, 0);
        filetime::set_file_handle_times(f, None, Some(ft)).map_err(write_error)?;
    }
    Ok(())
}

impl Writer {
    /// Creates the parents of `rel` as plain directories; an existing one must be a
    /// real directory, never a symlink.
    fn parents(&self, rel: &Path) -> Result<PathBuf, ArchiveError> {
        let mut at = self.root.clone();
        if let Some(parent) = rel.parent() {
            for part in parent.components() {
                at.push(part);
                make_dir(&at)?;
            }
        }
        Ok(self.root.join(rel))
    }

    fn dir(&mut self, meta: &Meta) -> Result<(), ArchiveError> {
        let full = self.parents(&meta.path)?;
        make_dir(&full)?;
        self.dirs.push((full, meta.mode, meta.mtime));
        Ok(())
    }

    fn create_file(&self, rel: &Path) -> Result<File, ArchiveError> {
        let full = self.parents(rel)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(full)
            .map_err(write_error)
    }

    fn symlink(&self, meta: &Meta, target: &[u8]) -> Result<(), ArchiveError> {
        let full = self.parents(&meta.path)?;
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &full)
            .map_err(write_error)?;
        if let Some(t) = meta.mtime {
            let ft = FileTime::from_unix_time(t, 0);
            filetime::set_symlink_file_times(&full, ft, ft).map_err(write_error)?;
        }
        Ok(())
    }

    fn hard_link(&self, rel: &Path, target: &Path) -> Result<(), ArchiveError> {
        let full = self.parents(rel)?;
        fs::hard_link(self.root.join(target), full).map_err(write_error)
    }

    /// Sets directory modes and mtimes, deepest first.
    fn finish_dirs(&self) -> Result<(), ArchiveError> {
        let mut dirs: Vec<&(PathBuf, u32, Option<i64>)> = self.dirs.iter().collect();
        dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (path, mode, mtime) in dirs {
            // The owner keeps access, or the backup could not read what it holds.
            fs::set_permissions(path, fs::Permissions::from_mode((mode & 0o1777) | 0o700))
                .map_err(write_error)?;
            if let Some(t) = mtime {
                let ft = FileTime::from_unix_time(*t, 0);
                filetime::set_symlink_file_times(path, ft, ft).map_err(write_error)?;
            }
        }
        Ok(())
    }
}

/// Creates a directory, or accepts an existing real directory (never a symlink).
fn make_dir(path: &Path) -> Result<(), ArchiveError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(path) {
            Ok(md) if md.is_dir() => Ok(()),
            _ => Err(ArchiveError::new(
                ErrorCode::PathEscapesRoot,
                format!("{} exists and is not a directory", path.display()),
            )),
        },
        Err(e) => Err(write_error(e)),
    }
}

/// What an uploaded archive may be.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// `STRATA_UPLOAD_MAX_BYTES`: the request body (default 10 GiB).
    pub max_bytes: u64,
    /// `STRATA_UPLOAD_MAX_UNCOMPRESSED`: the archive's content once extracted (default 100 GiB).
    pub max_uncompressed: u64,
    /// `STRATA_UPLOAD_MAX_RATIO`: extracted bytes per archive byte (default 100).
    pub max_ratio: u64,
}

impl UploadLimits {
    /// Reads the `STRATA_UPLOAD_*` variables.
    pub fn from_env() -> anyhow::Result<Self> {
        let limits = Self {
            max_bytes: strata_core::config::parse_var("STRATA_UPLOAD_MAX_BYTES", 10u64 << 30)?,
            max_uncompressed: strata_core::config::parse_var(
                "STRATA_UPLOAD_MAX_UNCOMPRESSED",
                100u64 << 30,
            )?,
            max_ratio: strata_core::config::parse_var("STRATA_UPLOAD_MAX_RATIO", 100)?,
        };
        if limits.max_bytes == 0 || limits.max_uncompressed == 0 || limits.max_ratio == 0 {
            anyhow::bail!("STRATA_UPLOAD_MAX_*: limits must be at least 1");
        }
        Ok(limits)
    }

    /// The limits an archive is checked against.
    pub fn archive(&self) -> Limits {
        Limits {
            max_uncompressed: self.max_uncompressed,
            max_ratio: self.max_ratio,
            ..Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (path, type, content, link target)
    type TarEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], Option<&'a [u8]>);

    fn tar_with(entries: &[TarEntry<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, ty, data, link) in entries {
            let mut h = tar::Header::new_ustar();
            let bytes = h.as_mut_bytes();
            bytes[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                bytes[157..157 + l.len()].copy_from_slice(l);
            }
            h.set_entry_type(*ty);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn check(bytes: &[u8]) -> Result<Summary, ArchiveError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        fs::write(&p, bytes).unwrap();
        inspect(&p, &Limits::default())
    }

    #[test]
    fn refusals() {
        use tar::EntryType::*;
        let code = |e: Result<Summary, ArchiveError>| e.unwrap_err().code;
        assert_eq!(
            code(check(&tar_with(&[(b"../evil", Regular, b"x", None)]))),
            "path_escapes_root"
        );
        assert_eq!(
            code(check(&tar_with(&[(b"/tmp/evil", Regular, b"x", None)]))),
            "path_escapes_root"
        );
        for target in [&b"../x"[..], b"/etc", b"d/../../x", b"a/../b"] {
            assert_eq!(
                code(check(&tar_with(&[(b"l", Symlink, b"", Some(target))]))),
                "symlink_escapes_root",
                "{}",
                String::from_utf8_lossy(target)
            );
        }
        assert_eq!(
            code(check(&tar_with(&[
                (b"l", Symlink, b"", Some(b"d")),
                (b"l/x", Regular, b"x", None)
            ]))),
            "path_escapes_root"
        );
        assert_eq!(
            code(check(&tar_with(&[(b"dev", Char, b"", None)]))),
            "unsupported_entry"
        );
        assert_eq!(
            code(check(&tar_with(&[(b"h", Link, b"", Some(b"../x"))]))),
            "path_escapes_root"
        );
        assert_eq!(
            code(check(&tar_with(&[
                (b"a", Regular, b"x", None),
                (b"a", Regular, b"y", None)
            ]))),
            "duplicate_entry"
        );
        let good = tar_with(&[(b"f", Regular, &[7u8; 5000], None)]);
        assert_eq!(code(check(&good[..1500])), "invalid_archive");
        assert_eq!(code(check(b"hello")), "invalid_archive");
        let ok = check(&tar_with(&[
            (b"d/l", Symlink, b"", Some(b"../f")),
            (b"f", Regular, b"x", None),
        ]))
        .unwrap();
        assert_eq!((ok.files, ok.symlinks, ok.dirs), (1, 1, 0));
    }

    /// A zip of `entries`; `rename` then replaces one name by another of the same length
    /// in the raw bytes (local headers and central directory), which no writer would do.
    fn zip_with(entries: &[(&str, &[u8])], rename: Option<(&str, &str)>) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        let mut bytes = w.finish().unwrap().into_inner();
        if let Some((from, to)) = rename {
            assert_eq!(from.len(), to.len());
            let mut i = 0;
            while let Some(at) = bytes[i..]
                .windows(from.len())
                .position(|w| w == from.as_bytes())
            {
                bytes[i + at..i + at + to.len()].copy_from_slice(to.as_bytes());
                i += at + to.len();
            }
        }
        bytes
    }

    #[test]
    fn a_zip_naming_one_entry_twice_is_refused() {
        let ok = zip_with(&[("dir/a1", b"first"), ("dir/a2", b"second")], None);
        assert_eq!(check(&ok).unwrap().files, 2);
        let twice = zip_with(
            &[("dir/a1", b"first"), ("dir/a2", b"second")],
            Some(("dir/a2", "dir/a1")),
        );
        assert_eq!(check(&twice).unwrap_err().code, "duplicate_entry");
        // The same path spelt two ways is the same entry too.
        let spelt = zip_with(&[("dir/a1", b"first"), ("dir//a1", b"second")], None);
        assert_eq!(check(&spelt).unwrap_err().code, "duplicate_entry");
    }

    #[test]
    fn names_too_long_for_a_file_system_are_refused() {
        let long = |name: &str| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &b"x"[..]).unwrap();
            b.into_inner().unwrap()
        };
        let component = "n".repeat(256);
        assert_eq!(
            check(&long(&format!("d/{component}"))).unwrap_err().code,
            "name_too_long"
        );
        let deep = vec!["d".repeat(200); 16].join("/");
        assert_eq!(check(&long(&deep)).unwrap_err().code, "name_too_long");
        assert!(check(&long(&"n".repeat(255))).is_ok());
        // Extraction maps the file system's own refusal to the same permanent code.
        let e = write_error(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        assert_eq!(e.code, "name_too_long");
    }

    #[test]
    fn extracts_a_tar() {
        use tar::EntryType::*;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        fs::write(
            &p,
            tar_with(&[
                (b"d/", Directory, b"", None),
                (b"d/f", Regular, b"hello", None),
                (b"d/l", Symlink, b"", Some(b"f")),
                (b"h", Link, b"", Some(b"d/f")),
            ]),
        )
        .unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let s = extract(&p, &out, &Limits::default(), &mut |_| true).unwrap();
        assert_eq!(s.uncompressed_size, 5);
        assert_eq!(fs::read(out.join("d/f")).unwrap(), b"hello");
        assert_eq!(fs::read(out.join("h")).unwrap(), b"hello");
        assert_eq!(fs::read_link(out.join("d/l")).unwrap(), Path::new("f"));
    }
}
