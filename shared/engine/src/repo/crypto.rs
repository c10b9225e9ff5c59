//! Encryption primitives for repository format version 2.
//!
//! - The operator configures a [`MasterKey`] (a passphrase, `STRATA_ENCRYPTION_KEY`).
//! - The repository's [`DataKeys`] are random, generated once, and stored only wrapped:
//!   each [`KeySlot`] holds them encrypted under a key derived from one master key with
//!   Argon2id. Several slots can coexist, so the master key is rotated by adding a slot
//!   for the new key and removing the old one; no data is re-encrypted.
//! - [`Cipher`] seals blobs, manifests and pack trailers with XChaCha20-Poly1305 under the
//!   data encryption key: `nonce (24 random bytes) || ciphertext || tag (16 bytes)`, with
//!   associated data binding each ciphertext to its place.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::{AeadInOut, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The shortest master key accepted, in bytes.
pub const MIN_MASTER_KEY_LEN: usize = 16;

/// The KDF algorithm name stored in key slots.
pub const KDF_ARGON2ID: &str = "argon2id";

/// Argon2id memory cost of new key slots, in KiB (64 MiB, as RFC 9106's second
/// recommended option; OWASP's minimum is 19 MiB with 2 iterations).
pub const KDF_M_COST: u32 = 65_536;
/// Argon2id iterations of new key slots.
pub const KDF_T_COST: u32 = 3;
/// Argon2id lanes of new key slots.
pub const KDF_P_COST: u32 = 1;

/// The largest costs a key slot may ask for: a damaged or hostile config must not make
/// opening the repository allocate unbounded memory or spin for hours.
const KDF_MAX_M_COST: u32 = 2 * 1024 * 1024; // 2 GiB
const KDF_MAX_T_COST: u32 = 64;
const KDF_MAX_P_COST: u32 = 64;

const SALT_LEN: usize = 16;
const SLOT_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const DATA_KEYS_LEN: usize = 2 * KEY_LEN;
const WRAPPED_LEN: usize = NONCE_LEN + DATA_KEYS_LEN + TAG_LEN;
const SLOT_AAD_PREFIX: &[u8] = b"strata-keyslot-v1";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the encryption key does not open this repository (wrong STRATA_ENCRYPTION_KEY?)")]
    WrongKey,
    #[error("encrypted data is damaged: authentication failed")]
    Damaged,
    #[error("{0}")]
    Invalid(String),
}

/// The operator's master key: any passphrase of at least 16 bytes, from configuration
/// (`STRATA_ENCRYPTION_KEY`). Never printed: `Debug` shows `[REDACTED]`. Wiped from
/// memory when dropped.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<String>);

impl MasterKey {
    pub fn new(passphrase: &str) -> Result<Self, CryptoError> {
        if passphrase.len() < MIN_MASTER_KEY_LEN {
            return Err(CryptoError::Invalid(format!(
                "STRATA_ENCRYPTION_KEY must be at least {MIN_MASTER_KEY_LEN} bytes long (it has {})",
                passphrase.len()
            )));
        }
        Ok(Self(Zeroizing::new(passphrase.to_owned())))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// The repository's secret keys: generated once, stored only wrapped in key slots.
/// Wiped from memory when dropped.
#[derive(Clone)]
pub struct DataKeys {
    /// The XChaCha20-Poly1305 key everything in the repository is sealed with.
    pub encryption: [u8; 32],
    /// The BLAKE3 key chunk ids are computed with.
    pub id_key: [u8; 32],
}

impl DataKeys {
    /// Fresh random keys.
    pub fn generate() -> Self {
        let mut keys = Self {
            encryption: [0; KEY_LEN],
            id_key: [0; KEY_LEN],
        };
        rand::fill(&mut keys.encryption);
        rand::fill(&mut keys.id_key);
        keys
    }

    fn to_bytes(&self) -> Zeroizing<[u8; DATA_KEYS_LEN]> {
        let mut bytes = Zeroizing::new([0; DATA_KEYS_LEN]);
        bytes[..KEY_LEN].copy_from_slice(&self.encryption);
        bytes[KEY_LEN..].copy_from_slice(&self.id_key);
        bytes
    }

    fn from_bytes(bytes: &[u8; DATA_KEYS_LEN]) -> Self {
        let mut keys = Self {
            encryption: [0; KEY_LEN],
            id_key: [0; KEY_LEN],
        };
        keys.encryption.copy_from_slice(&bytes[..KEY_LEN]);
        keys.id_key.copy_from_slice(&bytes[KEY_LEN..]);
        keys
    }
}

impl Drop for DataKeys {
    fn drop(&mut self) {
        self.encryption.zeroize();
        self.id_key.zeroize();
    }
}

impl fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKeys([REDACTED])")
    }
}

