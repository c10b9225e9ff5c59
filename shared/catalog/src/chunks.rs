//! The chunk index: which pack holds each chunk, so a backup can skip chunks already
//! stored and a restore can find them.

use sqlx::PgConnection;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChunkRow {
    pub id: Vec<u8>,
    pub pack_id: String,
    pub kind: i16,
    pub offset: i64,
    pub length: i32,
    pub raw_length: i32,
}

/// Records a pack and all its chunks in one statement each. Idempotent: a pack written
/// again by a retried job, or a chunk another job stored meanwhile, is left as it is —
/// except where garbage collection condemned it: a condemned pack row written again is
/// un-condemned, and a chunk whose row points to a condemned pack moves to this pack.
pub async fn insert_pack(
    conn: &mut PgConnection,
    pack_id: &str,
    size: i64,
    chunks: &[ChunkRow],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO packs (id, size, chunk_count) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE
            SET condemned_at = NULL, size = EXCLUDED.size, chunk_count = EXCLUDED.chunk_count
            WHERE packs.condemned_at IS NOT NULL",
    )
    .bind(pack_id)
    .bind(size)
    .bind(chunks.len() as i32)
    .execute(&mut *conn)
    .await?;
    let ids: Vec<&[u8]> = chunks.iter().map(|c| c.id.as_slice()).collect();
    let kinds: Vec<i16> = chunks.iter().map(|c| c.kind).collect();
    let offsets: Vec<i64> = chunks.iter().map(|c| c.offset).collect();
    let lengths: Vec<i32> = chunks.iter().map(|c| c.length).collect();
    let raw: Vec<i32> = chunks.iter().map(|c| c.raw_length).collect();
    sqlx::query(
        r#"INSERT INTO chunks (id, pack_id, kind, "offset", length, raw_length)
           SELECT id, $1, kind, off, len, raw
           FROM UNNEST($2::bytea[], $3::smallint[], $4::bigint[], $5::int[], $6::int[])
                AS t(id, kind, off, len, raw)
           ON CONFLICT (id) DO UPDATE
              SET pack_id = EXCLUDED.pack_id, kind = EXCLUDED.kind, "offset" = EXCLUDED."offset",
                  length = EXCLUDED.length, raw_length = EXCLUDED.raw_length
              WHERE EXISTS (SELECT 1 FROM packs p
                            WHERE p.id = chunks.pack_id AND p.condemned_at IS NOT NULL)"#,
    )
    .bind(pack_id)
    .bind(ids)
    .bind(kinds)
    .bind(offsets)
    .bind(lengths)
    .bind(raw)
    .execute(conn)
    .await?;
    Ok(())
}

/// The chunk ids a writer may deduplicate against: every chunk whose pack is not
/// condemned. Read under the `repo_gc_state` row lock (FOR SHARE), so a condemnation is
/// either wholly visible or committed later than the caller's session registration.
pub async fn known_ids(conn: &mut PgConnection) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    sqlx::query("SELECT 1 FROM repo_gc_state FOR SHARE")
        .execute(&mut *tx)
        .await?;
    let ids = sqlx::query_scalar(
        "SELECT c.id FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE p.condemned_at IS NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids)
}

/// Locations of the given chunks (missing ones are simply absent from the result).
pub async fn locate(
    conn: &mut PgConnection,
    ids: &[Vec<u8>],
) -> Result<Vec<ChunkRow>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT id, pack_id, kind, "offset", length, raw_length FROM chunks WHERE id = ANY($1)"#,
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// A pack of the index, as garbage collection sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PackRow {
    pub id: String,
    pub size: i64,
    pub chunk_count: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub condemned_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn all_packs(conn: &mut PgConnection) -> Result<Vec<PackRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, size, chunk_count, created_at, condemned_at FROM packs ORDER BY id")
        .fetch_all(conn)
        .await
}

/// Every chunk of the index: (pack, chunk id, stored length).
pub async fn all_locations(
    conn: &mut PgConnection,
) -> Result<Vec<(String, Vec<u8>, i32)>, sqlx::Error> {
    sqlx::query_as("SELECT pack_id, id, length FROM chunks")
        .fetch_all(conn)
        .await
}

