//! The repository's identity, and whether the catalog describes it.
//!
//! A repository's identity is `config.repository_id`, written once when the repository
//! is created. The catalog records it (`settings.repository_id`, with the storage it was
//! seen at). Every process compares the two: a worker at start and before every job, the
//! API at each `/health`. They **disagree** when
//!
//! - the catalog records X and the storage holds repository Y;
//! - the catalog records X and the storage holds no repository (no `config`: emptied,
//!   or `STRATA_STORAGE` points elsewhere);
//! - the catalog records nothing yet but lists backups or packs, and the storage holds
//!   no repository, or one that lacks the catalog's newest backup;
//! - the storage's `config` is not a repository description.
//!
//! Then no job touches the repository (`repository_mismatch`): writing there would mix
//! two repositories, or trust a chunk index that describes another one. The way out is
//! to point `STRATA_STORAGE` at the catalog's repository, or `strata-worker
//! rebuild-catalog` from the one it points at (which adopts that repository's identity).
//!
//! A catalog that records nothing yet (a new installation, or one made before
//! identities were recorded) adopts the repository it finds, or has one created, under a
//! PostgreSQL advisory lock and with a re-read, so processes starting together record
//! one identity.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use strata_core::errors::ErrorCode;
use uuid::Uuid;

use super::crypto::MasterKey;
use super::manifest::manifest_key;
use super::pack::pack_key;
use super::{Repository, CONFIG_KEY};
use strata_storage::{DynStorage, StorageError};

/// The catalog's record of the repository's identity (`settings`).
pub const RECORDED_KEY: &str = "repository_id";
/// Where the recorded repository was seen (the storage's description).
pub const LOCATION_KEY: &str = "repository_location";
/// Serialises creating and recording a repository (the advisory lock creation always used).
const CREATE_LOCK: i64 = 7_355_608_001;

/// What the storage holds where a repository keeps its `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Missing,
    /// An object that is not a repository description (why).
    Invalid(String),
    Present(Uuid),
}

/// What the catalog knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogState {
    pub recorded: Option<Uuid>,
    pub recorded_location: Option<String>,
    /// Complete (or deleting) backups it lists.
    pub backups: i64,
    /// Packs its chunk index lists.
    pub packs: i64,
    /// The newest backup it lists, when the storage was asked whether it holds it:
    /// `Some(true)` it does.
    pub newest_backup: Option<(String, bool)>,
}

/// The catalog and the repository disagree; `message` says how and what to do.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct Mismatch {
    /// The identity the catalog records, if any.
    pub catalog: Option<Uuid>,
    /// The identity the storage holds, if any.
    pub repository: Option<Uuid>,
    /// The storage the process looked at.
    pub location: String,
    pub message: String,
}

/// The machine-readable code of a [`Mismatch`], in job errors and `/health`.
pub const MISMATCH_CODE: ErrorCode = ErrorCode::RepositoryMismatch;

/// How the catalog and the repository relate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// The catalog records this repository.
    Agree(Uuid),
    /// The catalog records none and nothing contradicts this one: record it.
    Adopt(Uuid),
    /// Neither has one and the catalog lists nothing: a repository may be created.
    Create,
    Mismatch(MismatchKind),
}

/// How they disagree (the message is made from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MismatchKind {
    Other { catalog: Uuid, repository: Uuid },
    Missing { catalog: Uuid },
    MissingWithBackups { backups: i64, packs: i64 },
    Lacks { repository: Uuid, backup: String },
    Invalid(String),
}

/// The rules above, on what was read.
pub fn decide(catalog: &CatalogState, stored: &Stored) -> Assessment {
    use MismatchKind::*;
    match (catalog.recorded, stored) {
        (_, Stored::Invalid(why)) => Assessment::Mismatch(Invalid(why.clone())),
        (Some(c), Stored::Present(r)) if c == *r => Assessment::Agree(c),
        (Some(c), Stored::Present(r)) => Assessment::Mismatch(Other {
            catalog: c,
            repository: *r,
        }),
        (Some(c), Stored::Missing) => Assessment::Mismatch(Missing { catalog: c }),
        (None, Stored::Missing) if catalog.backups > 0 || catalog.packs > 0 => {
            Assessment::Mismatch(MissingWithBackups {
                backups: catalog.backups,
                packs: catalog.packs,
            })
        }
        (None, Stored::Missing) => Assessment::Create,
        (None, Stored::Present(r)) => match &catalog.newest_backup {
            Some((backup, false)) => Assessment::Mismatch(Lacks {
                repository: *r,
                backup: backup.clone(),
            }),
            _ => Assessment::Adopt(*r),
        },
    }
}

