//! Strata's snapshot engine: the repository (format, crypto, packs, trees, manifests),
//! the backup writer and the restore reader, garbage collection, verification,
//! catalog rebuilds, archives (import/export) and the policy of where restores may
//! write. Built on `strata-storage` (bytes) and `strata-catalog` (the chunk index and
//! the backup rows).

pub mod archive;
pub mod paths;
pub mod repo;