/// The chunks of one pack.
pub async fn in_pack(conn: &mut PgConnection, pack_id: &str) -> Result<Vec<ChunkRow>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT id, pack_id, kind, "offset", length, raw_length FROM chunks WHERE pack_id = $1
           ORDER BY "offset""#,
    )
    .bind(pack_id)
    .fetch_all(conn)
    .await
}

/// Condemns packs not condemned yet, created before `created_before`; returns those it
/// condemned. Call under `repo_sessions::lock_for_condemnation`.
pub async fn condemn(
    conn: &mut PgConnection,
    pack_ids: &[String],
    created_before: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE packs SET condemned_at = clock_timestamp()
         WHERE id = ANY($1) AND condemned_at IS NULL AND created_at < $2 RETURNING id",
    )
    .bind(pack_ids)
    .bind(created_before)
    .fetch_all(conn)
    .await
}

/// Records pack objects the index does not know as condemned packs without chunks (a
/// writer indexing one of them meanwhile un-condemns it); returns those it recorded.
pub async fn condemn_orphans(
    conn: &mut PgConnection,
    packs: &[(String, u64)],
) -> Result<Vec<String>, sqlx::Error> {
    let ids: Vec<&str> = packs.iter().map(|(id, _)| id.as_str()).collect();
    let sizes: Vec<i64> = packs.iter().map(|(_, s)| *s as i64).collect();
    sqlx::query_scalar(
        "INSERT INTO packs (id, size, chunk_count, condemned_at)
         SELECT id, size, 0, clock_timestamp() FROM UNNEST($1::text[], $2::bigint[]) AS t(id, size)
         ON CONFLICT (id) DO NOTHING RETURNING id",
    )
    .bind(ids)
    .bind(sizes)
    .fetch_all(conn)
    .await
}

/// Un-condemns packs (a manifest references one of their chunks again).
pub async fn uncondemn(conn: &mut PgConnection, pack_ids: &[String]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE packs SET condemned_at = NULL WHERE id = ANY($1)")
        .bind(pack_ids)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Indexes a pack written by repacking: its row, and the given chunks moved to it from
/// `from` (a chunk that is no longer there is left where it is). Returns how many moved.
pub async fn move_into_pack(
    conn: &mut PgConnection,
    pack_id: &str,
    size: i64,
    from: &str,
    chunks: &[ChunkRow],
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO packs (id, size, chunk_count) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET condemned_at = NULL",
    )
    .bind(pack_id)
    .bind(size)
    .bind(chunks.len() as i32)
    .execute(&mut *conn)
    .await?;
    let ids: Vec<&[u8]> = chunks.iter().map(|c| c.id.as_slice()).collect();
    let offsets: Vec<i64> = chunks.iter().map(|c| c.offset).collect();
    let lengths: Vec<i32> = chunks.iter().map(|c| c.length).collect();
    let done = sqlx::query(
        r#"UPDATE chunks SET pack_id = $1, "offset" = t.off, length = t.len
           FROM UNNEST($2::bytea[], $3::bigint[], $4::int[]) AS t(id, off, len)
           WHERE chunks.id = t.id AND chunks.pack_id = $5"#,
    )
    .bind(pack_id)
    .bind(ids)
    .bind(offsets)
    .bind(lengths)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Removes one condemned pack and its chunks from the index if it is still condemned
/// since before `horizon`; returns whether it did. (Call before deleting the object, so
/// a crash in between leaves an orphan object and never an entry pointing to nothing.)
pub async fn delete_condemned(
    conn: &mut PgConnection,
    pack_id: &str,
    horizon: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let still: Option<String> =
        sqlx::query_scalar("SELECT id FROM packs WHERE id = $1 AND condemned_at < $2 FOR UPDATE")
            .bind(pack_id)
            .bind(horizon)
            .fetch_optional(&mut *tx)
            .await?;
    if still.is_none() {
        return Ok(false);
    }
    sqlx::query("DELETE FROM chunks WHERE pack_id = $1")
        .bind(pack_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM packs WHERE id = $1")
        .bind(pack_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}
