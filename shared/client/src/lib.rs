//! `strata-client`: the Rust SDK of [Strata](https://github.com/strata)'s backup API.
//!
//! A typed async client for the whole `/api/v1` API and for the PocketBase-compatible
//! Backups API under `/api` ([`PocketBase`]). The request and response types in
//! [`types`] are generated at build time from the server's own OpenAPI document, so
//! they are the server's.
//!
//! ```no_run
//! use strata_client::{types, Client};
//!
//! # async fn demo() -> Result<(), strata_client::Error> {
//! let client = Client::new("http://127.0.0.1:8080")?.with_token("strata_…");
//!
//! // Back a source up and wait for the job, printing its progress.
//! let accepted = client
//!     .create_backup(&types::CreateBackup {
//!         source: Some("web".into()),
//!         name: Some("before-upgrade".into()),
//!         ..Default::default()
//!     })
//!     .await?;
//! let job = client
//!     .wait_for_job(&accepted.job_id.to_string(), |job| {
//!         println!("{:?}: {} bytes", job.phase, job.progress.bytes_done)
//!     })
//!     .await?;
//! assert_eq!(job.status, types::JobStatusName::Succeeded);
//! # Ok(()) }
//! ```
//!
//! Every call returns [`Error`] on failure: the API's `code`, `message` and `field` with
//! the HTTP status, or why no answer came. Reads, `PUT`s and `DELETE`s are retried with
//! back-off on a network error, `429`, `502`, `503` or `504`; so is creating a backup,
//! which carries an `Idempotency-Key` (every create does) that the server honours.

mod api;
mod error;
mod events;
mod pocketbase;
pub mod query;
pub mod routes;

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use url::Url;

pub use api::{Download, UploadBody};
pub use error::{Error, ErrorKind};
pub use events::{JobEvent, JobEventKind};
pub use pocketbase::PocketBase;
use routes::Route;

/// The request and response types, generated from the server's OpenAPI document
/// (`components.schemas`), one Rust type per schema with the schema's name.
#[allow(clippy::all, missing_docs, unused_imports, irrefutable_let_patterns)]
pub mod types {
    include!(concat!(env!("OUT_DIR"), "/types.rs"));
}

/// An answer's body as `T`; a body that is not one names the route.
async fn read_json<T: DeserializeOwned>(route: Route, resp: Response) -> Result<T> {
    let bytes = resp.bytes().await.map_err(Error::from_reqwest)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid_response(format!("{} {}: {e}", route.method, route.path)))
}

/// What a call returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client of one Strata server, with one credential. Cheap to clone (one connection
/// pool is shared).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    retries: u32,
    timeout: Duration,
}

/// Options of a [`Client`]: see [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    base: String,
    token: Option<String>,
    retries: u32,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
}

impl ClientBuilder {
    /// The credential: an API key (`strata_…`), a session token from [`Client::login`],
    /// or a JWT. Sent as `Authorization: Bearer …`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How many times a retryable call is sent again (default 3).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// The limit on one JSON call, from sending to the whole answer (default 60 s).
    /// Downloads, uploads and event streams have none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The limit on connecting (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    pub fn build(self) -> Result<Client> {
        let mut base = Url::parse(self.base.trim())
            .map_err(|e| Error::invalid_input("server", format!("{:?}: {e}", self.base)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::invalid_input(
                "server",
                format!("{:?} is not an http(s) URL", self.base),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::invalid_input(
                "server",
                "the server URL takes no query or fragment",
            ));
        }
        // A base path (`https://host/strata`) keeps its routes below it.
        let path = base.path().trim_end_matches('/').to_string();
        base.set_path(&path);
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent)
            // A redirect would carry the credential elsewhere: none is followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::from_reqwest)?;
        Ok(Client {
            http,
            base,
            token: self.token,
            retries: self.retries,
            timeout: self.timeout,
        })
    }
}

impl Client {
    /// A client of the server at `base_url` (`http://127.0.0.1:8080`), with no credential.
    pub fn new(base_url: &str) -> Result<Self> {
        Self::builder(base_url).build()
    }

    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base: base_url.to_string(),
            token: None,
            retries: 3,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("strata-client/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// The same client with this credential.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The absolute URL of a path (`/api/v1/…`) on this server.
    pub fn url(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.base.as_str().trim_end_matches('/'),
            path_and_query
        )
    }

    fn request(&self, method: &str, path: &str) -> RequestBuilder {
        let method = Method::from_bytes(method.as_bytes()).expect("a valid method");
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = &self.token {
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                value.set_sensitive(true);
                req = req.header(AUTHORIZATION, value);
            }
        }
        req
    }

    /// Sends a request built by `build` (called again for each attempt), retrying when
    /// `retry` allows and the failure is transient; an error status becomes [`Error`].
    async fn send(
        &self,
        route: Route,
        path: &str,
        retry: bool,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let mut attempt = 0u32;
        loop {
            let result = build(self.request(route.method, path)).send().await;
            let (err, wait) = match result {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    let body = resp.bytes().await.unwrap_or_default();
                    (Error::api(status, &body), after)
                }
                Err(e) => (Error::from_reqwest(e), None),
            };
            if !retry || attempt >= self.retries || !err.is_transient() {
                return Err(err);
            }
            let backoff = Duration::from_millis(250 * (1 << attempt.min(4)));
            tokio::time::sleep(wait.unwrap_or(backoff)).await;
            attempt += 1;
        }
    }

    /// A JSON call: the body as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        route: Route,
        path: &str,
        retry: bool,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<T> {
        let timeout = self.timeout;
        let resp = self
            .send(route, path, retry, |r| build(r.timeout(timeout)))
            .await?;
        read_json(route, resp).await
    }

    /// A `GET` answering JSON.
    async fn get_json<T: DeserializeOwned>(
        &self,
        route: Route,
        path: &str,
        query: &impl serde::Serialize,
    ) -> Result<T> {
        self.call(route, path, true, |r| r.query(query)).await
    }

    /// A `POST` with a JSON body. `idempotent`: the server honours the
    /// `Idempotency-Key` sent with it, so it may be retried.
    async fn post_json<T: DeserializeOwned>(
        &self,
        route: Route,
        path: &str,
        body: &impl serde::Serialize,
        idempotent: bool,
    ) -> Result<T> {
        let key = uuid::Uuid::new_v4().to_string();
        self.call(route, path, idempotent, |r| {
            r.header("Idempotency-Key", &key).json(body)
        })
        .await
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
