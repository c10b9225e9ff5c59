//! The `/api/v1` methods, one per route of [`crate::routes`].

use std::path::Path;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, ETAG, RANGE};
use reqwest::Response;
use tokio::io::AsyncWriteExt;

use crate::query::*;
use crate::routes::{self as r};
use crate::types::*;
use crate::{Client, Error, Result};

/// The body of a download: bytes streamed as they arrive.
#[derive(Debug)]
pub struct Download {
    resp: Response,
}

impl Download {
    pub(crate) fn from_response(resp: Response) -> Self {
        Self { resp }
    }

    /// The length the server announced (`Content-Length`), if it did.
    pub fn content_length(&self) -> Option<u64> {
        self.header(CONTENT_LENGTH.as_str())
            .and_then(|v| v.parse().ok())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header(CONTENT_TYPE.as_str())
    }

    /// The content hash of a single file (`GET …/file`).
    pub fn etag(&self) -> Option<&str> {
        self.header(ETAG.as_str())
    }

    /// The file name the server suggests (`Content-Disposition`), reduced to one safe
    /// path component.
    pub fn file_name(&self) -> Option<String> {
        let value = self.header(CONTENT_DISPOSITION.as_str())?;
        let name = value
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("filename="))?
            .trim_matches('"');
        let name = name.rsplit(['/', '\\']).next().unwrap_or("");
        (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
    }

    /// The HTTP status (`200`, or `206` for a range).
    pub fn status(&self) -> u16 {
        self.resp.status().as_u16()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.resp.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The bytes, chunk by chunk.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes>> {
        self.resp.bytes_stream().map_err(Error::from_reqwest)
    }

    /// All of it in memory (small files only).
    pub async fn bytes(self) -> Result<Bytes> {
        self.resp.bytes().await.map_err(Error::from_reqwest)
    }

    /// Writes it to `path` (created or truncated), calling `progress` with the bytes
    /// written so far; returns the total. A partial file is removed on failure.
    pub async fn save(self, path: &Path, mut progress: impl FnMut(u64)) -> Result<u64> {
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        let mut done = 0u64;
        let mut stream = Box::pin(self.bytes_stream());
        let result: Result<u64> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| Error::io(path, e))?;
                done += chunk.len() as u64;
                progress(done);
            }
            file.flush().await.map_err(|e| Error::io(path, e))?;
            file.sync_all().await.map_err(|e| Error::io(path, e))?;
            Ok(done)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        result
    }
}

/// A stream of upload bytes.
pub type UploadStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + Sync>>;

/// What [`Client::upload`] sends: a file, bytes in memory, or a stream.
pub enum UploadBody {
    Bytes(Bytes),
    Stream {
        stream: UploadStream,
        len: Option<u64>,
    },
}

impl std::fmt::Debug for UploadBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "UploadBody::Bytes({} bytes)", b.len()),
            Self::Stream { len, .. } => write!(f, "UploadBody::Stream(len {len:?})"),
        }
    }
}

impl UploadBody {
    /// A file's bytes, read as they are sent; `progress` is called with the bytes read
    /// so far.
    pub async fn file(
        path: &Path,
        progress: impl FnMut(u64) + Send + Sync + 'static,
    ) -> Result<Self> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().await.map_err(|e| Error::io(path, e))?.len();
        let progress = std::sync::Mutex::new((0u64, progress));
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
                if let Ok(c) = &chunk {
                    let mut p = progress.lock().expect("progress lock");
                    p.0 += c.len() as u64;
                    let done = p.0;
                    (p.1)(done);
                }
                chunk
            });
        Ok(Self::Stream {
            stream: Box::pin(stream),
            len: Some(len),
        })
    }
}

/// A page-by-page listing turned into a stream of items.
fn paged<T, P, F, Fut>(
    first: Option<String>,
    fetch: F,
    split: fn(P) -> (Vec<T>, Option<String>),
) -> impl Stream<Item = Result<T>>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<P>>,
{
    futures::stream::try_unfold((Some(first), fetch), move |(cursor, fetch)| async move {
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        let page = fetch(cursor).await?;
        let (items, next) = split(page);
        Ok(Some((items, (next.map(Some), fetch))))
    })
    .map_ok(|items| futures::stream::iter(items.into_iter().map(Ok)))
    .try_flatten()
}

