//! SQLite sources: a consistent copy made with SQLite's online backup API (one step, so a
//! continuous writer cannot make it start over; in WAL mode writers are not held off at
//! all, in rollback-journal mode only while pages are copied), and restores that write a
//! temporary file, check it with `PRAGMA integrity_check`, then rename it over the target.

use std::path::Path;
use std::time::{Duration, Instant};
use strata_core::errors::ErrorCode;

use anyhow::Context;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use strata_core::model::sqlite_files;
use strata_engine::repo::manifest::TableRecord;

use crate::jobs::{JobError, JobResult};

/// What a snapshot recorded.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub tables: Vec<TableRecord>,
    pub size: u64,
    pub took: Duration,
}

/// The SQLite library's version.
pub fn version() -> String {
    rusqlite::version().to_string()
}

fn open_existing(path: &Path) -> JobResult<Connection> {
    match std::fs::metadata(path) {
        Ok(md) if md.is_file() => {}
        Ok(_) => {
            return Err(JobError::permanent(
                ErrorCode::SqliteNotAFile,
                format!("the SQLite database {} is not a file", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(JobError::permanent(
                ErrorCode::SqliteFileMissing,
                format!("the SQLite database {} does not exist", path.display()),
            ))
        }
        Err(e) => {
            return Err(JobError::permanent(
                ErrorCode::SqliteUnreadable,
                format!("the SQLite database {} cannot be read: {e}", path.display()),
            ))
        }
    }
    // Never create the file: a missing database is an error, not an empty backup.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .or_else(|_| {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    })
    .map_err(|e| {
        JobError::permanent(
            ErrorCode::SqliteUnreadable,
            format!(
                "the SQLite database {} cannot be opened: {e}",
                path.display()
            ),
        )
    })?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(anyhow::Error::from)?;
    // Reading the schema fails at once on a file that is not a database.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| {
        JobError::permanent(
            ErrorCode::SqliteNotADatabase,
            format!("{} is not a usable SQLite database: {e}", path.display()),
        )
    })?;
    Ok(conn)
}

/// Copies the database at `source` to `dest` (a new file) consistently. Blocking.
pub fn snapshot(source: &Path, dest: &Path) -> JobResult<Snapshot> {
    let started = Instant::now();
    let src = open_existing(source)?;
    let mut dst =
        Connection::open(dest).with_context(|| format!("creating the copy {}", dest.display()))?;
    {
        let backup = Backup::new(&src, &mut dst).map_err(anyhow::Error::from)?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            // All pages in one step: the copy holds a read lock only for as long as the
            // pages take to copy, and a writer in between cannot restart it.
            match backup.step(-1).map_err(anyhow::Error::from)? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked => {
                    if Instant::now() > deadline {
                        return Err(JobError::permanent(
                            ErrorCode::SqliteBusy,
                            format!(
                                "{} stayed locked by another connection for 5 minutes",
                                source.display()
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    drop(src);
    let tables = count_tables(&dst)?;
    // The copy is a standalone file: no WAL beside it.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(anyhow::Error::from)?;
    drop(dst);
    let size = std::fs::metadata(dest)?.len();
    Ok(Snapshot {
        tables,
        size,
        took: started.elapsed(),
    })
}

/// The user tables of a database and their row counts.
pub fn count_tables(conn: &Connection) -> anyhow::Result<Vec<TableRecord>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for name in names {
        let rows: i64 = conn.query_row(
            &format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\"")),
            [],
            |r| r.get(0),
        )?;
        out.push(TableRecord {
            name,
            rows: rows as u64,
        });
    }
    Ok(out)
}

/// Result of checking a restored file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub integrity: String,
    pub ok: bool,
    pub tables: Vec<serde_json::Value>,
}

/// Runs `PRAGMA integrity_check` and compares row counts with the record. Blocking.
pub fn check(path: &Path, expected: &[TableRecord]) -> anyhow::Result<Check> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening the restored database {}", path.display()))?;
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .take(20)
        .collect::<Result<_, _>>()?;
    let integrity = lines.join("; ");
    let integrity_ok = integrity == "ok";
    let found = count_tables(&conn).unwrap_or_default();
    let mut ok = integrity_ok;
    let mut tables = Vec::new();
    for table in expected {
        let rows = found.iter().find(|t| t.name == table.name).map(|t| t.rows);
        let matches = rows == Some(table.rows);
        ok &= matches;
        tables.push(serde_json::json!({
            "table": table.name,
            "expected_rows": table.rows,
            "rows": rows,
            "ok": matches,
        }));
    }
    Ok(Check {
        integrity,
        ok,
        tables,
    })
}

/// Renames the checked file over the target and removes the old database's `-wal`,
/// `-shm` and `-journal` files, which belong to the replaced content. Blocking.
pub fn replace(temp: &Path, target: &Path) -> anyhow::Result<()> {
    for p in &sqlite_files(target)[1..] {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("removing the old database's journal files"),
        }
    }
    std::fs::rename(temp, target)
        .with_context(|| format!("moving the restored database to {}", target.display()))?;
    if let Some(dir) = target.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_copies_and_counts_and_check_finds_damage() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE \"odd \"\"name\" (x);
             WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 500)
             INSERT INTO t (v) SELECT hex(randomblob(100)) FROM s;",
        )
        .unwrap();
        let copy = dir.path().join("copy.db");
        let snap = snapshot(&db, &copy).unwrap();
        assert_eq!(
            snap.tables,
            vec![
                TableRecord {
                    name: "odd \"name".into(),
                    rows: 0
                },
                TableRecord {
                    name: "t".into(),
                    rows: 500
                },
            ]
        );
        let good = check(&copy, &snap.tables).unwrap();
        assert!(good.ok, "{good:?}");
        // Wrong expectations are reported, not hidden.
        let wrong = [TableRecord {
            name: "t".into(),
            rows: 499,
        }];
        assert!(!check(&copy, &wrong).unwrap().ok);

        let missing = snapshot(&dir.path().join("nope.db"), &dir.path().join("x.db"));
        let err = missing.unwrap_err();
        assert_eq!(err.code(), "sqlite_file_missing");
        assert!(matches!(err, JobError::Permanent { .. }), "{err}");
        assert!(
            !dir.path().join("nope.db").exists(),
            "a missing database is not created"
        );
    }
}
