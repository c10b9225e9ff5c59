//! A restore over the live source keeps what no backup holds: the paths the source's
//! exclude patterns leave out, and the special files (FIFOs, sockets, devices) that
//! backups skip. They are carried from the live directory into the staging tree before
//! the swap — files as hard links (the same files, whatever is written to them
//! meanwhile; a copy when a link cannot be made), directories and symlinks recreated
//! — so the swap replaces everything else and loses nothing that exists nowhere else.
//! Where the restored backup holds the same path, the live one wins (the backup's copy
//! stays in the backup) and a warning names it. The staging tree's directories keep the
//! modes and times the restore gave them.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use strata_core::errors::ErrorCode;

use anyhow::Context;
use filetime::FileTime;
use strata_engine::repo::restore::remove_all;
use strata_engine::repo::writer::is_excluded;
use strata_engine::repo::writer::GlobSet;

/// How many kept paths the result lists.
const LISTED: usize = 100;

/// What was carried over.
#[derive(Debug, Default)]
pub struct Kept {
    /// Topmost paths carried (an excluded directory once, with all it holds).
    pub count: u64,
    pub paths: Vec<String>,
    pub truncated: bool,
    /// `kept_over_backup` (the backup's copy was set aside for the live one) and
    /// `not_kept` (a path that could not be carried) warnings.
    pub warnings: Vec<serde_json::Value>,
}

struct Carrier<'a> {
    live: &'a Path,
    staged: &'a Path,
    excludes: &'a GlobSet,
    skip: &'a [PathBuf],
    kept: Kept,
    /// Staging directories whose entries changed: their mode and time, put back at the end.
    touched: BTreeMap<PathBuf, (u32, FileTime)>,
}

/// Carries what no backup holds from `live` into `staged` (both directories; paths in
/// `skip` are left alone).
pub fn keep_unbacked(
    live: &Path,
    staged: &Path,
    excludes: &GlobSet,
    skip: &[PathBuf],
) -> anyhow::Result<Kept> {
    let mut c = Carrier {
        live,
        staged,
        excludes,
        skip,
        kept: Kept::default(),
        touched: BTreeMap::new(),
    };
    let walked = c.walk(Path::new(""));
    // Deepest first, so a parent's time is set after its children's changes.
    for (dir, (mode, mtime)) in c.touched.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
        filetime::set_file_mtime(dir, *mtime)
            .with_context(|| format!("setting the time of {}", dir.display()))?;
    }
    walked?;
    Ok(c.kept)
}

