//! Where Strata may write and read on the local file system: restore targets and
//! sources are judged where they really land, every symlink on the way followed.
//!
//! - A **restore target** may not be, contain, or lie inside the data directory
//!   (`STRATA_DATA_DIR`) or a local repository (`STRATA_STORAGE=file://…`): a restore
//!   replaces its target wholesale. Nor may it be `/` or lie in (or contain) a system
//!   directory — `/proc`, `/sys`, `/dev`, `/boot`, `/etc`, `/usr`, `/bin`, `/sbin`,
//!   `/lib*`, `/var/lib` — unless it lies inside a path of `STRATA_RESTORE_ALLOW_PATHS`
//!   (which never opens the data directory or the repository).
//! - A **source** may not lie in `/proc`, `/sys` or `/dev` (files there never end, or are
//!   devices), nor in the data directory or the repository.
//!
//! The API checks when a request arrives and the worker again right before it reads or
//! writes, since a symlink can change in between.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use strata_core::errors::ErrorCode;

use strata_core::model::FieldError;

/// System directories a restore never writes into (nor replaces a parent of), unless
/// `STRATA_RESTORE_ALLOW_PATHS` allows it. Every top-level `/lib*` directory is one too.
pub const SYSTEM_DIRS: &[&str] = &[
    "/proc", "/sys", "/dev", "/boot", "/etc", "/usr", "/bin", "/sbin", "/var/lib",
];

/// Pseudo file systems no source may read: their files say they are empty and never
/// end (`/proc/self/pagemap`), or are devices.
pub const PSEUDO_DIRS: &[&str] = &["/proc", "/sys", "/dev"];

/// How many symlinks a resolution follows before giving up (as the kernel's `ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// The path `path` really designates: absolute, with every symlink followed (the last
/// component's too) and `.` / `..` applied where they land, as the kernel would. Parts
/// that do not exist yet are kept as written. Fails on a symlink loop.
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let path = std::path::absolute(path)?;
    // The components still to walk, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, &path);
    let mut out = PathBuf::from("/");
    let mut followed = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            out.pop();
            continue;
        }
        let next = out.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(md) if md.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&next)?;
                if target.has_root() {
                    out = PathBuf::from("/");
                }
                push_components(&mut pending, &target);
            }
            // A directory, a file, or nothing yet: taken as written.
            _ => out = next,
        }
    }
    Ok(out)
}

/// Pushes the components of `path` so that its first one is popped next.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => pending.push(n.to_owned()),
            Component::ParentDir => pending.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

/// The local directory of a `file://` storage URL; `None` for other schemes.
pub fn local_repository(storage_url: &str) -> Option<PathBuf> {
    let (scheme, _) = storage_url.trim().split_once("://")?;
    if !scheme.eq_ignore_ascii_case("file") {
        return None;
    }
    url::Url::parse(storage_url.trim())
        .ok()?
        .to_file_path()
        .ok()
}

/// Parses `STRATA_RESTORE_ALLOW_PATHS`: absolute paths separated by `:`.
pub fn parse_allow_paths(value: &str) -> Result<Vec<PathBuf>, String> {
    value
        .split(':')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let path = PathBuf::from(p);
            if path.is_absolute() {
                Ok(path)
            } else {
                Err(format!("{p:?} is not an absolute path"))
            }
        })
        .collect()
}

/// A directory Strata keeps for itself.
#[derive(Debug, Clone)]
struct Protected {
    path: PathBuf,
    what: &'static str,
    setting: &'static str,
}

/// The rules above, for one process's configuration.
#[derive(Debug, Clone, Default)]
pub struct PathPolicy {
    protected: Vec<Protected>,
    allow: Vec<PathBuf>,
}

/// How `a` relates to `b`.
fn relation(a: &Path, b: &Path) -> Option<&'static str> {
    if a == b {
        Some("is")
    } else if a.starts_with(b) {
        Some("lies inside")
    } else if b.starts_with(a) {
        Some("contains")
    } else {
        None
    }
}

