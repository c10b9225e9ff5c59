//! Looking inside a backup without restoring it: one directory's entries (or a subtree),
//! one entry, the difference between two trees, the paths matching a glob.
//!
//! Every function walks resolved entry streams ([`super::chain::resolve`]) in their
//! depth-first order and keeps one page of results plus a constant number of entries,
//! so memory does not grow with the size of the tree. They block: call them from a
//! blocking thread. Pages are cut by path: `from` is the last path of the previous page
//! (in [`dfs_cmp`] order) and `next` the last path of this one when more follow.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::chain::EntryResult;
use super::tree::{dfs_cmp, is_below, Entry, EntryKind};

/// Results of one request and where the next one starts.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The last path of this page, when more items follow.
    pub next: Option<PathBuf>,
}

/// What a tree listing found.
#[derive(Debug)]
pub enum Listing {
    /// No entry at that path.
    NotFound,
    /// The path is a file or a symlink.
    NotADirectory(Box<Entry>),
    Entries(Page<(PathBuf, Entry)>),
}

fn after(path: &Path, from: Option<&Path>) -> bool {
    from.is_none_or(|f| dfs_cmp(path, f) == Ordering::Greater)
}

/// The children of `dir` (every descendant when `recursive`), in name order, after
/// `from`, at most `limit`. The root is the empty path. Stops reading at the end of the
/// subtree. The stream may start anywhere before `dir`, or — for a later page — anywhere
/// before `from` ([`super::chain::resolve_from`]).
pub fn list_dir(
    entries: impl Iterator<Item = EntryResult>,
    dir: &Path,
    recursive: bool,
    from: Option<&Path>,
    limit: usize,
) -> anyhow::Result<Listing> {
    // A cursor below `dir` came from a page of this listing: the directory exists.
    let mut found = from.is_some_and(|f| is_below(f, dir));
    let mut items = Vec::new();
    for item in entries {
        let (path, entry) = item?;
        match dfs_cmp(&path, dir) {
            Ordering::Less => continue,
            Ordering::Equal => {
                if entry.kind != EntryKind::Dir {
                    return Ok(Listing::NotADirectory(Box::new(entry)));
                }
                found = true;
                continue;
            }
            Ordering::Greater => {}
        }
        if !is_below(&path, dir) {
            break;
        }
        // Something below it: it is a directory of this backup.
        found = true;
        let child = path.parent() == Some(dir);
        if (recursive || child) && after(&path, from) {
            if items.len() == limit {
                let next = items.last().map(|(p, _): &(PathBuf, Entry)| p.clone());
                return Ok(Listing::Entries(Page { items, next }));
            }
            items.push((path, entry));
        }
    }
    if !found {
        return Ok(Listing::NotFound);
    }
    Ok(Listing::Entries(Page { items, next: None }))
}

/// The entry at `path`, reading no further than where it would be.
pub fn find_entry(
    entries: impl Iterator<Item = EntryResult>,
    path: &Path,
) -> anyhow::Result<Option<Entry>> {
    for item in entries {
        let (p, entry) = item?;
        match dfs_cmp(&p, path) {
            Ordering::Less => continue,
            Ordering::Equal => return Ok(Some(entry)),
            Ordering::Greater => return Ok(None),
        }
    }
    Ok(None)
}

/// One difference between two trees.
#[derive(Debug, Clone)]
pub struct Change {
    pub path: PathBuf,
    /// `None`: added.
    pub before: Option<Entry>,
    /// `None`: removed.
    pub after: Option<Entry>,
}

/// How many differences of each kind the whole comparison found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffCounts {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

/// Whether an entry at the same path changed. A file changed when its content (chunks or
/// size), mtime, mode or owner did; a symlink when its target, mode or owner did; a
/// directory when its mode or owner did (its mtime moves with every name added or
/// removed inside it, which the comparison lists by themselves); any change of type.
pub fn differs(a: &Entry, b: &Entry) -> bool {
    if a.kind != b.kind || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid {
        return true;
    }
    match a.kind {
        EntryKind::File => a.size != b.size || a.mtime_ns != b.mtime_ns || a.chunks != b.chunks,
        EntryKind::Symlink => a.target != b.target,
        EntryKind::Dir | EntryKind::Deleted => false,
    }
}