/// How a key slot's key-encryption key is derived from the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Always `"argon2id"` (Argon2 version 0x13).
    pub algorithm: String,
    /// Random salt (hex).
    pub salt: String,
    /// Memory cost in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// Argon2id with a fresh random salt and the default costs ([`KDF_M_COST`],
    /// [`KDF_T_COST`], [`KDF_P_COST`]).
    pub fn generate() -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt);
        Self {
            algorithm: KDF_ARGON2ID.to_owned(),
            salt: hex::encode(salt),
            m_cost: KDF_M_COST,
            t_cost: KDF_T_COST,
            p_cost: KDF_P_COST,
        }
    }

    /// Derives the 32-byte key-encryption key from the master key.
    fn derive(&self, master: &MasterKey) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        if self.algorithm != KDF_ARGON2ID {
            return Err(CryptoError::Invalid(format!(
                "key slot uses an unknown key derivation {:?}",
                self.algorithm
            )));
        }
        if self.m_cost > KDF_MAX_M_COST
            || self.t_cost > KDF_MAX_T_COST
            || self.p_cost > KDF_MAX_P_COST
        {
            return Err(CryptoError::Invalid(format!(
                "key slot asks for excessive key derivation costs (m_cost {} KiB, t_cost {}, p_cost {})",
                self.m_cost, self.t_cost, self.p_cost
            )));
        }
        let salt = hex::decode(&self.salt)
            .map_err(|_| CryptoError::Invalid("key slot has a salt that is not hex".into()))?;
        let params =
            Params::new(self.m_cost, self.t_cost, self.p_cost, Some(KEY_LEN)).map_err(|e| {
                CryptoError::Invalid(format!("key slot has bad Argon2 parameters: {e}"))
            })?;
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(master.as_bytes(), &salt, kek.as_mut_slice())
            .map_err(|e| CryptoError::Invalid(format!("key derivation failed: {e}")))?;
        Ok(kek)
    }
}

/// One wrapping of the data keys by one master key. The repository config holds a list
/// of them, so the master key can be rotated (add a slot with the new key, remove the
/// old) without re-encrypting any data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySlot {
    /// Short random hex id of the slot.
    pub id: String,
    pub kdf: KdfParams,
    /// Hex of `nonce || XChaCha20-Poly1305(kek, encryption key || id key)`, with associated
    /// data `b"strata-keyslot-v1" || id`.
    pub wrapped: String,
    pub created_at: DateTime<Utc>,
}

impl KeySlot {
    /// Wraps `keys` under `master`, with a fresh salt and the default KDF costs.
    pub fn create(master: &MasterKey, keys: &DataKeys) -> Result<Self, CryptoError> {
        Self::create_with_kdf(master, keys, KdfParams::generate())
    }

    /// Wraps `keys` under `master` with the given KDF parameters (tests use cheaper
    /// costs; a salt must be fresh and random for every slot).
    pub fn create_with_kdf(
        master: &MasterKey,
        keys: &DataKeys,
        kdf: KdfParams,
    ) -> Result<Self, CryptoError> {
        let mut id = [0u8; SLOT_ID_LEN];
        rand::fill(&mut id);
        let id = hex::encode(id);
        let kek = kdf.derive(master)?;
        let aead = XChaCha20Poly1305::new((&*kek).into());
        let sealed = seal_with(&aead, &slot_aad(&id), keys.to_bytes().as_slice());
        Ok(Self {
            id,
            kdf,
            wrapped: hex::encode(sealed),
            created_at: Utc::now(),
        })
    }

    /// Unwraps the data keys. `Err(CryptoError::WrongKey)` when this master key does not
    /// open the slot (a damaged `wrapped` value looks the same); `Invalid` when the slot
    /// itself is malformed.
    pub fn open(&self, master: &MasterKey) -> Result<DataKeys, CryptoError> {
        let wrapped = hex::decode(&self.wrapped)
            .map_err(|_| CryptoError::Invalid(format!("key slot {} is not valid hex", self.id)))?;
        if wrapped.len() != WRAPPED_LEN {
            return Err(CryptoError::Invalid(format!(
                "key slot {} has {} wrapped bytes, expected {WRAPPED_LEN}",
                self.id,
                wrapped.len()
            )));
        }
        let kek = self.kdf.derive(master)?;
        let aead = XChaCha20Poly1305::new((&*kek).into());
        let plain = Zeroizing::new(
            open_with(&aead, &slot_aad(&self.id), &wrapped).map_err(|_| CryptoError::WrongKey)?,
        );
        let bytes: &[u8; DATA_KEYS_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Invalid(format!("key slot {} is malformed", self.id)))?;
        Ok(DataKeys::from_bytes(bytes))
    }
}