impl Carrier<'_> {
    fn walk(&mut self, rel: &Path) -> anyhow::Result<()> {
        let dir = self.live.join(rel);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel = rel.join(e.file_name());
            if self.skip.contains(&rel) {
                continue;
            }
            let ft = e
                .file_type()
                .with_context(|| format!("inspecting {}", e.path().display()))?;
            let special =
                ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device();
            if is_excluded(self.excludes, &rel) || special {
                self.carry_top(&rel)?;
            } else if ft.is_dir() {
                self.walk(&rel)?;
            }
        }
        Ok(())
    }

    /// Carries one topmost path (with everything below it).
    fn carry_top(&mut self, rel: &Path) -> anyhow::Result<()> {
        let to = self.staged.join(rel);
        self.make_parents(rel)?;
        if fs::symlink_metadata(&to).is_ok() {
            remove_all(&to)?;
            self.kept.warnings.push(serde_json::json!({
                "code": ErrorCode::KeptOverBackup,
                "path": rel.to_string_lossy(),
                "message": "the restored backup holds this path, but the live one is in no backup: the \
                            live one was kept (the backup's copy is still in the backup)",
            }));
        }
        self.carry(&self.live.join(rel), &to, rel)?;
        self.kept.count += 1;
        if self.kept.paths.len() < LISTED {
            self.kept.paths.push(rel.to_string_lossy().into_owned());
        } else {
            self.kept.truncated = true;
        }
        Ok(())
    }

    /// Makes sure the staging tree has `rel`'s parent directories (made like the live
    /// ones when the backup has none), and records the one that gains an entry.
    fn make_parents(&mut self, rel: &Path) -> anyhow::Result<()> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut at = PathBuf::new();
        let mut chain = vec![PathBuf::new()];
        for c in parent.components() {
            at.push(c);
            chain.push(at.clone());
        }
        for dir_rel in chain {
            let staged = self.staged.join(&dir_rel);
            match fs::symlink_metadata(&staged) {
                Ok(md) if md.is_dir() => self.touch(&staged, &md)?,
                Ok(_) => {
                    // The backup has a file where the live tree has a directory holding
                    // something to keep: the directory wins.
                    fs::remove_file(&staged)?;
                    self.make_dir_like(&self.live.join(&dir_rel), &staged)?;
                }
                Err(_) => self.make_dir_like(&self.live.join(&dir_rel), &staged)?,
            }
        }
        Ok(())
    }

    /// Records a staging directory's mode and time before it changes, and makes it
    /// writable meanwhile.
    fn touch(&mut self, dir: &Path, md: &fs::Metadata) -> anyhow::Result<()> {
        if self.touched.contains_key(dir) {
            return Ok(());
        }
        let mode = md.permissions().mode() & 0o7777;
        self.touched.insert(
            dir.to_path_buf(),
            (mode, FileTime::from_last_modification_time(md)),
        );
        if mode & 0o700 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
        }
        Ok(())
    }

    /// A new staging directory like the live one (mode and time set at the end).
    fn make_dir_like(&mut self, live: &Path, staged: &Path) -> anyhow::Result<()> {
        let md = fs::metadata(live).with_context(|| format!("inspecting {}", live.display()))?;
        fs::create_dir(staged).with_context(|| format!("creating {}", staged.display()))?;
        self.touched.insert(
            staged.to_path_buf(),
            (
                md.permissions().mode() & 0o7777,
                FileTime::from_last_modification_time(&md),
            ),
        );
        Ok(())
    }

    /// Carries `from` to `to` (which does not exist): files and special files linked,
    /// directories and symlinks recreated.
    fn carry(&mut self, from: &Path, to: &Path, rel: &Path) -> anyhow::Result<()> {
        let md =
            fs::symlink_metadata(from).with_context(|| format!("inspecting {}", from.display()))?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(to).with_context(|| format!("creating {}", to.display()))?;
            fs::set_permissions(to, fs::Permissions::from_mode(0o700))?;
            let mut names: Vec<_> = fs::read_dir(from)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()?;
            names.sort();
            for name in names {
                self.carry(&from.join(&name), &to.join(&name), &rel.join(&name))?;
            }
            fs::set_permissions(to, fs::Permissions::from_mode(md.mode() & 0o7777))?;
            filetime::set_file_mtime(to, FileTime::from_last_modification_time(&md))?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(from)?, to)
                .with_context(|| format!("creating symlink {}", to.display()))?;
            let t = FileTime::from_last_modification_time(&md);
            filetime::set_symlink_file_times(to, t, t)?;
        } else {
            match fs::hard_link(from, to) {
                Ok(()) => {}
                // Another file system below the directory, or links not permitted:
                // a copy keeps the content.
                Err(_) if ft.is_file() => {
                    fs::copy(from, to).with_context(|| {
                        format!("copying {} to {}", from.display(), to.display())
                    })?;
                    filetime::set_file_mtime(to, FileTime::from_last_modification_time(&md))?;
                }
                Err(e) => self.kept.warnings.push(serde_json::json!({
                    "code": ErrorCode::NotKept,
                    "path": rel.to_string_lossy(),
                    "message": format!("this special file could not be kept: {e}"),
                })),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excludes(patterns: &[&str]) -> GlobSet {
        strata_engine::repo::writer::compile_excludes(
            &patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn excluded_paths_and_special_files_are_carried_and_staged_times_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (live, staged) = (dir.path().join("live"), dir.path().join("staged"));
        fs::create_dir_all(live.join("sub")).unwrap();
        fs::create_dir_all(live.join("cache/deep")).unwrap();
        fs::create_dir_all(live.join("onlylive/inner")).unwrap();
        fs::write(live.join("x.tmp"), "live scratch").unwrap();
        fs::write(live.join("sub/y.tmp"), "nested").unwrap();
        fs::write(live.join("cache/deep/blob"), "cached").unwrap();
        fs::write(live.join("onlylive/inner/z.tmp"), "deep scratch").unwrap();
        fs::write(live.join("plain.txt"), "backed up").unwrap();
        std::os::unix::fs::symlink("../x.tmp", live.join("cache/link")).unwrap();
        fs::write(live.join("db.sqlite"), "skip me").unwrap();
        // The staging tree: what the backup holds, with a copy of x.tmp (the pattern
        // was added after that backup) and old directory times.
        fs::create_dir_all(staged.join("sub")).unwrap();
        fs::write(staged.join("plain.txt"), "restored").unwrap();
        fs::write(staged.join("x.tmp"), "the backup's copy").unwrap();
        fs::set_permissions(staged.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
        let old = FileTime::from_unix_time(1_500_000_000, 0);
        filetime::set_file_mtime(staged.join("sub"), old).unwrap();
        filetime::set_file_mtime(&staged, old).unwrap();

        let kept = keep_unbacked(
            &live,
            &staged,
            &excludes(&["*.tmp", "cache"]),
            &[PathBuf::from("db.sqlite")],
        )
        .unwrap();
        assert_eq!(
            kept.paths,
            ["cache", "onlylive/inner/z.tmp", "sub/y.tmp", "x.tmp"]
        );
        assert_eq!(kept.count, 4);
        assert_eq!(
            fs::read_to_string(staged.join("x.tmp")).unwrap(),
            "live scratch"
        );
        assert_eq!(
            fs::read_to_string(staged.join("sub/y.tmp")).unwrap(),
            "nested"
        );
        assert_eq!(
            fs::read_to_string(staged.join("cache/deep/blob")).unwrap(),
            "cached"
        );
        assert_eq!(
            fs::read_link(staged.join("cache/link")).unwrap(),
            Path::new("../x.tmp")
        );
        assert_eq!(
            fs::read_to_string(staged.join("onlylive/inner/z.tmp")).unwrap(),
            "deep scratch"
        );
        assert_eq!(
            fs::read_to_string(staged.join("plain.txt")).unwrap(),
            "restored"
        );
        assert!(!staged.join("db.sqlite").exists());
        // Hard links: the same file.
        assert_eq!(
            fs::metadata(staged.join("x.tmp")).unwrap().ino(),
            fs::metadata(live.join("x.tmp")).unwrap().ino()
        );
        // The restored directories keep their mode and time.
        let sub = fs::metadata(staged.join("sub")).unwrap();
        assert_eq!(sub.permissions().mode() & 0o7777, 0o555);
        assert_eq!(FileTime::from_last_modification_time(&sub), old);
        assert_eq!(
            FileTime::from_last_modification_time(&fs::metadata(&staged).unwrap()),
            old
        );
        assert_eq!(kept.warnings.len(), 1, "{:?}", kept.warnings);
        assert_eq!(kept.warnings[0]["code"], "kept_over_backup");
        assert_eq!(kept.warnings[0]["path"], "x.tmp");
    }

    #[test]
    fn nothing_to_keep_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (live, staged) = (dir.path().join("live"), dir.path().join("staged"));
        fs::create_dir_all(live.join("a")).unwrap();
        fs::write(live.join("a/f"), "x").unwrap();
        fs::create_dir_all(&staged).unwrap();
        let kept = keep_unbacked(&live, &staged, &excludes(&[]), &[]).unwrap();
        assert_eq!(kept.count, 0);
        assert!(kept.paths.is_empty() && kept.warnings.is_empty());
        assert_eq!(fs::read_dir(&staged).unwrap().count(), 0);
    }
}
