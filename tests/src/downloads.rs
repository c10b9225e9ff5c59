//! Reading what a download answered: status, headers and body, the files of a tar, and
//! the rows of the seeds' SQLite application database.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// Fetches a URL and returns (status, headers, body bytes).
pub async fn fetch(client: &reqwest::Client, url: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let res = client.get(url).send().await.expect("request");
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.expect("body").to_vec())
}

/// Every regular file of a tar archive: path (without `./`) → (bytes, mode); a path
/// that appears twice fails the test.
pub fn tar_files(bytes: &[u8]) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("an entry");
        if entry.header().entry_type().is_file() {
            let path = entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mode = entry.header().mode().unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            assert!(
                out.insert(path.clone(), (data, mode)).is_none(),
                "{path} twice"
            );
        }
    }
    out
}

/// An SQLite database of `rows` notes, as seed 002's application keeps: each body is
/// `note <i> ` and `blob_bytes` random bytes in hexadecimal.
pub fn write_sqlite_notes(path: &Path, rows: i64, blob_bytes: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows})
         INSERT INTO notes (body) SELECT 'note ' || i || ' ' || hex(randomblob({blob_bytes})) FROM s;"
    ))
    .unwrap();
}

/// `PRAGMA integrity_check` and the rows of `notes` (id, body), in id order.
pub fn sqlite_notes(path: &Path) -> (String, Vec<(i64, String)>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT id, body FROM notes ORDER BY id")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (integrity, rows)
}