/// Tries every slot in order. `WrongKey` if none opens; `Invalid` if there are no slots,
/// or if every slot is malformed.
pub fn open_any(slots: &[KeySlot], master: &MasterKey) -> Result<DataKeys, CryptoError> {
    let mut invalid = None;
    let mut wrong_key = false;
    for slot in slots {
        match slot.open(master) {
            Ok(keys) => return Ok(keys),
            Err(CryptoError::WrongKey) => wrong_key = true,
            Err(e) => {
                invalid.get_or_insert(e);
            }
        }
    }
    if wrong_key {
        return Err(CryptoError::WrongKey);
    }
    Err(invalid
        .unwrap_or_else(|| CryptoError::Invalid("the repository config has no key slots".into())))
}

fn slot_aad(id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SLOT_AAD_PREFIX.len() + id.len());
    aad.extend_from_slice(SLOT_AAD_PREFIX);
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// Seals and opens blobs, manifests and pack trailers with the data encryption key.
#[derive(Clone)]
pub struct Cipher {
    aead: XChaCha20Poly1305,
}

impl Cipher {
    /// Bytes `seal` adds to a plaintext (nonce + tag).
    pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

    pub fn new(keys: &DataKeys) -> Self {
        Self {
            aead: XChaCha20Poly1305::new((&keys.encryption).into()),
        }
    }

    /// `nonce (24 random bytes) || ciphertext || tag`. `aad` binds the ciphertext to its
    /// place (e.g. the chunk id). The plaintext is copied once, into a buffer of exactly
    /// `plain.len() + OVERHEAD` bytes, and encrypted there in place.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        seal_with(&self.aead, aad, plain)
    }

    /// The plaintext of `sealed`; `Err(CryptoError::Damaged)` when the tag does not verify
    /// (tampered or truncated data, wrong key or wrong `aad`).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.aead, aad, sealed)
    }
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher([REDACTED])")
    }
}