impl MismatchKind {
    /// The mismatch, explained with the way out.
    pub fn explain(&self, catalog: &CatalogState, location: &str) -> Mismatch {
        let seen = catalog
            .recorded_location
            .as_deref()
            .map(|l| format!(" (last seen at {l})"))
            .unwrap_or_default();
        let rebuild = format!(
            "or run `strata-worker rebuild-catalog` with STRATA_STORAGE={location} to make the catalog \
             describe this repository (the backups it does not hold are then forgotten)"
        );
        let lost = "if that repository's data is lost for good, `strata-worker rebuild-catalog \
                    --new-repository` starts a new, empty repository there and the catalog forgets \
                    the backups it listed";
        let (catalog_id, repository, message) = match self {
            Self::Other { catalog, repository } => (
                Some(*catalog),
                Some(*repository),
                format!(
                    "the catalog describes repository {catalog}{seen}, but {location} holds repository \
                     {repository}: point STRATA_STORAGE at the repository this catalog describes, {rebuild}"
                ),
            ),
            Self::Missing { catalog } => (
                Some(*catalog),
                None,
                format!(
                    "{location} holds no repository (its `config` object is missing: the repository was \
                     emptied, or STRATA_STORAGE points elsewhere), but the catalog describes repository \
                     {catalog}{seen}: point STRATA_STORAGE at that repository; {lost}"
                ),
            ),
            Self::MissingWithBackups { backups, packs } => (
                None,
                None,
                format!(
                    "{location} holds no repository (its `config` object is missing), but the catalog lists \
                     {backups} backup(s) and {packs} pack(s) of one: point STRATA_STORAGE at that \
                     repository; {lost}"
                ),
            ),
            Self::Lacks { repository, backup } => (
                None,
                Some(*repository),
                format!(
                    "{location} holds repository {repository}, which lacks backup {backup} that the catalog \
                     lists: point STRATA_STORAGE at the repository this catalog describes, {rebuild}"
                ),
            ),
            Self::Invalid(why) => (
                catalog.recorded,
                None,
                format!(
                    "{location} holds a `config` object that is not a Strata repository description ({why}): \
                     point STRATA_STORAGE at the repository this catalog describes"
                ),
            ),
        };
        Mismatch {
            catalog: catalog_id,
            repository,
            location: location.to_string(),
            message,
        }
    }
}

/// Reads the identity the storage holds. Errors are the storage's (unreachable…).
pub async fn read_stored(storage: &DynStorage) -> anyhow::Result<Stored> {
    match storage.get(CONFIG_KEY).await {
        Ok(raw) => {
            #[derive(serde::Deserialize)]
            struct Id {
                repository_id: Uuid,
            }
            Ok(match serde_json::from_slice::<Id>(&raw) {
                Ok(id) => Stored::Present(id.repository_id),
                Err(e) => Stored::Invalid(e.to_string()),
            })
        }
        Err(StorageError::NotFound(_)) => Ok(Stored::Missing),
        Err(e) => Err(anyhow::Error::from(e).context("reading the repository's config")),
    }
}

/// The identity the catalog records, if any.
pub async fn recorded(conn: &mut PgConnection) -> Result<Option<Uuid>, sqlx::Error> {
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(RECORDED_KEY)
        .fetch_optional(conn)
        .await?;
    Ok(value.and_then(|v| Uuid::parse_str(&v).ok()))
}

