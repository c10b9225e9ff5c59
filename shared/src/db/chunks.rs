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
/// again by a retried job, or a chunk another job stored meanwhile, is left as it is.
pub async fn insert_pack(
    conn: &mut PgConnection,
    pack_id: &str,
    size: i64,
    chunks: &[ChunkRow],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO packs (id, size, chunk_count) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
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
           ON CONFLICT (id) DO NOTHING"#,
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

/// All chunk ids of the repository, streamed into `visit` (a job builds its "is this chunk
/// known?" set from it once instead of asking per chunk).
pub async fn all_ids(conn: &mut PgConnection) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM chunks")
        .fetch_all(conn)
        .await
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
}

pub async fn all_packs(conn: &mut PgConnection) -> Result<Vec<PackRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, size FROM packs ORDER BY id")
        .fetch_all(conn)
        .await
}

/// Every (pack, chunk id) pair of the index.
pub async fn all_locations(conn: &mut PgConnection) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT pack_id, id FROM chunks")
        .fetch_all(conn)
        .await
}

/// Removes packs and their chunks from the index (call before deleting the objects, so a
/// crash in between leaves an orphan object and never an entry pointing to nothing).
pub async fn delete_packs(conn: &mut PgConnection, pack_ids: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM chunks WHERE pack_id = ANY($1)")
        .bind(pack_ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM packs WHERE id = ANY($1)")
        .bind(pack_ids)
        .execute(conn)
        .await?;
    Ok(())
}
