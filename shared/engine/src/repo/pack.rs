//! Pack objects: many encoded blobs in one object, with a trailer that lists them so the
//! chunk index can be rebuilt from storage alone.
//!
//! ```text
//! "STRATAPK" | version: u8 | blob… | trailer (zstd JSON) | trailer length: u32 LE | "STRATAPK"
//! ```

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::crypto::Cipher;
use super::format::{BlobKind, ChunkId};

const MAGIC: &[u8; 8] = b"STRATAPK";
const PACK_VERSION: u8 = 1;
/// Version 2: the trailer is sealed with the repository's cipher.
const PACK_VERSION_ENCRYPTED: u8 = 2;
const TRAILER_AAD: &[u8] = b"strata-pack-trailer-v2";

/// One blob's place in a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    pub id: ChunkId,
    pub kind: u8,
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
}

impl PackEntry {
    /// The chunk index row of this entry of pack `pack_id`.
    pub fn row(&self, pack_id: &str) -> strata_catalog::chunks::ChunkRow {
        strata_catalog::chunks::ChunkRow {
            id: self.id.0.to_vec(),
            pack_id: pack_id.to_string(),
            kind: i16::from(self.kind),
            offset: self.offset as i64,
            length: self.length as i32,
            raw_length: self.raw_length as i32,
        }
    }
}

/// Builds one pack in memory (a pack is a few MiB, so this bounds memory).
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(super::format::PACK_TARGET + 1024 * 1024);
        buf.extend_from_slice(MAGIC);
        buf.push(PACK_VERSION);
        Self {
            buf,
            entries: Vec::new(),
        }
    }

    pub fn add(&mut self, id: ChunkId, kind: BlobKind, encoded: &[u8], raw_length: usize) {
        self.entries.push(PackEntry {
            id,
            kind: kind as u8,
            offset: self.buf.len() as u64,
            length: encoded.len() as u32,
            raw_length: raw_length as u32,
        });
        self.buf.extend_from_slice(encoded);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Closes the pack: returns its id (BLAKE3 of its bytes), bytes and entries. With a
    /// cipher the trailer is sealed, so chunk ids and sizes are not readable without the key.
    pub fn finish(
        mut self,
        cipher: Option<&Cipher>,
    ) -> anyhow::Result<(String, Vec<u8>, Vec<PackEntry>)> {
        let json = serde_json::to_vec(&self.entries)?;
        let mut trailer = zstd::bulk::compress(&json, 3)?;
        if let Some(c) = cipher {
            self.buf[8] = PACK_VERSION_ENCRYPTED;
            trailer = c.seal(TRAILER_AAD, &trailer);
        }
        self.buf.extend_from_slice(&trailer);
        self.buf
            .extend_from_slice(&u32::try_from(trailer.len())?.to_le_bytes());
        self.buf.extend_from_slice(MAGIC);
        let id = blake3::hash(&self.buf).to_hex().to_string();
        Ok((id, self.buf, self.entries))
    }
}

/// The storage key of a pack.
pub fn pack_key(pack_id: &str) -> String {
    format!("packs/{}/{}", &pack_id[..2], pack_id)
}

/// Reads a pack's trailer: the list of its blobs.
pub fn read_trailer(pack: &[u8], cipher: Option<&Cipher>) -> anyhow::Result<Vec<PackEntry>> {
    let n = pack.len();
    if n < MAGIC.len() * 2 + 1 + 4 || &pack[..8] != MAGIC || &pack[n - 8..] != MAGIC {
        bail!("not a Strata pack (bad magic)");
    }
    if pack[8] > PACK_VERSION_ENCRYPTED {
        bail!("pack version {} is newer than this build reads", pack[8]);
    }
    let tlen = u32::from_le_bytes(pack[n - 12..n - 8].try_into()?) as usize;
    let start = n
        .checked_sub(12 + tlen)
        .filter(|s| *s >= 9)
        .context("pack trailer length out of range")?;
    let sealed = &pack[start..n - 12];
    let opened;
    let compressed = match (pack[8], cipher) {
        (PACK_VERSION_ENCRYPTED, Some(c)) => {
            opened = c.open(TRAILER_AAD, sealed).context("pack trailer")?;
            &opened[..]
        }
        (PACK_VERSION_ENCRYPTED, None) => bail!("the pack is encrypted and no key was given"),
        _ => sealed,
    };
    let json = zstd::bulk::decompress(compressed, 64 * 1024 * 1024)
        .context("pack trailer does not decompress")?;
    let entries: Vec<PackEntry> = serde_json::from_slice(&json).context("pack trailer")?;
    for e in &entries {
        BlobKind::from_u8(e.kind)?;
        if e.offset as usize + e.length as usize > start {
            bail!("pack trailer points past the data");
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::format::{decode_blob, encode_blob};

    #[test]
    fn a_pack_describes_itself() {
        let key = [1u8; 32];
        let mut b = PackBuilder::new();
        let blobs: Vec<Vec<u8>> = vec![b"alpha".repeat(1000), vec![], b"beta".to_vec()];
        for blob in &blobs {
            b.add(
                ChunkId::compute(&key, blob),
                BlobKind::Data,
                &encode_blob(blob),
                blob.len(),
            );
        }
        let (id, bytes, entries) = b.finish(None).unwrap();
        assert_eq!(id, blake3::hash(&bytes).to_hex().to_string());
        let read = read_trailer(&bytes, None).unwrap();
        assert_eq!(read, entries);
        for (e, blob) in read.iter().zip(&blobs) {
            let stored = &bytes[e.offset as usize..][..e.length as usize];
            assert_eq!(
                &decode_blob(
                    &key,
                    e.id,
                    bytes::Bytes::copy_from_slice(stored),
                    e.raw_length as usize
                )
                .unwrap()[..],
                blob
            );
        }
        assert!(read_trailer(&bytes[..bytes.len() - 1], None).is_err());
        assert!(pack_key(&id).starts_with(&format!("packs/{}/", &id[..2])));
    }

    #[test]
    fn an_encrypted_pack_needs_the_key_to_list_its_blobs() {
        let keys = crate::repo::crypto::DataKeys::generate();
        let cipher = Cipher::new(&keys);
        let mut b = PackBuilder::new();
        let blob = b"secret content".to_vec();
        b.add(
            ChunkId::compute(&keys.id_key, &blob),
            BlobKind::Data,
            &blob,
            blob.len(),
        );
        let (_, bytes, entries) = b.finish(Some(&cipher)).unwrap();
        assert_eq!(read_trailer(&bytes, Some(&cipher)).unwrap(), entries);
        assert!(read_trailer(&bytes, None).is_err());
        let other = Cipher::new(&crate::repo::crypto::DataKeys::generate());
        assert!(read_trailer(&bytes, Some(&other)).is_err());
    }
}
