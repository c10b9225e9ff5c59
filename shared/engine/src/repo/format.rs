//! Format constants and the encoding of one stored blob (see docs/FORMAT.md).

use std::fmt;

use anyhow::{bail, Context};
use bytes::Bytes;

/// The repository format version this build writes: 1 for a plain repository, 2 for an
/// encrypted one. Readers accept every version up to the newest.
pub const FORMAT_VERSION: u32 = 1;
pub const FORMAT_VERSION_ENCRYPTED: u32 = 2;

/// Content-defined chunking sizes (FastCDC 2020): small enough that an insertion in a
/// large file changes few chunks, large enough that the chunk index stays small.
pub const CHUNK_MIN: u32 = 512 * 1024;
pub const CHUNK_AVG: u32 = 1024 * 1024;
pub const CHUNK_MAX: u32 = 8 * 1024 * 1024;
/// Chunk sizes for database dumps: smaller, because a change to one row should cost a
/// small chunk, not a megabyte (a dump changes in many scattered places between days).
/// Fixed like the file chunker: other sizes would stop new dump chunks matching old ones.
pub const DB_CHUNK_MIN: u32 = 16 * 1024;
pub const DB_CHUNK_AVG: u32 = 64 * 1024;
pub const DB_CHUNK_MAX: u32 = 256 * 1024;

/// A pack is closed once its blobs reach this size.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;

/// zstd level for chunk data: fast, and most of the gain.
pub const ZSTD_LEVEL: i32 = 3;

/// Kinds of blob a pack holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobKind {
    /// File content.
    Data = 0,
    /// A segment of a snapshot's entry list.
    Tree = 1,
}

impl BlobKind {
    pub fn from_u8(v: u8) -> anyhow::Result<Self> {
        match v {
            0 => Ok(Self::Data),
            1 => Ok(Self::Tree),
            other => bail!("unknown blob kind {other}"),
        }
    }
}

/// A chunk's id: BLAKE3 keyed with the repository's id key, over the plain content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn compute(key: &[u8; 32], data: &[u8]) -> Self {
        Self(*blake3::keyed_hash(key, data).as_bytes())
    }
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> anyhow::Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).with_context(|| format!("bad chunk id {s:?}"))?;
        Ok(Self(out))
    }
    pub fn from_slice(b: &[u8]) -> anyhow::Result<Self> {
        Ok(Self(b.try_into().context("chunk id must be 32 bytes")?))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// How a blob's bytes are encoded: the first byte of every stored blob.
const ENC_RAW: u8 = 0;
const ENC_ZSTD: u8 = 1;

/// Encodes a blob for storage: zstd when it pays, raw otherwise (incompressible data is
/// not stored bigger, and is cheap to read back).
pub fn encode_blob(raw: &[u8]) -> Vec<u8> {
    // A large chunk whose first 64 KiB do not compress (random data, media, archives)
    // is stored raw without compressing the whole of it.
    const SAMPLE: usize = 64 * 1024;
    let sample_says_incompressible = raw.len() > 2 * SAMPLE
        && zstd::bulk::compress(&raw[..SAMPLE], ZSTD_LEVEL)
            .map(|c| c.len() + c.len() / 32 >= SAMPLE)
            .unwrap_or(false);
    if sample_says_incompressible {
        let mut out = Vec::with_capacity(raw.len() + 1);
        out.push(ENC_RAW);
        out.extend_from_slice(raw);
        return out;
    }
    if let Ok(compressed) = zstd::bulk::compress(raw, ZSTD_LEVEL) {
        if compressed.len() + compressed.len() / 32 < raw.len() {
            let mut out = Vec::with_capacity(compressed.len() + 1);
            out.push(ENC_ZSTD);
            out.extend_from_slice(&compressed);
            return out;
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    out.push(ENC_RAW);
    out.extend_from_slice(raw);
    out
}

/// Decodes a stored blob and checks that its content hashes to `id`. A raw blob is
/// returned as a slice of `stored`, without a copy.
pub fn decode_blob(
    key: &[u8; 32],
    id: ChunkId,
    stored: Bytes,
    raw_length: usize,
) -> anyhow::Result<Bytes> {
    let Some(&enc) = stored.first() else {
        bail!("chunk {id} is empty in storage");
    };
    let raw = match enc {
        ENC_RAW => stored.slice(1..),
        ENC_ZSTD => Bytes::from(
            zstd::bulk::decompress(&stored[1..], raw_length)
                .with_context(|| format!("chunk {id} does not decompress: the pack is damaged"))?,
        ),
        other => bail!("chunk {id} has unknown encoding {other}"),
    };
    if raw.len() != raw_length || ChunkId::compute(key, &raw) != id {
        bail!("chunk {id} does not match its hash: the pack is damaged");
    }
    Ok(raw)
}

/// Encodes and decodes stored blobs for one repository: compression, and sealing with
/// the repository's cipher when it is encrypted (the chunk id is the associated data,
/// so a blob cannot be swapped for another).
#[derive(Clone)]
pub struct BlobCodec {
    id_key: [u8; 32],
    cipher: Option<super::crypto::Cipher>,
}

impl std::fmt::Debug for BlobCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobCodec")
            .field("encrypted", &self.cipher.is_some())
            .finish_non_exhaustive()
    }
}

impl BlobCodec {
    pub fn new(id_key: [u8; 32], cipher: Option<super::crypto::Cipher>) -> Self {
        Self { id_key, cipher }
    }

    pub fn id(&self, raw: &[u8]) -> ChunkId {
        ChunkId::compute(&self.id_key, raw)
    }

    pub fn encode(&self, id: ChunkId, raw: &[u8]) -> Vec<u8> {
        let encoded = encode_blob(raw);
        match &self.cipher {
            Some(c) => c.seal(&id.0, &encoded),
            None => encoded,
        }
    }

    /// Opens, decompresses and verifies a stored blob.
    pub fn decode(&self, id: ChunkId, stored: Bytes, raw_length: usize) -> anyhow::Result<Bytes> {
        match &self.cipher {
            Some(c) => {
                let opened = c.open(&id.0, &stored).with_context(|| {
                    format!("chunk {id} fails authentication: the pack is damaged")
                })?;
                decode_blob(&self.id_key, id, Bytes::from(opened), raw_length)
            }
            None => decode_blob(&self.id_key, id, stored, raw_length),
        }
    }

    pub fn cipher(&self) -> Option<&super::crypto::Cipher> {
        self.cipher.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_detect_damage() {
        let key = [7u8; 32];
        let text = b"hello hello hello hello hello hello hello hello".repeat(100);
        let id = ChunkId::compute(&key, &text);
        let enc = encode_blob(&text);
        assert_eq!(enc[0], ENC_ZSTD);
        assert!(enc.len() < text.len() / 4);
        assert_eq!(
            &decode_blob(&key, id, Bytes::from(enc.clone()), text.len()).unwrap()[..],
            &text[..]
        );

        // xorshift64: incompressible.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let enc_noise = encode_blob(&noise);
        assert_eq!(enc_noise[0], ENC_RAW);
        let nid = ChunkId::compute(&key, &noise);
        let mut damaged = enc_noise.clone();
        damaged[100] ^= 1;
        assert!(decode_blob(&key, nid, Bytes::from(damaged), noise.len()).is_err());
        assert!(decode_blob(&[8u8; 32], nid, Bytes::from(enc_noise), noise.len()).is_err());
    }
}