/// The differences from `before` to `after` (both resolved trees), in path order: the
/// page after `from` (at most `limit`) and, when `count_all`, the counts over the whole
/// comparison (the walk then goes on to the end; otherwise it stops after the page and
/// the counts cover what was read). The root directory itself is not compared.
pub fn diff(
    before: impl Iterator<Item = EntryResult>,
    after_tree: impl Iterator<Item = EntryResult>,
    from: Option<&Path>,
    limit: usize,
    count_all: bool,
) -> anyhow::Result<(Page<Change>, DiffCounts)> {
    let mut a = before.filter(not_root).peekable();
    let mut b = after_tree.filter(not_root).peekable();
    let mut counts = DiffCounts::default();
    let mut items: Vec<Change> = Vec::new();
    let mut next = None;
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => return Err(a.next().and_then(Result::err).expect("an error")),
            (_, Some(Err(_))) => return Err(b.next().and_then(Result::err).expect("an error")),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(Ok((pa, _))), Some(Ok((pb, _)))) => dfs_cmp(pa, pb),
        };
        let change = match order {
            Ordering::Less => {
                let (path, e) = a.next().expect("peeked")?;
                counts.removed += 1;
                Change {
                    path,
                    before: Some(e),
                    after: None,
                }
            }
            Ordering::Greater => {
                let (path, e) = b.next().expect("peeked")?;
                counts.added += 1;
                Change {
                    path,
                    before: None,
                    after: Some(e),
                }
            }
            Ordering::Equal => {
                let (path, ea) = a.next().expect("peeked")?;
                let (_, eb) = b.next().expect("peeked")?;
                if !differs(&ea, &eb) {
                    continue;
                }
                counts.changed += 1;
                Change {
                    path,
                    before: Some(ea),
                    after: Some(eb),
                }
            }
        };
        if next.is_none() && after(&change.path, from) {
            if items.len() == limit {
                next = items.last().map(|c| c.path.clone());
                if !count_all {
                    break;
                }
            } else {
                items.push(change);
            }
        }
    }
    Ok((Page { items, next }, counts))
}

fn not_root(item: &EntryResult) -> bool {
    !matches!(item, Ok((p, _)) if p.as_os_str().is_empty())
}

/// A glob over backup paths: `**` crosses directories, `*` and `?` do not; a pattern
/// without `/` is matched against the name alone (`*.conf` finds every `.conf` file),
/// one with `/` against the whole relative path (`etc/nginx/*`, `**/*.conf`).
pub struct PathGlob {
    matcher: globset::GlobMatcher,
    name_only: bool,
}

impl PathGlob {
    pub fn new(pattern: &str) -> anyhow::Result<Self> {
        let pattern = pattern.trim_start_matches('/');
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .with_context(|| format!("{pattern:?} is not a valid glob"))?;
        Ok(Self {
            matcher: glob.compile_matcher(),
            name_only: !pattern.contains('/'),
        })
    }

    pub fn matches(&self, path: &Path) -> bool {
        if self.name_only {
            path.file_name()
                .is_some_and(|n| self.matcher.is_match(Path::new(n)))
        } else {
            self.matcher.is_match(path)
        }
    }
}

/// What a search looks at besides the glob.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchFilter {
    /// Only entries modified at or after this time (ns since the epoch).
    pub newer_than_ns: Option<i64>,
    /// Only entries modified before this time (ns since the epoch).
    pub older_than_ns: Option<i64>,
}

/// How one tree's search ended.
#[derive(Debug)]
pub struct TreeSearch {
    pub hits: Vec<(PathBuf, Entry)>,
    /// Entries read.
    pub scanned: u64,
    /// Where to go on in this tree (the last path looked at) when the page or the work
    /// budget ran out before its end; `None` when the tree was searched to its end.
    pub resume_after: Option<PathBuf>,
}

/// The entries of one tree (after `from`) that match, up to `limit` hits, looking at most
/// at `budget` entries after `from`. The root is never a hit.
pub fn search_tree(
    entries: impl Iterator<Item = EntryResult>,
    glob: &PathGlob,
    filter: SearchFilter,
    from: Option<&Path>,
    limit: usize,
    budget: u64,
) -> anyhow::Result<TreeSearch> {
    let mut hits = Vec::new();
    let mut scanned = 0;
    let mut last: Option<PathBuf> = None;
    for item in entries {
        if hits.len() == limit || scanned == budget {
            return Ok(TreeSearch {
                hits,
                scanned,
                resume_after: last,
            });
        }
        let (path, entry) = item?;
        // Entries before `from` are read again but not counted: each page makes progress.
        if !after(&path, from) {
            continue;
        }
        scanned += 1;
        let wanted = !path.as_os_str().is_empty()
            && filter.newer_than_ns.is_none_or(|t| entry.mtime_ns >= t)
            && filter.older_than_ns.is_none_or(|t| entry.mtime_ns < t)
            && glob.matches(&path);
        if wanted {
            hits.push((path.clone(), entry));
        }
        last = Some(path);
    }
    Ok(TreeSearch {
        hits,
        scanned,
        resume_after: None,
    })
}

