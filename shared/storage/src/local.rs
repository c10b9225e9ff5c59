//! Storage in a local directory: one file per object, written atomically (temp file + fsync +
//! rename + directory fsync).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use bytes::Bytes;

use super::{
    validate_key, validate_prefix, ObjectMeta, Storage, StorageError, StorageResult, TMP_PREFIX,
};

/// Makes temp-file names unique within the process (the pid makes them unique across processes).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Storage rooted at `root`. The directory is not created here; [`super::open`] creates it.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the root directory (and its parents) if missing.
    pub(crate) async fn create_root(&self) -> StorageResult<()> {
        let root = self.root.clone();
        blocking(move || {
            fs::create_dir_all(&root)
                .with_context(|| format!("creating storage directory {}", root.display()))?;
            Ok(())
        })
        .await
    }

    fn path_of(&self, key: &str) -> StorageResult<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

/// Runs blocking file IO off the async runtime.
async fn blocking<T, F>(f: F) -> StorageResult<T>
where
    F: FnOnce() -> StorageResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .context("storage IO task failed")?
}

fn tmp_name() -> String {
    format!(
        "{TMP_PREFIX}{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and missing ancestors, then fsyncs every directory whose entry list changed so
/// the new directories survive a crash.
fn create_dirs_durably(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // The first ancestor that already exists is the outermost directory that gains an entry.
    let mut existing = dir;
    while let Some(parent) = existing.parent() {
        existing = parent;
        if parent.as_os_str().is_empty() || parent.is_dir() {
            break;
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    // fsync the parents of each created directory: dir's parent up to `existing`.
    let mut cur = dir;
    while let Some(parent) = cur.parent() {
        if parent.as_os_str().is_empty() {
            break;
        }
        fsync_dir(parent).with_context(|| format!("syncing directory {}", parent.display()))?;
        if parent == existing {
            break;
        }
        cur = parent;
    }
    Ok(())
}

fn put_blocking(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    put_with(path, |file| file.write_all(data))
}

/// Writes an object from what `fill` writes into its temp file, then renames it in place.
fn put_with(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("object path has no parent directory")?;
    create_dirs_durably(dir)?;
    let tmp = dir.join(tmp_name());
    let result = (|| -> anyhow::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        fill(&mut file).with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        drop(file);
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fsync_dir(dir).with_context(|| format!("syncing directory {}", dir.display()))?;
    Ok(())
}

/// Opens an object for reading, mapping "absent" (including "is a directory", which is not an
/// object) to NotFound. Returns the file and its size.
fn open_object(path: &Path, key: &str) -> StorageResult<(File, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if is_absent(&e) => return Err(StorageError::NotFound(key.to_string())),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("opening {}", path.display()))
                .into())
        }
    };
    let meta = file
        .metadata()
        .with_context(|| format!("reading metadata of {}", path.display()))?;
    if !meta.is_file() {
        return Err(StorageError::NotFound(key.to_string()));
    }
    Ok((file, meta.len()))
}

/// NotFound, or a path component is a regular file (ENOTDIR): either way no such object.
fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory
}

/// Recursively collects the regular files under `dir` (whose key prefix is `dir_key`, empty or
/// ending with '/') whose key starts with `prefix`.
fn walk(dir: &Path, dir_key: &str, prefix: &str, out: &mut Vec<ObjectMeta>) -> anyhow::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // The directory vanished (concurrent delete) or is a file: nothing under it.
        Err(e) if is_absent(&e) => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("listing {}", dir.display()))),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue; // not a key this storage could have written
        };
        if name.starts_with(TMP_PREFIX) {
            continue;
        }
        let key = format!("{dir_key}{name}");
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if is_absent(&e) => continue,
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("reading {}", entry.path().display()))
                )
            }
        };
        if file_type.is_dir() {
            // Only descend where keys can still match the prefix.
            let sub_key = format!("{key}/");
            if sub_key.starts_with(prefix) || prefix.starts_with(&sub_key) {
                walk(&entry.path(), &sub_key, prefix, out)?;
            }
        } else if file_type.is_file() && key.starts_with(prefix) {
            let size = match entry.metadata() {
                Ok(m) => m.len(),
                Err(e) if is_absent(&e) => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading metadata of {}", entry.path().display())))
                }
            };
            out.push(ObjectMeta { key, size });
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Storage for LocalStorage {
    #[tracing::instrument(level = "debug", skip_all, fields(key = %key, len = data.len()))]
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        let path = self.path_of(key)?;
        blocking(move || Ok(put_blocking(&path, &data)?)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        blocking(move || {
            let (mut file, size) = open_object(&path, &key)?;
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %key, offset = offset, len = len))]
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Bytes> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        blocking(move || {
            let (mut file, size) = open_object(&path, &key)?;
            let end = offset.checked_add(len);
            if end.is_none_or(|end| end > size) {
                return Err(anyhow::anyhow!(
                    "range {offset}+{len} is past the end of {} ({size} bytes)",
                    path.display()
                )
                .into());
            }
            let mut buf = vec![0u8; len as usize];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut buf))
                .with_context(|| {
                    format!("reading {len} bytes at {offset} of {}", path.display())
                })?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    async fn head(&self, key: &str) -> StorageResult<Option<u64>> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("reading metadata of {}", path.display()))
                .into()),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(prefix = %prefix))]
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_string();
        let root = self.root.clone();
        blocking(move || {
            // Start at the deepest directory the prefix fully names.
            let dir_key = match prefix.rfind('/') {
                Some(i) => &prefix[..=i],
                None => "",
            };
            let mut out = Vec::new();
            walk(&root.join(dir_key), dir_key, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    async fn delete(&self, key: &str) -> StorageResult<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if is_absent(&e) => Ok(()),
            // A directory is not an object, so there is no object to delete.
            Err(_) if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("deleting {}", path.display()))
                .into()),
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn check(&self) -> StorageResult<()> {
        let root = self.root.clone();
        blocking(move || {
            let meta = fs::metadata(&root).with_context(|| {
                format!("storage directory {} is not accessible", root.display())
            })?;
            if !meta.is_dir() {
                return Err(
                    anyhow::anyhow!("storage root {} is not a directory", root.display()).into(),
                );
            }
            // Prove writability by creating and removing a temp file (invisible to `list`).
            let probe = root.join(format!("{}check", tmp_name()));
            let result = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .with_context(|| format!("storage directory {} is not writable", root.display()));
            let _ = fs::remove_file(&probe);
            result?;
            Ok(())
        })
        .await
    }

    fn describe(&self) -> String {
        match url::Url::from_file_path(&self.root) {
            Ok(url) => url.to_string(),
            Err(()) => format!("file://{}", self.root.display()),
        }
    }
    async fn put_file(&self, key: &str, src: &Path) -> StorageResult<()> {
        let path = self.path_of(key)?;
        let src = src.to_path_buf();
        blocking(move || {
            let mut from =
                File::open(&src).with_context(|| format!("opening {}", src.display()))?;
            Ok(put_with(&path, |to| io::copy(&mut from, to).map(|_| ()))?)
        })
        .await
    }

    async fn get_to_file(&self, key: &str, dest: &Path) -> StorageResult<u64> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        let dest = dest.to_path_buf();
        blocking(move || {
            let (mut file, _) = open_object(&path, &key)?;
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&dest)
                .with_context(|| format!("creating {}", dest.display()))?;
            Ok(io::copy(&mut file, &mut out)
                .with_context(|| format!("copying {} to {}", path.display(), dest.display()))?)
        })
        .await
    }
}