/// Reads the catalog's side; what it lists is looked at (and the storage asked about
/// its newest backup) only when it records no identity.
async fn catalog_state(
    storage: &DynStorage,
    conn: &mut PgConnection,
    stored: &Stored,
) -> anyhow::Result<CatalogState> {
    let (recorded, location): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT (SELECT value FROM settings WHERE key = $1), (SELECT value FROM settings WHERE key = $2)",
    )
    .bind(RECORDED_KEY)
    .bind(LOCATION_KEY)
    .fetch_one(&mut *conn)
    .await?;
    let mut state = CatalogState {
        recorded: recorded.and_then(|v| Uuid::parse_str(&v).ok()),
        recorded_location: location,
        ..CatalogState::default()
    };
    if state.recorded.is_some() {
        return Ok(state);
    }
    let (backups, packs, newest): (i64, i64, Option<String>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM backups WHERE status IN ('complete', 'deleting')),
                (SELECT count(*) FROM packs),
                (SELECT id FROM backups WHERE status IN ('complete', 'deleting')
                  ORDER BY completed_at DESC NULLS LAST, created_at DESC, id LIMIT 1)",
    )
    .fetch_one(&mut *conn)
    .await?;
    state.backups = backups;
    state.packs = packs;
    if let (Some(newest), Stored::Present(_)) = (newest, stored) {
        let held = storage.head(&manifest_key(&newest)).await?.is_some();
        state.newest_backup = Some((newest, held));
    } else if let (0, true, Stored::Present(_)) = (backups, packs > 0, stored) {
        // No backup to look for: a live pack of the index must be there.
        let pack: Option<String> =
            sqlx::query_scalar("SELECT id FROM packs WHERE condemned_at IS NULL LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(pack) = pack {
            let held = storage.head(&pack_key(&pack)).await?.is_some();
            state.newest_backup = Some((format!("(pack {pack})"), held));
        }
    }
    Ok(state)
}

/// How the catalog and the storage relate, read-only (the API's `/health`).
pub async fn assess(
    storage: &DynStorage,
    conn: &mut PgConnection,
) -> anyhow::Result<Result<Assessment, Mismatch>> {
    let stored = read_stored(storage).await?;
    let catalog = catalog_state(storage, conn, &stored).await?;
    Ok(match decide(&catalog, &stored) {
        Assessment::Mismatch(kind) => Err(kind.explain(&catalog, &storage.describe())),
        other => Ok(other),
    })
}

