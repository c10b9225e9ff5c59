//! The engine on in-memory storage and an in-memory index, no PostgreSQL: backup and
//! restore round trip, deduplication, chain resolution, garbage collection marking.
//! Backups are driven the way the worker's backup job drives them (write the snapshot,
//! then the manifest), with the parent's chain resolved for an incremental.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use strata_storage::{DynStorage, MemStorage, Storage};

use super::chain::{load_chain, resolve};
use super::format::FORMAT_VERSION;
use super::gc::{mark, referenced_chunks, Mark};
use super::index::{DynIndex, Index, MemIndex};
use super::manifest::{manifest_key, Manifest};
use super::progress::Progress;
use super::reader::ChunkReader;
use super::restore::{restore_into, RestoreStats};
use super::writer::{write_snapshot, SnapshotInput, SnapshotOutput};
use super::Repository;

/// Every test here must stay well under a second.
const BUDGET: Duration = Duration::from_secs(1);

struct Fixture {
    storage: Arc<MemStorage>,
    index: Arc<MemIndex>,
    repo: Repository,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let storage = Arc::new(MemStorage::new());
        let dynamic: DynStorage = storage.clone();
        Repository::create(&dynamic, None).await.unwrap();
        let repo = Repository::open(dynamic, None).await.unwrap();
        Self {
            storage,
            index: MemIndex::shared(),
            repo,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn index(&self) -> DynIndex {
        self.index.clone()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Backs `root` up as backup `id`: a full one, or an incremental over `parent`'s
    /// chain. Writes the manifest, as the backup job does.
    async fn backup(
        &self,
        root: &Path,
        id: &str,
        parent: Option<&Manifest>,
    ) -> (Manifest, SnapshotOutput) {
        let parent_chain = match parent {
            Some(m) => Some(load_chain(&self.repo, m.clone()).await.unwrap()),
            None => None,
        };
        let parent_stream = parent_chain.as_ref().map(|chain| {
            let reader = Arc::new(ChunkReader::new(self.repo.clone(), self.index()));
            resolve(reader, tokio::runtime::Handle::current(), chain)
        });
        let output = write_snapshot(
            &self.repo,
            &self.index(),
            SnapshotInput {
                root: Some(root.to_path_buf()),
                exclude: Vec::new(),
                skip: Vec::new(),
                stream: None,
                parent: parent_stream,
            },
            Arc::new(Progress::default()),
            Default::default(),
        )
        .await
        .unwrap();
        let mut chain: Vec<String> = parent_chain
            .iter()
            .flatten()
            .map(|m| m.backup_id.clone())
            .collect();
        chain.push(id.to_string());
        let now = Utc::now();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            backup_id: id.into(),
            source_id: uuid::Uuid::nil(),
            source_name: "src".into(),
            root: root.display().to_string(),
            backup_type: if parent.is_some() {
                "incremental"
            } else {
                "full"
            }
            .into(),
            requested_type: if parent.is_some() {
                "incremental"
            } else {
                "full"
            }
            .into(),
            parent: parent.map(|m| m.backup_id.clone()),
            chain,
            created_at: now,
            completed_at: now,
            stats: output.stats.clone(),
            tree: output.tree.clone(),
            tree_index: output.tree_index.clone(),
            warnings: output.warnings.clone(),
            has_files: true,
            database: None,
            source_spec: None,
        };
        self.repo.put_manifest(&manifest).await.unwrap();
        (manifest, output)
    }

    /// Restores backup `id` (its chain resolved from storage) into `target`.
    async fn restore(&self, id: &str, target: &Path) -> RestoreStats {
        let manifest = self.repo.get_manifest(id).await.unwrap();
        let chain = load_chain(&self.repo, manifest).await.unwrap();
        restore_into(
            &self.repo,
            &self.index(),
            &chain,
            &[],
            target,
            false,
            Arc::new(Progress::default()),
            Default::default(),
        )
        .await
        .unwrap()
    }

    async fn pack_ids(&self) -> HashSet<String> {
        self.index
            .packs()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect()
    }

    async fn pack_objects(&self) -> usize {
        self.storage.list("packs/").await.unwrap().len()
    }
}

/// Incompressible bytes, the same for the same seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn write(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// What a tree holds, path by path: kind, mode, mtime, and content (a symlink's target).
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    mtime_ns: i64,
    content: Vec<u8>,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        let path = root.join(rel);
        let md = fs::symlink_metadata(&path).unwrap();
        let mtime_ns = md.mtime() * 1_000_000_000 + md.mtime_nsec();
        let (kind, mode, content) = if md.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            ('l', 0, target.into_os_string().into_encoded_bytes())
        } else if md.is_dir() {
            ('d', md.mode() & 0o7777, Vec::new())
        } else {
            ('f', md.mode() & 0o7777, fs::read(&path).unwrap())
        };
        out.insert(
            rel.to_path_buf(),
            Node {
                kind,
                mode,
                mtime_ns,
                content,
            },
        );
        if kind == 'd' {
            for e in fs::read_dir(&path).unwrap() {
                walk(root, &rel.join(e.unwrap().file_name()), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// Files, nested directories with their own modes, a symlink, an empty file, and a
/// file of several chunks.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("docs/deep")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    write(&root.join("a.txt"), &b"hello\n".repeat(100), 0o644);
    write(&root.join("run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&root.join("empty"), b"", 0o600);
    write(&root.join("docs/notes.md"), b"# notes\n", 0o640);
    write(&root.join("docs/deep/big.bin"), &noise(1, 1_500_000), 0o644);
    std::os::unix::fs::symlink("../a.txt", root.join("docs/link")).unwrap();
    fs::set_permissions(root.join("docs/deep"), fs::Permissions::from_mode(0o750)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_backed_up_and_restored_is_identical() {
    let started = Instant::now();
    let f = Fixture::new().await;
    let src = f.path("src");
    make_tree(&src);
    let before = snapshot(&src);
    let (_, out) = f.backup(&src, "full-1", None).await;
    assert_eq!(
        (out.stats.files, out.stats.symlinks, out.stats.dirs),
        (5, 1, 4),
        "{:?}",
        out.stats
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);

    let target = f.path("restored");
    let stats = f.restore("full-1", &target).await;
    assert_eq!((stats.files, stats.symlinks), (5, 1));
    let after = snapshot(&target);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, node) in &before {
        assert_eq!(node, &after[path], "{} differs", path.display());
    }
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_of_the_same_data_stores_nothing_new() {
    let started = Instant::now();
    let f = Fixture::new().await;
    let src = f.path("src");
    make_tree(&src);
    let (_, first) = f.backup(&src, "full-1", None).await;
    assert!(first.stats.new_chunks > 0 && first.stats.stored_size > 0);
    let (packs, objects) = (f.pack_ids().await, f.pack_objects().await);
    assert_eq!(packs.len(), objects);

    let (_, second) = f.backup(&src, "full-2", None).await;
    let s = &second.stats;
    assert_eq!((s.new_chunks, s.stored_size), (0, 0), "{s:?}");
    assert_eq!(s.reused_chunks, first.stats.new_chunks, "{s:?}");
    assert_eq!(s.reused_bytes, s.logical_size, "{s:?}");
    assert_eq!(s.read_bytes, s.logical_size, "{s:?}");
    assert_eq!(s.logical_size, first.stats.logical_size);
    assert_eq!(f.pack_ids().await, packs, "a new pack was indexed");
    assert_eq!(f.pack_objects().await, objects, "a new pack was stored");

    // The same content elsewhere is deduplicated too: only its entry list is new.
    let copy = f.path("copy");
    make_tree(&copy);
    let (_, third) = f.backup(&copy, "full-3", None).await;
    assert_eq!(third.stats.reused_bytes, third.stats.logical_size);
    assert!(third.stats.new_chunks <= third.tree.len() as u64);
    let target = f.path("restored");
    f.restore("full-2", &target).await;
    assert_eq!(snapshot(&target), snapshot(&src));
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_chain_resolves_to_the_second_state_exactly() {
    let started = Instant::now();
    let f = Fixture::new().await;
    let src = f.path("src");
    make_tree(&src);
    let first_state = snapshot(&src);
    let (full, _) = f.backup(&src, "full-1", None).await;

    // One file changed (another size: never mistaken for unchanged), one deleted, one
    // added.
    write(&src.join("docs/notes.md"), b"# notes\nmore\n", 0o600);
    fs::remove_file(src.join("run.sh")).unwrap();
    write(&src.join("docs/deep/new.txt"), b"new\n", 0o644);
    let second_state = snapshot(&src);
    let (inc, out) = f.backup(&src, "inc-1", Some(&full)).await;
    assert_eq!(inc.chain, ["full-1", "inc-1"]);
    let s = &out.stats;
    assert_eq!(
        (s.changed_files, s.deleted, s.unchanged_files),
        (2, 1, 3),
        "{s:?}"
    );
    // Only the changed and added files were read.
    assert_eq!(s.read_bytes, 13 + 4, "{s:?}");

    // The chain, resolved from storage, restores the second state; the full alone
    // still restores the first.
    let chain = load_chain(&f.repo, inc.clone()).await.unwrap();
    assert_eq!(chain.len(), 2);
    let target = f.path("second");
    f.restore("inc-1", &target).await;
    assert_eq!(snapshot(&target), second_state);
    let target = f.path("first");
    f.restore("full-1", &target).await;
    assert_eq!(snapshot(&target), first_state);

    // The resolved entry list itself: no tombstone, no deleted path.
    let reader = Arc::new(ChunkReader::new(f.repo.clone(), f.index()));
    let handle = tokio::runtime::Handle::current();
    let paths = tokio::task::spawn_blocking(move || {
        resolve(reader, handle, &chain)
            .map(|r| r.map(|(p, _)| p))
            .collect::<anyhow::Result<Vec<PathBuf>>>()
    })
    .await
    .unwrap()
    .unwrap();
    let expected: Vec<&PathBuf> = second_state.keys().collect();
    let mut got: Vec<&PathBuf> = paths.iter().collect();
    got.sort();
    assert_eq!(got, expected);
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_condemns_the_packs_only_a_deleted_backup_used() {
    let started = Instant::now();
    let f = Fixture::new().await;
    let shared = noise(7, 700_000);
    // s: the shared file alone; a and b: the shared file and one of their own.
    let mut packs_of = BTreeMap::new();
    for (name, own) in [("s", None), ("a", Some(8)), ("b", Some(9))] {
        let root = f.path(name);
        fs::create_dir_all(&root).unwrap();
        write(&root.join("shared.bin"), &shared, 0o644);
        if let Some(seed) = own {
            write(&root.join("own.bin"), &noise(seed, 600_000), 0o644);
        }
        let before = f.pack_ids().await;
        f.backup(&root, name, None).await;
        let new: Vec<String> = f.pack_ids().await.difference(&before).cloned().collect();
        assert_eq!(new.len(), 1, "backup {name} wrote {new:?}");
        packs_of.insert(name, new[0].clone());
    }
    let horizon = Utc::now() + chrono::Duration::hours(1);
    let marking = |refs: &HashSet<_>| {
        let index = f.index.clone();
        let refs = refs.clone();
        async move {
            mark(
                &index.packs().await.unwrap(),
                &index.locations().await.unwrap(),
                &refs,
                0.5,
                horizon,
            )
        }
    };

    // Every backup there: every pack live.
    let refs = referenced_chunks(&f.repo, f.index.as_ref()).await.unwrap();
    let all = marking(&refs).await;
    assert!(all.values().all(|m| *m == Mark::Live), "{all:?}");

    // a's manifest deleted: its own pack is condemned, the shared one stays live.
    f.storage.delete(&manifest_key("a")).await.unwrap();
    let refs = referenced_chunks(&f.repo, f.index.as_ref()).await.unwrap();
    let marked = marking(&refs).await;
    assert_eq!(marked[&packs_of["a"]], Mark::Unused, "{marked:?}");
    assert_eq!(marked[&packs_of["s"]], Mark::Live, "{marked:?}");
    assert_eq!(marked[&packs_of["b"]], Mark::Live, "{marked:?}");

    // s deleted too: its pack still holds the shared file b needs, and only s's entry
    // list is dead there (far below the repack threshold).
    f.storage.delete(&manifest_key("s")).await.unwrap();
    let refs = referenced_chunks(&f.repo, f.index.as_ref()).await.unwrap();
    let marked = marking(&refs).await;
    assert_eq!(marked[&packs_of["s"]], Mark::Partial, "{marked:?}");
    assert_eq!(marked[&packs_of["a"]], Mark::Unused, "{marked:?}");
    assert_eq!(marked[&packs_of["b"]], Mark::Live, "{marked:?}");
    // At a threshold that low, it would be repacked; a pack younger than the horizon
    // never is.
    let (packs, locations) = (
        f.index.packs().await.unwrap(),
        f.index.locations().await.unwrap(),
    );
    let low = mark(&packs, &locations, &refs, 0.000_001, horizon);
    assert_eq!(low[&packs_of["s"]], Mark::Repack);
    let young = mark(
        &packs,
        &locations,
        &refs,
        0.000_001,
        Utc::now() - chrono::Duration::hours(1),
    );
    assert_eq!(young[&packs_of["s"]], Mark::Partial);

    // A condemned pack is not marked again, and a writer no longer deduplicates against
    // it: the shared file would be stored anew.
    f.index.condemn(std::slice::from_ref(&packs_of["s"]));
    let marked = marking(&refs).await;
    assert!(!marked.contains_key(&packs_of["s"]));
    let known = f.index.known_ids().await.unwrap();
    assert!(!refs.iter().all(|c| known.contains(c)));
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
