//! The PocketBase-compatible Backups API under `/api` (seeds 003 and 004): what
//! PocketBase's own SDKs call, for programs moving from PocketBase's built-in backups.

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;

use crate::api::Download;
use crate::routes as r;
use crate::types::*;
use crate::{Client, Result};

/// The PocketBase-compatible routes of a [`Client`]: `client.pocketbase()`.
///
/// ```no_run
/// # async fn demo() -> Result<(), strata_client::Error> {
/// use strata_client::Client;
///
/// let client = Client::new("http://127.0.0.1:8080")?;
/// let auth = client.pocketbase().superuser_login("admin@example.com", "a long password").await?;
/// let client = client.with_token(auth.token);
/// let pb = client.pocketbase();
///
/// // List, create with a name, download with a file token, restore, delete.
/// for backup in pb.list().await? {
///     println!("{} {} bytes, {}", backup.key, backup.size, backup.modified);
/// }
/// pb.create(Some("before_upgrade.zip")).await?;
/// let token = pb.file_token().await?.token;
/// let zip = pb.download("before_upgrade.zip", &token).await?.bytes().await?;
/// pb.upload("copy.zip", zip).await?;
/// pb.restore("before_upgrade.zip").await?;
/// pb.delete("copy.zip").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PocketBase<'a> {
    client: &'a Client,
}

impl Client {
    /// The PocketBase-compatible Backups API of this server.
    pub fn pocketbase(&self) -> PocketBase<'_> {
        PocketBase { client: self }
    }
}

impl PocketBase<'_> {
    /// `POST /api/collections/_superusers/auth-with-password`: an admin's session token.
    pub async fn superuser_login(&self, identity: &str, password: &str) -> Result<SuperuserAuth> {
        let body = PasswordAuth {
            identity: identity.to_string(),
            password: password.to_string(),
        };
        self.client
            .post_json(
                r::PB_SUPERUSER_LOGIN,
                r::PB_SUPERUSER_LOGIN.path,
                &body,
                false,
            )
            .await
    }

    /// `POST /api/admins/auth-with-password`: the same, as PocketBase before 0.23 spelt it.
    pub async fn admin_login(&self, identity: &str, password: &str) -> Result<AdminAuth> {
        let body = PasswordAuth {
            identity: identity.to_string(),
            password: password.to_string(),
        };
        self.client
            .post_json(r::PB_ADMIN_LOGIN, r::PB_ADMIN_LOGIN.path, &body, false)
            .await
    }

    /// `GET /api/health`: `data.canBackup` for an admin.
    pub async fn health(&self) -> Result<PbHealth> {
        self.client
            .get_json(r::PB_HEALTH, r::PB_HEALTH.path, &())
            .await
    }

    /// `POST /api/files/token`: a token for [`PocketBase::download`].
    pub async fn file_token(&self) -> Result<FileToken> {
        self.client
            .post_json(
                r::PB_FILE_TOKEN,
                r::PB_FILE_TOKEN.path,
                &serde_json::json!({}),
                false,
            )
            .await
    }

    /// `GET /api/backups`: the served source's backups (`<id>.zip` keys).
    pub async fn list(&self) -> Result<Vec<BackupFileInfo>> {
        self.client.get_json(r::PB_LIST, r::PB_LIST.path, &()).await
    }

    /// `POST /api/backups`: queues a backup, named `name` (a `.zip` key) when given.
    pub async fn create(&self, name: Option<&str>) -> Result<()> {
        let body = PbCreate {
            name: name.map(str::to_string),
        };
        self.client
            .send(r::PB_CREATE, r::PB_CREATE.path, false, |req| {
                req.json(&body)
            })
            .await?;
        Ok(())
    }

    /// `POST /api/backups/upload`: a zip becomes a backup named `name`.
    pub async fn upload(&self, name: &str, zip: Bytes) -> Result<()> {
        let name = name.to_string();
        self.client
            .send(r::PB_UPLOAD, r::PB_UPLOAD.path, false, |req| {
                let part = reqwest::multipart::Part::stream(zip.clone())
                    .file_name(name.clone())
                    .mime_str("application/zip")
                    .expect("a valid MIME type");
                req.multipart(reqwest::multipart::Form::new().part("file", part))
            })
            .await?;
        Ok(())
    }

    /// `GET /api/backups/{key}?token=`: the backup as a zip.
    pub async fn download(&self, key: &str, token: &str) -> Result<Download> {
        let path = r::PB_DOWNLOAD.path_with(&[key])?;
        let resp = self
            .client
            .send(r::PB_DOWNLOAD, &path, true, |req| {
                req.query(&[("token", token)])
            })
            .await?;
        Ok(Download::from_response(resp))
    }

    /// `DELETE /api/backups/{key}`.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = r::PB_DELETE.path_with(&[key])?;
        self.client.send(r::PB_DELETE, &path, true, |r| r).await?;
        Ok(())
    }

    /// `POST /api/backups/{key}/restore`: queues a restore over the served source.
    pub async fn restore(&self, key: &str) -> Result<()> {
        let path = r::PB_RESTORE.path_with(&[key])?;
        self.client
            .send(r::PB_RESTORE, &path, false, |req| {
                req.header(CONTENT_TYPE, "application/json").body("{}")
            })
            .await?;
        Ok(())
    }
}
