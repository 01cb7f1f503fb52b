//! The API's one error shape. Every failure leaves as `{"code", "message"}`
//! with the HTTP status of the code's row in `parley_core::ErrorCode`. The
//! conversions from the lower layers live in `parley_service::error`; this
//! file only maps the service's error to HTTP and names the refusals of the
//! HTTP layer itself (bodies, queries, paths, routes).

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use parley_core::{ErrorBody, ErrorCode};
use parley_service::Error;
use std::time::Duration;

/// The service's error, answered over HTTP.
#[derive(Debug, Clone)]
pub struct ApiError(pub Error);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(Error::new(code, message))
    }

    pub fn rate_limited(what: &str, wait: Duration) -> Self {
        Self(Error::rate_limited(what, wait))
    }

    pub fn not_found(what: &str) -> Self {
        Self(Error::not_found(what))
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self(Error::access_denied(message))
    }
}

impl std::ops::Deref for ApiError {
    type Target = Error;
    fn deref(&self) -> &Error {
        &self.0
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(wait) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, wait.as_secs().max(1).to_string()));
        }
        res.json(ErrorBody::new(self.code, self.message.clone()))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Body errors of `web::Json`: size, content type, syntax, shape.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let e = match &err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::new(
            ErrorCode::TooLarge,
            format!("the body exceeds the limit of {limit} bytes (http.max_body_bytes)"),
        ),
        JsonPayloadError::Deserialize(de) => {
            ApiError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {de}"))
        }
        other => ApiError::new(ErrorCode::InvalidJson, format!("unreadable body: {other}")),
    };
    e.into()
}

pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(ErrorCode::Invalid, format!("bad query string: {err}")).into()
}

pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let msg = match err {
        PathError::Deserialize(e) => format!("bad path parameter: {e}"),
        other => format!("bad path: {other}"),
    };
    ApiError::new(ErrorCode::NotFound, msg).into()
}

/// The default service: unknown routes answer `not_found` in the one shape.
pub async fn no_route() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;
    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}