impl PathPolicy {
    /// The policy of a process whose data directory is `data_dir`, whose repository is
    /// at `storage_url`, and which allows restores into `allow` (and below).
    pub fn new(data_dir: &Path, storage_url: &str, allow: &[PathBuf]) -> Self {
        // The most specific first: a path in the repository is refused as such.
        let mut protected = Vec::new();
        if let Some(repo) = local_repository(storage_url) {
            protected.push(Protected {
                path: repo,
                what: "the repository",
                setting: "STRATA_STORAGE",
            });
        }
        protected.push(Protected {
            path: data_dir.to_path_buf(),
            what: "Strata's data directory",
            setting: "STRATA_DATA_DIR",
        });
        Self {
            protected,
            allow: allow.to_vec(),
        }
    }

    /// The policy of a process whose data directory and repository are these, with
    /// `STRATA_RESTORE_ALLOW_PATHS` read from the environment.
    pub fn from_env(data_dir: &Path, storage_url: &str) -> anyhow::Result<Self> {
        let allow = parse_allow_paths(
            &strata_core::config::var("STRATA_RESTORE_ALLOW_PATHS").unwrap_or_default(),
        )
        .map_err(|e| anyhow::anyhow!("STRATA_RESTORE_ALLOW_PATHS: {e}"))?;
        Ok(Self::new(data_dir, storage_url, &allow))
    }

    /// Where the text of a refusal starts: the path as given, and where it lands when
    /// that differs.
    fn described(given: &Path, real: &Path) -> String {
        if given == real {
            format!("{}", given.display())
        } else {
            format!("{} (which resolves to {})", given.display(), real.display())
        }
    }

    fn resolved(&self, path: &Path, code: ErrorCode, field: &str) -> Result<PathBuf, FieldError> {
        resolve(path).map_err(|e| {
            FieldError::new(
                code,
                field,
                format!("{} cannot be resolved: {e}", path.display()),
            )
        })
    }

    /// Checks a restore target (a directory, or an SQLite file); returns where it really
    /// lands. Refusals are `target_not_allowed`, naming `field`.
    pub fn restore_target(&self, path: &Path, field: &str) -> Result<PathBuf, FieldError> {
        let code = ErrorCode::TargetNotAllowed;
        let real = self.resolved(path, code, field)?;
        for p in &self.protected {
            let Ok(mine) = resolve(&p.path) else {
                continue;
            };
            if let Some(rel) = relation(&real, &mine) {
                return Err(FieldError::new(
                    code,
                    field,
                    format!(
                        "{} {rel} {} {} ({}): a restore replaces its target, so it may never write there",
                        Self::described(path, &real),
                        p.what,
                        mine.display(),
                        p.setting
                    ),
                ));
            }
        }
        if self.allowed(&real) {
            return Ok(real);
        }
        if real == Path::new("/") {
            return Err(FieldError::new(
                code,
                field,
                format!(
                    "{} is the root directory; a restore never replaces it",
                    Self::described(path, &real)
                ),
            ));
        }
        if let Some((rel, dir)) = system_relation(&real) {
            return Err(FieldError::new(
                code,
                field,
                format!(
                    "{} {rel} the system directory {dir}; restore somewhere else, or list the path in \
                     STRATA_RESTORE_ALLOW_PATHS if it really must go there",
                    Self::described(path, &real)
                ),
            ));
        }
        Ok(real)
    }

    /// Checks a source's path (its directory, or its SQLite file); returns where it
    /// really lands. Refusals are `source_not_allowed`, naming `field`.
    pub fn source(&self, path: &Path, field: &str) -> Result<PathBuf, FieldError> {
        let code = ErrorCode::SourceNotAllowed;
        let real = self.resolved(path, code, field)?;
        for dir in PSEUDO_DIRS {
            if real.starts_with(dir) {
                return Err(FieldError::new(
                    code,
                    field,
                    format!(
                        "{} lies in {dir}, whose files are not data to back up (they may never end, or are devices)",
                        Self::described(path, &real)
                    ),
                ));
            }
        }
        for p in &self.protected {
            let Ok(mine) = resolve(&p.path) else {
                continue;
            };
            if real.starts_with(&mine) {
                let rel = if real == mine { "is" } else { "lies inside" };
                return Err(FieldError::new(
                    code,
                    field,
                    format!(
                        "{} {rel} {} {} ({}); Strata does not back up its own storage",
                        Self::described(path, &real),
                        p.what,
                        mine.display(),
                        p.setting
                    ),
                ));
            }
        }
        Ok(real)
    }

