//! The ONE table of error codes: code → HTTP status → meaning. Every refusal
//! the server gives, REST or WebSocket, uses one of these codes.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $variant:ident => ($code:literal, $status:literal, $doc:literal) ),* $(,)?) => {
        /// A stable, machine-readable error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( #[doc = $doc] $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order (used by docs and tests).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// The HTTP status the REST API answers with.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// One line saying when the code is used.
            pub fn description(self) -> &'static str {
                match self { $( ErrorCode::$variant => $doc, )* }
            }
        }
    };
}

error_codes! {
    InvalidJson => ("invalid_json", 400, "The body is not valid JSON or does not have the expected shape (wrong type, missing field, unknown field)."),
    Invalid => ("invalid", 400, "A value is well-formed JSON but not acceptable (bad e-mail, empty name, out-of-range number); the message names the field."),
    TooLarge => ("too_large", 413, "The body or a field exceeds its configured size limit; the message names the limit."),
    ChecksumMismatch => ("checksum_mismatch", 400, "The uploaded bytes do not match the declared size or SHA-256; nothing was kept."),
    UnsupportedType => ("unsupported_type", 415, "Files of this content type are not accepted (files.allowed_types / files.blocked_types)."),
    QuotaExceeded => ("quota_exceeded", 403, "The subscriber's file quota (files.quota_bytes_per_subscriber) would be exceeded."),
    LimitReached => ("limit_reached", 403, "A configured count limit is reached (users or live tokens of an infobase); the message names the limit."),
    Unauthenticated => ("unauthenticated", 401, "Credentials are missing or not in the expected form."),
    AccessDenied => ("access_denied", 403, "Credentials are wrong, expired or revoked, or the caller may not touch this resource."),
    UnknownFrame => ("unknown_frame", 400, "A WebSocket frame whose `type` the server does not know."),
    NotFound => ("not_found", 404, "No such resource (or route)."),
    MethodNotAllowed => ("method_not_allowed", 405, "The route exists but not with this HTTP method."),
    Conflict => ("conflict", 409, "The request conflicts with the current state."),
    CursorExpired => ("cursor_expired", 410, "The feed cursor is older than the feed's retention (feed.retention_hours): events after it are gone; resync from history and start again without `after`."),
    RateLimited => ("rate_limited", 429, "Too many requests; retry after the number of seconds in `Retry-After`."),
    Unavailable => ("unavailable", 503, "A component the request needs (database, mail) is not reachable; retry later."),
    Internal => ("internal", 500, "An unexpected server fault; it is logged with the request id."),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one error shape of the API: `{"code": "...", "message": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, *code);
            assert!((400..600).contains(&code.http_status()));
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// docs/api.md lists every code with its HTTP status.
    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../../docs/api.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.http_status());
            assert!(doc.contains(&row), "docs/api.md lacks the row {row}");
        }
    }
}