/// A path as the API shows it: UTF-8 (lossy for other bytes) with `/` separators.
pub fn shown(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The raw bytes of a name that is not UTF-8 (for a base64 field beside the lossy one).
pub fn raw_if_not_utf8(name: &OsStr) -> Option<&[u8]> {
    name.to_str().is_none().then(|| name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::RelPath;

    fn entry(path: &str, kind: EntryKind, size: u64, mode: u32) -> Entry {
        let mut e = Entry::deleted(RelPath::Utf8(path.into()));
        e.kind = kind;
        e.size = size;
        e.mode = mode;
        e
    }

    fn tree(list: &[(&str, EntryKind, u64, u32)]) -> Vec<EntryResult> {
        list.iter()
            .map(|(p, k, s, m)| Ok((PathBuf::from(p), entry(p, *k, *s, *m))))
            .collect()
    }

    use EntryKind::{Dir as D, File as F};

    fn sample() -> Vec<EntryResult> {
        tree(&[
            ("", D, 0, 0o755),
            ("a", D, 0, 0o755),
            ("a/1", F, 1, 0o644),
            ("a/b", D, 0, 0o755),
            ("a/b/2", F, 2, 0o644),
            ("a/c", F, 3, 0o644),
            ("z", F, 4, 0o644),
        ])
    }

    fn paths(page: &Page<(PathBuf, Entry)>) -> Vec<String> {
        page.items.iter().map(|(p, _)| shown(p)).collect()
    }

    #[test]
    fn a_listing_pages_through_one_directory_or_its_subtree() {
        let Listing::Entries(root) =
            list_dir(sample().into_iter(), Path::new(""), false, None, 10).unwrap()
        else {
            panic!()
        };
        assert_eq!(paths(&root), ["a", "z"]);
        let Listing::Entries(a) =
            list_dir(sample().into_iter(), Path::new("a"), false, None, 2).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (paths(&a), a.next.clone()),
            (vec!["a/1".into(), "a/b".into()], Some(PathBuf::from("a/b")))
        );
        let Listing::Entries(rest) = list_dir(
            sample().into_iter(),
            Path::new("a"),
            false,
            a.next.as_deref(),
            2,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((paths(&rest), rest.next), (vec!["a/c".to_string()], None));
        let Listing::Entries(all) =
            list_dir(sample().into_iter(), Path::new("a"), true, None, 10).unwrap()
        else {
            panic!()
        };
        assert_eq!(paths(&all), ["a/1", "a/b", "a/b/2", "a/c"]);
        assert!(matches!(
            list_dir(sample().into_iter(), Path::new("a/nope"), false, None, 10).unwrap(),
            Listing::NotFound
        ));
        assert!(matches!(
            list_dir(sample().into_iter(), Path::new("z"), false, None, 10).unwrap(),
            Listing::NotADirectory(_)
        ));
        assert_eq!(
            find_entry(sample().into_iter(), Path::new("a/b/2"))
                .unwrap()
                .unwrap()
                .size,
            2
        );
        assert!(find_entry(sample().into_iter(), Path::new("a/b/3"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_diff_lists_each_edit_once_and_counts_them_all() {
        let before = sample();
        let after = tree(&[
            ("", D, 0, 0o700),
            ("a", D, 0, 0o755),
            ("a/1", F, 1, 0o600),
            ("a/c", F, 30, 0o644),
            ("new", F, 5, 0o644),
            ("z", F, 4, 0o644),
        ]);
        let (page, counts) = diff(before.into_iter(), after.into_iter(), None, 10, true).unwrap();
        let got: Vec<(String, bool, bool)> = page
            .items
            .iter()
            .map(|c| (shown(&c.path), c.before.is_some(), c.after.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("a/1".to_string(), true, true),
                ("a/b".into(), true, false),
                ("a/b/2".into(), true, false),
                ("a/c".into(), true, true),
                ("new".into(), false, true),
            ]
        );
        assert_eq!(
            counts,
            DiffCounts {
                added: 1,
                removed: 2,
                changed: 2
            }
        );
        let (first, _) = diff(
            sample().into_iter(),
            tree(&[("", D, 0, 0o755)]).into_iter(),
            None,
            2,
            true,
        )
        .unwrap();
        assert_eq!(first.next, Some(PathBuf::from("a/1")));
        let (second, counts) = diff(
            sample().into_iter(),
            tree(&[("", D, 0, 0o755)]).into_iter(),
            first.next.as_deref(),
            10,
            true,
        )
        .unwrap();
        assert_eq!(second.items.len(), 4);
        assert_eq!(counts.removed, 6);
    }

    #[test]
    fn globs_match_names_or_paths_and_searches_stop_at_their_budget() {
        let conf = PathGlob::new("*.conf").unwrap();
        assert!(conf.matches(Path::new("etc/nginx/site.conf")));
        let nginx = PathGlob::new("etc/nginx/*").unwrap();
        assert!(nginx.matches(Path::new("etc/nginx/site.conf")));
        assert!(!nginx.matches(Path::new("etc/nginx/conf.d/x.conf")));
        let deep = PathGlob::new("**/*.conf").unwrap();
        assert!(deep.matches(Path::new("etc/nginx/conf.d/x.conf")));
        assert!(PathGlob::new("a[").is_err());
        let all = PathGlob::new("*").unwrap();
        let s = search_tree(
            sample().into_iter(),
            &all,
            SearchFilter::default(),
            None,
            100,
            3,
        )
        .unwrap();
        assert_eq!(s.scanned, 3);
        assert_eq!(s.resume_after, Some(PathBuf::from("a/1")));
        let s = search_tree(
            sample().into_iter(),
            &all,
            SearchFilter::default(),
            s.resume_after.as_deref(),
            100,
            100,
        )
        .unwrap();
        assert_eq!(s.hits.len(), 4);
        assert!(s.resume_after.is_none());
    }
}