fn seal_with(aead: &XChaCha20Poly1305, aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let mut out = Vec::with_capacity(plain.len() + Cipher::OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = aead
        .encrypt_inout_detached(&XNonce::from(nonce), aad, (&mut out[NONCE_LEN..]).into())
        .expect("XChaCha20-Poly1305 seals any plaintext shorter than 256 GiB");
    out.extend_from_slice(&tag);
    debug_assert_eq!(out.len(), out.capacity());
    out
}

fn open_with(aead: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < Cipher::OVERHEAD {
        return Err(CryptoError::Damaged);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce = <&XNonce>::try_from(nonce).map_err(|_| CryptoError::Damaged)?;
    let tag = <&Tag>::try_from(tag).map_err(|_| CryptoError::Damaged)?;
    let mut out = body.to_vec();
    aead.decrypt_inout_detached(nonce, aad, out.as_mut_slice().into(), tag)
        .map_err(|_| CryptoError::Damaged)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const KEY1: &str = "correct horse battery staple";
    const KEY2: &str = "a completely different passphrase";

    fn master(s: &str) -> MasterKey {
        MasterKey::new(s).unwrap()
    }

    fn same_keys(a: &DataKeys, b: &DataKeys) -> bool {
        a.encryption == b.encryption && a.id_key == b.id_key
    }

    #[test]
    fn seal_open_round_trip() {
        let cipher = Cipher::new(&DataKeys::generate());
        for len in [0usize, 1, 63, 64, 65, 1000, 1 << 20] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let sealed = cipher.seal(b"chunk-id", &plain);
            assert_eq!(sealed.len(), plain.len() + Cipher::OVERHEAD);
            assert_eq!(Cipher::OVERHEAD, 40);
            if len >= 16 {
                assert!(!sealed.windows(16).any(|w| w == &plain[..16]));
            }
            assert_eq!(cipher.open(b"chunk-id", &sealed).unwrap(), plain);
        }
    }

    #[test]
    fn key_slot_round_trip() {
        let keys = DataKeys::generate();
        let key = master(KEY1);
        let slot = KeySlot::create(&key, &keys).unwrap();
        assert_eq!(slot.id.len(), 2 * SLOT_ID_LEN);
        assert_eq!(slot.kdf.algorithm, "argon2id");
        assert_eq!(slot.kdf.salt.len(), 2 * SALT_LEN);
        assert_eq!(
            (slot.kdf.m_cost, slot.kdf.t_cost, slot.kdf.p_cost),
            (KDF_M_COST, KDF_T_COST, KDF_P_COST)
        );
        let json = serde_json::to_string(&slot).unwrap();
        let back: KeySlot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, slot);
        let opened = back.open(&key).unwrap();
        assert!(same_keys(&opened, &keys));
        // Data sealed under the original keys opens under the unwrapped ones.
        let sealed = Cipher::new(&keys).seal(b"x", b"payload");
        assert_eq!(
            Cipher::new(&opened).open(b"x", &sealed).unwrap(),
            b"payload"
        );
    }

    #[test]
    fn wrong_master_key_is_wrong_key() {
        let slot = KeySlot::create(&master(KEY1), &DataKeys::generate()).unwrap();
        assert!(matches!(
            slot.open(&master(KEY2)),
            Err(CryptoError::WrongKey)
        ));
        assert!(matches!(
            open_any(std::slice::from_ref(&slot), &master(KEY2)),
            Err(CryptoError::WrongKey)
        ));
    }

    #[test]
    fn tampered_slot_is_rejected() {
        let key = master(KEY1);
        let slot = KeySlot::create(&key, &DataKeys::generate()).unwrap();

        let mut renamed = slot.clone();
        renamed.id = "00000000".into();
        assert!(matches!(renamed.open(&key), Err(CryptoError::WrongKey)));

        let mut flipped = slot.clone();
        let mut raw = hex::decode(&flipped.wrapped).unwrap();
        raw[NONCE_LEN + 3] ^= 1;
        flipped.wrapped = hex::encode(raw);
        assert!(matches!(flipped.open(&key), Err(CryptoError::WrongKey)));

        let mut greedy = slot.clone();
        greedy.kdf.m_cost = u32::MAX;
        assert!(matches!(greedy.open(&key), Err(CryptoError::Invalid(_))));

        let mut unknown = slot.clone();
        unknown.kdf.algorithm = "scrypt".into();
        assert!(matches!(unknown.open(&key), Err(CryptoError::Invalid(_))));

        let mut short = slot;
        short.wrapped.truncate(20);
        assert!(matches!(short.open(&key), Err(CryptoError::Invalid(_))));

        assert!(matches!(open_any(&[], &key), Err(CryptoError::Invalid(_))));
    }

    #[test]
    fn tampered_ciphertext_is_damaged() {
        let cipher = Cipher::new(&DataKeys::generate());
        let sealed = cipher.seal(b"aad", b"some plaintext worth protecting");
        // Flip one byte in the nonce, the ciphertext and the tag in turn.
        for i in [0, NONCE_LEN + 5, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(matches!(
                cipher.open(b"aad", &bad),
                Err(CryptoError::Damaged)
            ));
        }
        assert!(matches!(
            cipher.open(b"aad", &sealed[..sealed.len() - 1]),
            Err(CryptoError::Damaged)
        ));
        assert!(matches!(
            cipher.open(b"aad", &sealed[..10]),
            Err(CryptoError::Damaged)
        ));
    }

    #[test]
    fn wrong_aad_is_damaged() {
        let cipher = Cipher::new(&DataKeys::generate());
        let sealed = cipher.seal(b"chunk-a", b"content");
        assert!(matches!(
            cipher.open(b"chunk-b", &sealed),
            Err(CryptoError::Damaged)
        ));
        assert!(matches!(
            cipher.open(b"", &sealed),
            Err(CryptoError::Damaged)
        ));
    }

    #[test]
    fn wrong_data_key_is_damaged() {
        let sealed = Cipher::new(&DataKeys::generate()).seal(b"aad", b"content");
        let other = Cipher::new(&DataKeys::generate());
        assert!(matches!(
            other.open(b"aad", &sealed),
            Err(CryptoError::Damaged)
        ));
    }

    #[test]
    fn seals_of_same_plaintext_differ() {
        let cipher = Cipher::new(&DataKeys::generate());
        let a = cipher.seal(b"aad", b"identical plaintext");
        let b = cipher.seal(b"aad", b"identical plaintext");
        assert_ne!(a, b);
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_eq!(
            cipher.open(b"aad", &a).unwrap(),
            cipher.open(b"aad", &b).unwrap()
        );
    }

    #[test]
    fn rotation_keeps_data_keys() {
        let keys = DataKeys::generate();
        let (key1, key2) = (master(KEY1), master(KEY2));
        let slot_a = KeySlot::create(&key1, &keys).unwrap();
        // Rotation: whoever holds key 1 opens the repository and adds a slot for key 2.
        let opened = open_any(std::slice::from_ref(&slot_a), &key1).unwrap();
        let slot_b = KeySlot::create(&key2, &opened).unwrap();
        assert_ne!(slot_a.id, slot_b.id);
        assert_ne!(slot_a.kdf.salt, slot_b.kdf.salt);

        let mut slots = vec![slot_a, slot_b];
        assert!(same_keys(&open_any(&slots, &key2).unwrap(), &keys));
        assert!(same_keys(&open_any(&slots, &key1).unwrap(), &keys));

        slots.remove(0);
        assert!(matches!(
            open_any(&slots, &key1),
            Err(CryptoError::WrongKey)
        ));
        assert!(same_keys(&open_any(&slots, &key2).unwrap(), &keys));
    }

    #[test]
    fn debug_output_is_redacted() {
        let key = master(KEY1);
        let shown = format!("{key:?}");
        assert!(shown.contains("[REDACTED]"));
        assert!(!shown.contains(KEY1));
        assert!(!shown.contains("horse"));

        let keys = DataKeys::generate();
        for shown in [
            format!("{keys:?}"),
            format!("{keys:#?}"),
            format!("{:?}", Cipher::new(&keys)),
        ] {
            assert!(shown.contains("[REDACTED]"));
            for secret in [&keys.encryption, &keys.id_key] {
                assert!(!shown.contains(&hex::encode(secret)));
                assert!(!shown.contains(&format!("{secret:?}")));
            }
        }
    }

    #[test]
    fn short_passphrase_is_rejected() {
        let err = MasterKey::new("fifteen bytes!!").unwrap_err();
        assert!(matches!(err, CryptoError::Invalid(_)));
        let message = err.to_string();
        assert!(message.contains("STRATA_ENCRYPTION_KEY"), "{message}");
        assert!(!message.contains("fifteen"), "{message}");
        assert!(MasterKey::new("").is_err());
        assert!(MasterKey::new("exactly16bytes!!").is_ok());
    }

    /// `cargo test --release -p strata-shared crypto -- --ignored --nocapture`
    #[test]
    #[ignore = "micro-benchmark"]
    fn bench_seal_throughput() {
        let key = master(KEY1);
        let keys = DataKeys::generate();
        let kdf = KdfParams::generate();
        for _ in 0..3 {
            let start = Instant::now();
            kdf.derive(&key).unwrap();
            println!(
                "argon2id m_cost {KDF_M_COST} KiB, t_cost {KDF_T_COST}, p_cost {KDF_P_COST}: {:.1} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
        }

        const BLOB: usize = 1 << 20;
        // The AEAD's generic code is compiled into this crate, unoptimised in a debug build.
        const ROUNDS: usize = if cfg!(debug_assertions) { 8 } else { 256 };
        let cipher = Cipher::new(&keys);
        let plain: Vec<u8> = (0..BLOB).map(|i| (i * 7 % 253) as u8).collect();
        let aad = [7u8; 32];
        let mut sealed = cipher.seal(&aad, &plain); // warm-up
        let start = Instant::now();
        for _ in 0..ROUNDS {
            sealed = std::hint::black_box(cipher.seal(&aad, std::hint::black_box(&plain)));
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "seal, 1 thread: {:.0} MiB/s ({ROUNDS} x 1 MiB)",
            ROUNDS as f64 / secs
        );

        let start = Instant::now();
        for _ in 0..ROUNDS {
            std::hint::black_box(cipher.open(&aad, std::hint::black_box(&sealed)).unwrap());
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "open, 1 thread: {:.0} MiB/s ({ROUNDS} x 1 MiB)",
            ROUNDS as f64 / secs
        );

        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..ROUNDS {
                        std::hint::black_box(cipher.seal(&aad, std::hint::black_box(&plain)));
                    }
                });
            }
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "seal, {threads} threads: {:.0} MiB/s ({} x 1 MiB)",
            (threads * ROUNDS) as f64 / secs,
            threads * ROUNDS
        );
    }
}
