//! A repository session: held by every job or request that reads or writes the
//! repository, from before its first look-up to its end. Garbage collection never
//! deletes a pack condemned after a live session started (docs/FORMAT.md).

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::progress::CancelFlag;
use strata_catalog as db;

/// How often a session heartbeats (the stale limit, `STRATA_GC_SESSION_STALE_SECS`,
/// must be several times longer).
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// A registered session; heartbeats in the background until ended or dropped.
pub struct Session {
    id: Uuid,
    pool: PgPool,
    beat: JoinHandle<()>,
    ended: bool,
}

impl Session {
    /// Registers a session of `kind` ("backup", "restore", "download"…). When its row
    /// disappears (garbage collection removed it as stale), `on_lost` is set: the
    /// holder must stop, as what it reads or references may be deleted.
    pub async fn start(
        pool: &PgPool,
        kind: &str,
        job_id: Option<Uuid>,
        on_lost: Option<CancelFlag>,
    ) -> anyhow::Result<Self> {
        let id = Uuid::now_v7();
        let mut conn = pool.acquire().await?;
        db::repo_sessions::register(&mut conn, id, kind, job_id).await?;
        drop(conn);
        let beat_pool = pool.clone();
        let beat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.tick().await;
            loop {
                tick.tick().await;
                let alive = async {
                    let mut conn = beat_pool.acquire().await?;
                    db::repo_sessions::heartbeat(&mut conn, id).await
                }
                .await;
                match alive {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(session = %id, "the repository session was removed as stale; stopping");
                        if let Some(flag) = &on_lost {
                            flag.store(true, Ordering::Relaxed);
                        }
                        return;
                    }
                    Err(e) => tracing::warn!(session = %id, error = %e, "session heartbeat failed"),
                }
            }
        });
        Ok(Self {
            id,
            pool: pool.clone(),
            beat,
            ended: false,
        })
    }

    /// Ends the session now (dropping it does the same in the background).
    pub async fn end(mut self) {
        self.beat.abort();
        self.ended = true;
        if let Ok(mut conn) = self.pool.acquire().await {
            if let Err(e) = db::repo_sessions::end(&mut conn, self.id).await {
                tracing::warn!(session = %self.id, error = %e, "could not end the repository session; it will go stale");
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.beat.abort();
        if self.ended {
            return;
        }
        let (id, pool) = (self.id, self.pool.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Ok(mut conn) = pool.acquire().await {
                    let _ = db::repo_sessions::end(&mut conn, id).await;
                }
            });
        }
    }
}