impl Client {
    // ---- health ---------------------------------------------------------------------

    /// `GET /api/v1/health`: the server's checks and whether a backup can start now.
    pub async fn health(&self) -> Result<HealthReport> {
        self.get_json(r::HEALTH, r::HEALTH.path, &()).await
    }

    /// `GET /livez`: the process answers.
    pub async fn livez(&self) -> Result<Alive> {
        self.get_json(r::LIVEZ, r::LIVEZ.path, &()).await
    }

    /// `GET /readyz`: PostgreSQL, RabbitMQ and the storage answer.
    pub async fn readyz(&self) -> Result<Readiness> {
        self.get_json(r::READYZ, r::READYZ.path, &()).await
    }

    /// `GET /api/v1/openapi.json`: the server's OpenAPI 3.1 document.
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.get_json(r::OPENAPI, r::OPENAPI.path, &()).await
    }

    /// `GET /api/v1/docs`: the same document as an HTML page.
    pub async fn docs(&self) -> Result<String> {
        let resp = self.send(r::DOCS, r::DOCS.path, true, |r| r).await?;
        resp.text().await.map_err(Error::from_reqwest)
    }

    // ---- sources --------------------------------------------------------------------

    /// `POST /api/v1/sources` (admin).
    pub async fn create_source(&self, source: &CreateSource) -> Result<SourceView> {
        self.post_json(r::CREATE_SOURCE, r::CREATE_SOURCE.path, source, false)
            .await
    }

    /// `GET /api/v1/sources`.
    pub async fn list_sources(&self) -> Result<Vec<SourceView>> {
        let list: SourceList = self
            .get_json(r::LIST_SOURCES, r::LIST_SOURCES.path, &())
            .await?;
        Ok(list.items)
    }

    /// `GET /api/v1/sources/{id}`: by id or name.
    pub async fn get_source(&self, id_or_name: &str) -> Result<SourceView> {
        let path = r::GET_SOURCE.path_with(&[id_or_name])?;
        self.get_json(r::GET_SOURCE, &path, &()).await
    }

    /// `DELETE /api/v1/sources/{id}` (admin): a source without backups, with its
    /// schedules.
    pub async fn delete_source(&self, id_or_name: &str) -> Result<()> {
        let path = r::DELETE_SOURCE.path_with(&[id_or_name])?;
        self.send(r::DELETE_SOURCE, &path, true, |r| r).await?;
        Ok(())
    }

    // ---- backups --------------------------------------------------------------------

    /// `POST /api/v1/backup`: queues a backup job (retried safely: it carries an
    /// `Idempotency-Key`).
    pub async fn create_backup(&self, backup: &CreateBackup) -> Result<BackupAccepted> {
        self.post_json(r::CREATE_BACKUP, r::CREATE_BACKUP.path, backup, true)
            .await
    }

    /// `GET /api/v1/backup`: one page.
    pub async fn list_backups(&self, filter: &BackupFilter) -> Result<BackupPage> {
        self.get_json(r::LIST_BACKUPS, r::LIST_BACKUPS.path, filter)
            .await
    }

    /// Every backup the filter matches, newest first, fetching pages as the stream is read.
    pub fn backups(&self, filter: BackupFilter) -> impl Stream<Item = Result<BackupView>> + '_ {
        let first = filter.from.clone();
        paged(
            first,
            move |from| {
                let filter = BackupFilter {
                    from,
                    ..filter.clone()
                };
                async move { self.list_backups(&filter).await }
            },
            |p: BackupPage| (p.items, p.next),
        )
    }

    /// `GET /api/v1/backup/{id}`: the backup and its chain.
    pub async fn get_backup(&self, id: &str) -> Result<BackupDetail> {
        let path = r::GET_BACKUP.path_with(&[id])?;
        self.get_json(r::GET_BACKUP, &path, &()).await
    }

    /// `DELETE /api/v1/backup/{id}` (admin): queues its deletion.
    pub async fn delete_backup(&self, id: &str, options: &DeleteOptions) -> Result<DeleteAccepted> {
        let path = r::DELETE_BACKUP.path_with(&[id])?;
        self.call(r::DELETE_BACKUP, &path, true, |r| r.query(options))
            .await
    }

    /// `POST /api/v1/backup/{id}/restore` (admin).
    pub async fn restore_backup(
        &self,
        id: &str,
        request: &RestoreRequest,
    ) -> Result<RestoreAccepted> {
        let path = r::RESTORE_BACKUP.path_with(&[id])?;
        self.post_json(r::RESTORE_BACKUP, &path, request, false)
            .await
    }

    /// `POST /api/v1/backup/{id}/verify`: `mode` `full` (default: reads every pack) or
    /// `drill` (restores into a scratch directory and compares).
    pub async fn verify_backup(&self, id: &str, request: &VerifyRequest) -> Result<VerifyAccepted> {
        let path = r::VERIFY_BACKUP.path_with(&[id])?;
        self.post_json(r::VERIFY_BACKUP, &path, request, false)
            .await
    }

    /// `GET /api/v1/backup/{id}/download`: a tar or zip of the backup, or its database
    /// file, streamed.
    pub async fn download_backup(&self, id: &str, options: &DownloadOptions) -> Result<Download> {
        let path = r::DOWNLOAD_BACKUP.path_with(&[id])?;
        let resp = self
            .send(r::DOWNLOAD_BACKUP, &path, true, |r| r.query(options))
            .await?;
        Ok(Download { resp })
    }

    /// `POST /api/v1/backup/upload` (admin): a tar or zip becomes a new full backup.
    pub async fn upload(
        &self,
        body: UploadBody,
        options: &UploadOptions,
    ) -> Result<UploadAccepted> {
        let route = r::UPLOAD_BACKUP;
        // A stream can be sent once: no retry.
        let body = std::sync::Mutex::new(Some(body));
        // No overall timeout: a large archive takes as long as it takes to send.
        let resp = self
            .send(route, route.path, false, |req| {
                let req = req
                    .query(options)
                    .header(CONTENT_TYPE, "application/octet-stream");
                match body.lock().expect("body lock").take() {
                    Some(UploadBody::Bytes(b)) => req.body(b),
                    Some(UploadBody::Stream { stream, len }) => {
                        let req = match len {
                            Some(len) => req.header(CONTENT_LENGTH, len),
                            None => req,
                        };
                        req.body(reqwest::Body::wrap_stream(stream))
                    }
                    None => req,
                }
            })
            .await?;
        crate::read_json(route, resp).await
    }

    // ---- looking inside ---------------------------------------------------------------

    /// `GET /api/v1/backup/{id}/tree`: one directory (or a subtree) as it was.
    pub async fn tree(&self, id: &str, options: &TreeOptions) -> Result<TreePage> {
        let path = r::TREE.path_with(&[id])?;
        self.get_json(r::TREE, &path, options).await
    }

    /// Every entry of a directory (or subtree), fetching pages as the stream is read.
    pub fn tree_entries<'a>(
        &'a self,
        id: &'a str,
        options: TreeOptions,
    ) -> impl Stream<Item = Result<TreeEntry>> + 'a {
        let first = options.from.clone();
        paged(
            first,
            move |from| {
                let options = TreeOptions {
                    from,
                    ..options.clone()
                };
                async move { self.tree(id, &options).await }
            },
            |p: TreePage| (p.entries, p.next),
        )
    }

    /// `GET /api/v1/backup/{id}/file`: one file's bytes; `range` is an HTTP byte range
    /// (`bytes=0-1023`), answered with status `206`.
    pub async fn file(&self, id: &str, file_path: &str, range: Option<&str>) -> Result<Download> {
        let path = r::FILE.path_with(&[id])?;
        let resp = self
            .send(r::FILE, &path, true, |req| {
                let req = req.query(&[("path", file_path)]);
                match range {
                    Some(range) => req.header(RANGE, range),
                    None => req,
                }
            })
            .await?;
        Ok(Download { resp })
    }

    /// `GET /api/v1/backup/{id}/diff`: what changed from `options.against` to `id`.
    pub async fn diff(&self, id: &str, options: &DiffOptions) -> Result<DiffPage> {
        let path = r::DIFF.path_with(&[id])?;
        self.get_json(r::DIFF, &path, options).await
    }

    /// `GET /api/v1/search`: backups holding paths that match a glob, newest first.
    pub async fn search(&self, options: &SearchOptions) -> Result<SearchPage> {
        self.get_json(r::SEARCH, r::SEARCH.path, options).await
    }

    // ---- jobs -----------------------------------------------------------------------

    /// `GET /api/v1/jobs/{id}` (also the `status_url` of every accepted job).
    pub async fn get_job(&self, id: &str) -> Result<JobView> {
        let path = r::GET_JOB.path_with(&[id])?;
        self.get_json(r::GET_JOB, &path, &()).await
    }

    /// `GET /api/v1/jobs`: one page.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage> {
        self.get_json(r::LIST_JOBS, r::LIST_JOBS.path, filter).await
    }

    /// Every job the filter matches, newest first.
    pub fn jobs(&self, filter: JobFilter) -> impl Stream<Item = Result<JobView>> + '_ {
        let first = filter.from.clone();
        paged(
            first,
            move |from| {
                let filter = JobFilter {
                    from,
                    ..filter.clone()
                };
                async move { self.list_jobs(&filter).await }
            },
            |p: JobPage| (p.items, p.next),
        )
    }

    /// `POST /api/v1/jobs/{id}/cancel`: the job stops at its next checkpoint.
    pub async fn cancel_job(&self, id: &str) -> Result<JobView> {
        let path = r::CANCEL_JOB.path_with(&[id])?;
        // Asking twice is the same as asking once: safe to retry.
        self.call(r::CANCEL_JOB, &path, true, |r| r).await
    }

    // ---- schedules --------------------------------------------------------------------

    /// `POST /api/v1/backup/schedule` (admin).
    pub async fn create_schedule(&self, schedule: &ScheduleBody) -> Result<ScheduleOut> {
        self.post_json(r::CREATE_SCHEDULE, r::CREATE_SCHEDULE.path, schedule, false)
            .await
    }

    /// `GET /api/v1/backup/schedule`.
    pub async fn list_schedules(&self, filter: &ScheduleFilter) -> Result<Vec<ScheduleOut>> {
        let list: ScheduleList = self
            .get_json(r::LIST_SCHEDULES, r::LIST_SCHEDULES.path, filter)
            .await?;
        Ok(list.items)
    }

    /// `GET /api/v1/backup/schedule/{id}`.
    pub async fn get_schedule(&self, id: &str) -> Result<ScheduleOut> {
        let path = r::GET_SCHEDULE.path_with(&[id])?;
        self.get_json(r::GET_SCHEDULE, &path, &()).await
    }

    /// `PUT /api/v1/backup/schedule/{id}` (admin): replaces it (pause with `enabled: false`).
    pub async fn update_schedule(&self, id: &str, schedule: &ScheduleBody) -> Result<ScheduleOut> {
        let path = r::UPDATE_SCHEDULE.path_with(&[id])?;
        self.call(r::UPDATE_SCHEDULE, &path, true, |r| r.json(schedule))
            .await
    }

    /// `DELETE /api/v1/backup/schedule/{id}` (admin).
    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        let path = r::DELETE_SCHEDULE.path_with(&[id])?;
        self.send(r::DELETE_SCHEDULE, &path, true, |r| r).await?;
        Ok(())
    }

    // ---- retention, repository, configuration -----------------------------------------

    /// `POST /api/v1/backup/prune` (admin): applies the retention rules (or reports
    /// what they would delete, with `dry_run`).
    pub async fn prune(&self, request: &PruneBody) -> Result<PruneResult> {
        self.post_json(r::PRUNE, r::PRUNE.path, request, false)
            .await
    }

    /// `POST /api/v1/repository/gc` (admin): queues a garbage collection.
    pub async fn gc(&self) -> Result<GcAccepted> {
        self.post_json(r::GC, r::GC.path, &serde_json::json!({}), false)
            .await
    }

    /// `GET /api/v1/config/export` (admin): sources and schedules, without secrets.
    pub async fn export_config(&self) -> Result<ConfigExport> {
        self.get_json(r::EXPORT_CONFIG, r::EXPORT_CONFIG.path, &())
            .await
    }

    /// `POST /api/v1/config/import` (admin).
    pub async fn import_config(&self, config: &ImportRequest) -> Result<ImportReport> {
        self.post_json(r::IMPORT_CONFIG, r::IMPORT_CONFIG.path, config, false)
            .await
    }

    // ---- keys, users, sessions, tokens, audit -------------------------------------------

    /// `POST /api/v1/keys` (admin): the key itself is in the answer, once.
    pub async fn create_key(&self, key: &CreateKey) -> Result<CreatedKey> {
        self.post_json(r::CREATE_KEY, r::CREATE_KEY.path, key, false)
            .await
    }

    /// `GET /api/v1/keys` (admin).
    pub async fn list_keys(&self) -> Result<Vec<KeyView>> {
        let list: KeyList = self.get_json(r::LIST_KEYS, r::LIST_KEYS.path, &()).await?;
        Ok(list.items)
    }

    /// `DELETE /api/v1/keys/{id}` (admin).
    pub async fn revoke_key(&self, id: &str) -> Result<()> {
        let path = r::REVOKE_KEY.path_with(&[id])?;
        self.send(r::REVOKE_KEY, &path, true, |r| r).await?;
        Ok(())
    }

    /// `POST /api/v1/users` (admin).
    pub async fn create_user(&self, user: &CreateUser) -> Result<UserView> {
        self.post_json(r::CREATE_USER, r::CREATE_USER.path, user, false)
            .await
    }

    /// `GET /api/v1/users` (admin).
    pub async fn list_users(&self) -> Result<Vec<UserView>> {
        let list: UserList = self
            .get_json(r::LIST_USERS, r::LIST_USERS.path, &())
            .await?;
        Ok(list.items)
    }

    /// `DELETE /api/v1/users/{id}` (admin).
    pub async fn delete_user(&self, id: &str) -> Result<()> {
        let path = r::DELETE_USER.path_with(&[id])?;
        self.send(r::DELETE_USER, &path, true, |r| r).await?;
        Ok(())
    }

    /// `POST /api/v1/auth/login`: a session token; use it with [`Client::with_token`].
    pub async fn login(&self, email: &str, password: &str) -> Result<LoginResponse> {
        let body = LoginRequest {
            email: email.to_string(),
            password: password.to_string(),
        };
        self.post_json(r::LOGIN, r::LOGIN.path, &body, false).await
    }

    /// `POST /api/v1/auth/logout`: ends this session.
    pub async fn logout(&self) -> Result<()> {
        self.send(r::LOGOUT, r::LOGOUT.path, false, |r| r).await?;
        Ok(())
    }

    /// `GET /api/v1/auth/me`: who this credential is.
    pub async fn me(&self) -> Result<Me> {
        self.get_json(r::ME, r::ME.path, &()).await
    }

    /// `POST /api/v1/auth/password`: changes the signed-in user's password (ends their
    /// other sessions).
    pub async fn change_password(&self, current: &str, new: &str) -> Result<()> {
        let body = PasswordChange {
            current_password: current.to_string(),
            new_password: new
                .parse()
                .map_err(|e| Error::invalid_input("new_password", format!("{e}")))?,
        };
        self.send(r::CHANGE_PASSWORD, r::CHANGE_PASSWORD.path, false, |r| {
            r.json(&body)
        })
        .await?;
        Ok(())
    }

    /// `POST /api/v1/files/token`: a short-lived token for download URLs
    /// (`?token=`), optionally bound to one backup.
    pub async fn file_token(&self, backup_id: Option<&str>) -> Result<FileToken> {
        let body = TokenRequest {
            backup_id: backup_id.map(str::to_string),
        };
        self.post_json(r::FILE_TOKEN, r::FILE_TOKEN.path, &body, false)
            .await
    }

    /// The URL of a backup's download with a file token in it, for a browser or curl.
    pub fn download_url(&self, id: &str, options: &DownloadOptions) -> Result<String> {
        let path = r::DOWNLOAD_BACKUP.path_with(&[id])?;
        let query = serde_urlencoded(options)?;
        Ok(if query.is_empty() {
            self.url(&path)
        } else {
            self.url(&format!("{path}?{query}"))
        })
    }

    /// `GET /api/v1/audit` (admin): one page, newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditPage> {
        self.get_json(r::AUDIT, r::AUDIT.path, filter).await
    }
}

/// A query string from a serializable value (reqwest's own encoder, through a dummy URL).
fn serde_urlencoded(value: &impl serde::Serialize) -> Result<String> {
    let req = reqwest::Client::new()
        .get("http://x/")
        .query(value)
        .build()
        .map_err(|e| Error::invalid_input("query", e.to_string()))?;
    Ok(req.url().query().unwrap_or("").to_string())
}