/// Records `id` as the catalog's repository (replacing any other record when `replace`).
pub async fn record(
    conn: &mut PgConnection,
    id: Uuid,
    location: &str,
    replace: bool,
) -> Result<(), sqlx::Error> {
    let sql = if replace {
        "INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    } else {
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
    };
    sqlx::query(sql)
        .bind(RECORDED_KEY)
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(LOCATION_KEY)
    .bind(location)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Makes sure the catalog and the storage describe one repository: returns its
/// identity, after recording the one found (or creating one, encrypted with `master`
/// when given) if the catalog recorded none; or the mismatch. Cheap when they agree (a
/// query and one small read); otherwise serialised by an advisory lock, re-reading both
/// sides under it, and reading a created `config` back so that what is recorded is what
/// the storage holds.
pub async fn reconcile(
    storage: &DynStorage,
    pool: &PgPool,
    master: Option<&MasterKey>,
) -> anyhow::Result<Result<Uuid, Mismatch>> {
    {
        let mut conn = pool.acquire().await?;
        match assess(storage, &mut conn).await? {
            Ok(Assessment::Agree(id)) => return Ok(Ok(id)),
            Err(m) => return Ok(Err(m)),
            Ok(_) => {}
        }
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CREATE_LOCK)
        .execute(&mut *tx)
        .await?;
    let location = storage.describe();
    let id = match assess(storage, &mut tx).await? {
        Err(m) => return Ok(Err(m)),
        Ok(Assessment::Agree(id)) => id,
        Ok(Assessment::Mismatch(_)) => unreachable!("assess returns mismatches as errors"),
        Ok(Assessment::Adopt(id)) => {
            record(&mut tx, id, &location, false).await?;
            tracing::info!(repository = %id, storage = %location, "recorded the repository's identity in the catalog");
            id
        }
        Ok(Assessment::Create) => {
            Repository::create(storage, master).await?;
            // What the storage holds now is what gets recorded (another installation
            // sharing this storage may have written at the same moment).
            let id = match read_stored(storage).await? {
                Stored::Present(id) => id,
                other => {
                    anyhow::bail!("the repository config just written reads back as {other:?}")
                }
            };
            record(&mut tx, id, &location, false).await?;
            id
        }
    };
    // Whatever won the race is what counts.
    let id = recorded(&mut tx).await?.unwrap_or(id);
    tx.commit().await?;
    Ok(Ok(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(recorded: Option<Uuid>, backups: i64, newest: Option<bool>) -> CatalogState {
        CatalogState {
            recorded,
            recorded_location: Some("file:///old".into()),
            backups,
            packs: backups * 2,
            newest_backup: newest.map(|h| ("b1".to_string(), h)),
        }
    }

    #[test]
    fn catalog_and_repository_agree_only_on_the_same_identity() {
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            decide(&catalog(Some(x), 3, None), &Stored::Present(x)),
            Assessment::Agree(x)
        );
        let other = decide(&catalog(Some(x), 3, None), &Stored::Present(y));
        assert_eq!(
            other,
            Assessment::Mismatch(MismatchKind::Other {
                catalog: x,
                repository: y
            })
        );
        // A wiped repository, whether or not the catalog lists backups.
        for backups in [0, 3] {
            assert_eq!(
                decide(&catalog(Some(x), backups, None), &Stored::Missing),
                Assessment::Mismatch(MismatchKind::Missing { catalog: x })
            );
        }
        assert!(matches!(
            decide(&catalog(Some(x), 0, None), &Stored::Invalid("x".into())),
            Assessment::Mismatch(MismatchKind::Invalid(_))
        ));
    }

    #[test]
    fn a_catalog_without_a_record_adopts_or_creates_unless_something_contradicts() {
        let r = Uuid::new_v4();
        // New installation.
        assert_eq!(
            decide(&catalog(None, 0, None), &Stored::Missing),
            Assessment::Create
        );
        assert_eq!(
            decide(&catalog(None, 0, None), &Stored::Present(r)),
            Assessment::Adopt(r)
        );
        // Made by an older version: its repository holds its newest backup.
        assert_eq!(
            decide(&catalog(None, 5, Some(true)), &Stored::Present(r)),
            Assessment::Adopt(r)
        );
        // Backups listed, but no repository, or one without them.
        assert!(matches!(
            decide(&catalog(None, 5, None), &Stored::Missing),
            Assessment::Mismatch(MismatchKind::MissingWithBackups { backups: 5, .. })
        ));
        assert!(matches!(
            decide(&catalog(None, 5, Some(false)), &Stored::Present(r)),
            Assessment::Mismatch(MismatchKind::Lacks { .. })
        ));
    }

    #[test]
    fn every_mismatch_says_how_to_proceed() {
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        let c = catalog(Some(x), 1, None);
        for kind in [
            MismatchKind::Other {
                catalog: x,
                repository: y,
            },
            MismatchKind::Missing { catalog: x },
            MismatchKind::MissingWithBackups {
                backups: 1,
                packs: 2,
            },
            MismatchKind::Lacks {
                repository: y,
                backup: "b1".into(),
            },
            MismatchKind::Invalid("expected value".into()),
        ] {
            let m = kind.explain(&c, "file:///new");
            assert!(m.message.contains("STRATA_STORAGE"), "{}", m.message);
            assert!(m.message.contains("file:///new"), "{}", m.message);
        }
        let m = MismatchKind::Missing { catalog: x }.explain(&c, "file:///new");
        assert!(m.message.contains("rebuild-catalog --new-repository"));
        assert!(m.message.contains("last seen at file:///old"));
        let m = MismatchKind::Other {
            catalog: x,
            repository: y,
        }
        .explain(&c, "file:///new");
        assert!(m.message.contains("rebuild-catalog"));
        assert!(m.message.contains(&y.to_string()));
    }
}
