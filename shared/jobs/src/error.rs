//! How a job's run went wrong, as a value the runner matches on (no downcasts).

use std::fmt;

use strata_core::errors::ErrorCode;

/// Why a job did not succeed.
///
/// Job code returns [`JobError::Permanent`] for what retrying cannot fix and lets every
/// other error become [`JobError::Transient`] (`?` on an `anyhow::Error`, a database or
/// I/O error). [`JobError::Stopped`] and [`JobError::Cancelled`] are the runner's: it
/// knows why it asked the job to stop, whatever error the stop surfaced as.
///
/// Deliberately not a `std::error::Error`: an `anyhow::Error` cannot swallow it, so a
/// permanent failure cannot turn into a transient one on its way up.
pub enum JobError {
    /// The worker stopped the job (shutdown, lost lease, stall): it is handed back.
    Stopped,
    /// A client cancelled the job: it ends `cancelled` and never runs again.
    Cancelled,
    /// Retrying cannot help (bad payload, missing backup, target not allowed…): the job
    /// fails at once with `code`, keeping `details` (e.g. what verify found) as its result.
    Permanent {
        code: ErrorCode,
        message: String,
        details: Option<serde_json::Value>,
    },
    /// Anything else: retried with back-off while attempts remain.
    Transient(anyhow::Error),
}

/// What a job function returns.
pub type JobResult<T> = Result<T, JobError>;

impl JobError {
    /// A permanent failure.
    pub fn permanent(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Permanent {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// A permanent failure with a report kept as the job's result.
    pub fn permanent_with(
        code: ErrorCode,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Self::Permanent {
            code,
            message: message.into(),
            details: Some(details),
        }
    }

    /// Adds context to a transient error's message; other kinds are kept as they are.
    pub fn context(self, what: impl fmt::Display + Send + Sync + 'static) -> Self {
        match self {
            Self::Transient(e) => Self::Transient(e.context(what)),
            other => other,
        }
    }

    /// Whether the job's stop flag surfaced as this error (a stage that saw the flag
    /// and returned, a storage request abandoned): job code uses it to clean up without
    /// reporting a failure; the runner decides the job's end from its own stop reason.
    pub fn is_stopped(&self) -> bool {
        match self {
            Self::Stopped | Self::Cancelled => true,
            Self::Transient(e) => strata_engine::repo::progress::is_stopped(e),
            Self::Permanent { .. } => false,
        }
    }

    /// The machine-readable code the job's `error` carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Stopped => ErrorCode::Released,
            Self::Cancelled => ErrorCode::Cancelled,
            Self::Permanent { code, .. } => *code,
            Self::Transient(e) if strata_storage::StorageError::is_unavailable(e) => {
                ErrorCode::StorageUnavailable
            }
            Self::Transient(_) => ErrorCode::JobFailed,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stopped => f.write_str("the job was stopped"),
            Self::Cancelled => f.write_str("cancelled at the client's request"),
            Self::Permanent { message, .. } => f.write_str(message),
            Self::Transient(e) => write!(f, "{e:#}"),
        }
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self, self.code())
    }
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        Self::Transient(e)
    }
}

macro_rules! transient_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JobError {
            fn from(e: $t) -> Self {
                Self::Transient(e.into())
            }
        }
    )*};
}
transient_from!(
    sqlx::Error,
    std::io::Error,
    serde_json::Error,
    url::ParseError,
    strata_storage::StorageError,
    tokio::task::JoinError,
    strata_engine::repo::progress::Stopped
);

/// Adds context to a transient error, like `anyhow::Context`.
pub trait JobContextExt<T> {
    fn job_context<C: fmt::Display + Send + Sync + 'static>(self, what: C) -> JobResult<T>;
}

impl<T> JobContextExt<T> for JobResult<T> {
    fn job_context<C: fmt::Display + Send + Sync + 'static>(self, what: C) -> JobResult<T> {
        self.map_err(|e| e.context(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_say_how_a_job_ended() {
        assert_eq!(
            JobError::permanent(ErrorCode::BadPayload, "x").code(),
            ErrorCode::BadPayload
        );
        assert_eq!(
            JobError::from(anyhow::anyhow!("boom")).code(),
            ErrorCode::JobFailed
        );
        assert_eq!(JobError::Cancelled.code(), ErrorCode::Cancelled);
        assert_eq!(JobError::Stopped.code(), ErrorCode::Released);
        let e = JobError::from(anyhow::anyhow!("inner")).context("outer");
        assert_eq!(e.to_string(), "outer: inner");
        let p = JobError::permanent(ErrorCode::NoTarget, "kept").context("outer");
        assert_eq!(p.to_string(), "kept");
    }
}
