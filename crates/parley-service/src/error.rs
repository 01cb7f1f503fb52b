//! The service's one error: a stable code from the table in
//! `parley_core::ErrorCode` and a message for people. Every conversion from
//! the lower layers' errors lives here, so the REST API and the WebSocket
//! answer the same failure with the same code.

use parley_bus::BusError;
use parley_core::validate::ValidationError;
use parley_core::ErrorCode;
use parley_files::FilesError;
use parley_store::StoreError;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// For `rate_limited`: when a retry may succeed.
    pub retry_after: Option<Duration>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn rate_limited(what: &str, wait: Duration) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: format!("too many {what}; retry in {} s", wait.as_secs().max(1)),
            retry_after: Some(wait),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AccessDenied, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<ValidationError> for Error {
    fn from(e: ValidationError) -> Self {
        Self::new(e.code, format!("{}: {}", e.field, e.message))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Denied(m) => Self::access_denied(m),
            StoreError::Invalid(m) => Self::new(ErrorCode::Invalid, m),
            StoreError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            StoreError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "database unavailable");
                Self::new(
                    ErrorCode::Unavailable,
                    "the database is unavailable; retry later",
                )
            }
            other => {
                tracing::error!(error = %other, "database error");
                Self::internal("internal error; it has been logged")
            }
        }
    }
}

impl From<BusError> for Error {
    fn from(e: BusError) -> Self {
        Self::new(ErrorCode::Unavailable, e.to_string())
    }
}

impl From<FilesError> for Error {
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::NotFound => Self::not_found("file content"),
            FilesError::Unavailable(m) => Self::new(ErrorCode::Unavailable, m),
            FilesError::TooLarge { limit } => Self::too_large(format!(
                "more bytes than declared or than files.max_file_bytes ({limit})"
            )),
            FilesError::Invalid(m) => Self::invalid(m),
        }
    }
}