    fn allowed(&self, real: &Path) -> bool {
        self.allow
            .iter()
            .filter_map(|a| resolve(a).ok())
            .any(|a| real.starts_with(a))
    }
}

/// Whether `real` is, lies inside or contains a system directory (and which).
fn system_relation(real: &Path) -> Option<(&'static str, String)> {
    for dir in SYSTEM_DIRS {
        if let Some(rel) = relation(real, Path::new(dir)) {
            return Some((rel, (*dir).to_string()));
        }
    }
    // `/lib`, `/lib32`, `/lib64`, `/libx32`…: any top-level directory named `lib*`.
    let mut parts = real.components();
    if let (Some(Component::RootDir), Some(Component::Normal(first))) = (parts.next(), parts.next())
    {
        if first.as_encoded_bytes().starts_with(b"lib") {
            let rel = if parts.next().is_none() {
                "is"
            } else {
                "lies inside"
            };
            return Some((rel, format!("/{}", first.to_string_lossy())));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn policy(dir: &Path, allow: &[&str]) -> PathPolicy {
        let data = dir.join("data");
        std::fs::create_dir_all(data.join("repo")).unwrap();
        PathPolicy::new(
            &data,
            &format!("file://{}", data.join("repo").display()),
            &allow.iter().map(PathBuf::from).collect::<Vec<_>>(),
        )
    }

    fn refused(p: &PathPolicy, target: &str) -> String {
        let err = p
            .restore_target(Path::new(target), "target")
            .expect_err(target);
        assert_eq!(err.code, "target_not_allowed", "{target}: {err}");
        assert_eq!(err.field, "target");
        err.message
    }

    #[test]
    fn resolve_follows_symlinks_in_parents_and_last_and_keeps_missing_parts() {
        let dir = tempfile::tempdir().unwrap();
        let root = resolve(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("real/inner")).unwrap();
        symlink(root.join("real"), root.join("abs")).unwrap();
        symlink("real/inner", root.join("rel")).unwrap();
        symlink("../../real", root.join("real/inner/up")).unwrap();
        symlink(root.join("nowhere/yet"), root.join("dangling")).unwrap();
        assert_eq!(resolve(&root.join("abs/x")).unwrap(), root.join("real/x"));
        assert_eq!(resolve(&root.join("rel")).unwrap(), root.join("real/inner"));
        assert_eq!(
            resolve(&root.join("rel/up/inner/new/deeper")).unwrap(),
            root.join("real/inner/new/deeper")
        );
        // `..` applies where a symlink lands, as the kernel does.
        assert_eq!(
            resolve(&root.join("rel/../y")).unwrap(),
            root.join("real/y")
        );
        assert_eq!(
            resolve(&root.join("dangling/z")).unwrap(),
            root.join("nowhere/yet/z")
        );
        assert_eq!(
            resolve(Path::new("/a//b/./c/")).unwrap(),
            Path::new("/a/b/c")
        );
        symlink(root.join("loop2"), root.join("loop1")).unwrap();
        symlink(root.join("loop1"), root.join("loop2")).unwrap();
        assert!(resolve(&root.join("loop1/x")).is_err());
        // /proc/self is a symlink to the process's own directory.
        let me = resolve(Path::new("/proc/self")).unwrap();
        assert_eq!(me, Path::new(&format!("/proc/{}", std::process::id())));
    }

    #[test]
    fn restore_targets_in_the_data_dir_or_repository_are_refused_however_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let root = resolve(dir.path()).unwrap();
        let p = policy(&root, &[]);
        let data = root.join("data");
        for t in [
            format!("{}/repo", data.display()),
            format!("{}/repo/", data.display()),
            format!("{}//repo", data.display()),
            format!("{}/./repo", data.display()),
            format!("{}/repo/packs/new", data.display()),
            format!("{}", data.display()),
            format!("{}/other", data.display()),
            // Contains the data directory.
            format!("{}", root.display()),
        ] {
            let msg = refused(&p, &t);
            assert!(
                msg.contains("data directory") || msg.contains("repository"),
                "{msg}"
            );
        }
        // A symlinked parent is judged where it lands.
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        symlink(&data, root.join("elsewhere/link")).unwrap();
        let msg = refused(&p, &format!("{}/elsewhere/link/repo", root.display()));
        assert!(msg.contains("resolves to"), "{msg}");
        // Allowing a path never opens the data directory.
        let p = policy(&root, &[root.to_str().unwrap()]);
        refused(&p, &format!("{}/repo", data.display()));
        // Beside it is fine.
        assert_eq!(
            p.restore_target(&root.join("restored"), "target").unwrap(),
            root.join("restored")
        );
    }

    #[test]
    fn restore_targets_in_system_directories_are_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path(), &[]);
        for t in [
            "/",
            "/proc",
            "/proc/self",
            "/sys/kernel",
            "/dev/shm/x",
            "/boot/x",
            "/etc",
            "/etc/strata",
            "/usr/local/x",
            "/bin/x",
            "/sbin",
            "/lib/x",
            "/lib64",
            "/lib32/y",
            "/libx32",
            "/var/lib/x",
            "/var/lib",
            "/var",
        ] {
            refused(&p, t);
        }
        assert!(refused(&p, "/var").contains("contains the system directory /var/lib"));
        // Neighbours are not system directories.
        for t in [
            "/srv/app",
            "/var/backups/x",
            "/home/u/restore",
            "/tmp/x",
            "/etcetera",
        ] {
            assert!(p.restore_target(Path::new(t), "target").is_ok(), "{t}");
        }
        let p = policy(dir.path(), &["/var/lib/myapp", "/dev/shm"]);
        assert!(p.restore_target(Path::new("/var/lib/myapp"), "t").is_ok());
        assert!(p
            .restore_target(Path::new("/var/lib/myapp/data"), "t")
            .is_ok());
        assert!(p.restore_target(Path::new("/dev/shm/x"), "t").is_ok());
        refused(&p, "/var/lib/other");
        refused(&p, "/var/lib");
    }

    #[test]
    fn sources_in_pseudo_file_systems_or_strata_storage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = resolve(dir.path()).unwrap();
        let p = policy(&root, &[]);
        symlink("/proc/self", root.join("me")).unwrap();
        for s in [
            "/proc".to_string(),
            "/proc/self".into(),
            "/proc/self/root/proc".into(),
            "/sys/kernel".into(),
            "/dev".into(),
            "/dev/zero".into(),
            format!("{}/me", root.display()),
            format!("{}/data", root.display()),
            format!("{}/data/repo/packs", root.display()),
        ] {
            let err = p.source(Path::new(&s), "files.path").expect_err(&s);
            assert_eq!(err.code, "source_not_allowed", "{s}");
            assert_eq!(err.field, "files.path");
        }
        // A source may contain the data directory (it is backed up by another means).
        assert!(p.source(&root, "files.path").is_ok());
        assert!(p.source(Path::new("/srv/app"), "files.path").is_ok());
        assert!(p.source(Path::new("/etc"), "files.path").is_ok());
    }

    #[test]
    fn allow_paths_parse() {
        assert_eq!(
            parse_allow_paths("/a:/b/c: :").unwrap(),
            vec![PathBuf::from("/a"), PathBuf::from("/b/c")]
        );
        assert!(parse_allow_paths("/a:rel").is_err());
        assert_eq!(
            local_repository("file:///srv/strata/repo"),
            Some(PathBuf::from("/srv/strata/repo"))
        );
        assert_eq!(local_repository("s3://bucket/prefix"), None);
    }
}
