//! Input rules shared by every entry point. Each failure names the field and,
//! for size limits, the limit.

use crate::ErrorCode;

/// Longest e-mail address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest infobase name, in characters.
pub const MAX_INFOBASE_NAME_CHARS: usize = 256;
/// Longest user external id / name, in characters.
pub const MAX_USER_ID_CHARS: usize = 256;
pub const MAX_USER_NAME_CHARS: usize = 256;
pub const MAX_USER_FULL_NAME_CHARS: usize = 512;
pub const MAX_PHONE_CHARS: usize = 64;
pub const MAX_PICTURE_CHARS: usize = 2048;

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub code: ErrorCode,
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Invalid,
            field,
            message: message.into(),
        }
    }

    pub fn too_large(field: &'static str, limit: usize) -> Self {
        Self {
            code: ErrorCode::TooLarge,
            field,
            message: format!("longer than the limit of {limit} characters"),
        }
    }
}

/// Normalizes an e-mail (trimmed, lower-cased) and checks its form. The check
/// is deliberately plain: the code that is mailed is the real proof.
pub fn email(raw: &str) -> Result<String, ValidationError> {
    let e = raw.trim().to_lowercase();
    if e.len() > MAX_EMAIL_LEN {
        return Err(ValidationError::too_large("email", MAX_EMAIL_LEN));
    }
    let bad = || ValidationError::invalid("email", "not a valid e-mail address");
    let (local, domain) = e.split_once('@').ok_or_else(bad)?;
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return Err(bad());
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    if !local_ok || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad());
    }
    for label in labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(e)
}

/// Free text of any characters, trimmed, non-empty, bounded, without NUL
/// (PostgreSQL text cannot hold it) or other control characters.
pub fn text(field: &'static str, raw: &str, max_chars: usize) -> Result<String, ValidationError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(ValidationError::invalid(field, "must not be empty"));
    }
    optional_text(field, t, max_chars)
}

/// Like [`text`] but empty is allowed.
pub fn optional_text(
    field: &'static str,
    raw: &str,
    max_chars: usize,
) -> Result<String, ValidationError> {
    let t = raw.trim();
    if t.chars().count() > max_chars {
        return Err(ValidationError::too_large(field, max_chars));
    }
    if t.chars().any(|c| c.is_control()) {
        return Err(ValidationError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_owned())
}

/// A registration code: exactly `len` ASCII digits.
pub fn code(raw: &str, len: usize) -> Result<String, ValidationError> {
    let c = raw.trim();
    if c.len() != len || !c.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValidationError::invalid(
            "code",
            format!("must be {len} digits"),
        ));
    }
    Ok(c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email("  Ann@Example.COM ").as_deref(),
            Ok("ann@example.com")
        );
        assert!(email("a.b+tag@sub.example.org").is_ok());
        assert!(email("пользователь@пример.рф").is_ok());
        for bad in [
            "",
            "plain",
            "@x.org",
            "a@",
            "a@b",
            "a@@b.org",
            "a b@c.org",
            "a@-b.org",
            "a@b..org",
            ".a@b.org",
            "a..b@c.org",
            "a\u{0}@b.org",
        ] {
            assert!(email(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.org", "a".repeat(300));
        assert_eq!(email(&long).map_err(|e| e.code), Err(ErrorCode::TooLarge));
    }

    #[test]
    fn texts() {
        assert_eq!(
            text("name", " Бухгалтерия «Юг» ", 50).as_deref(),
            Ok("Бухгалтерия «Юг»")
        );
        assert!(text("name", "   ", 50).is_err());
        assert!(text("name", "a\0b", 50).is_err());
        assert_eq!(
            text("name", &"я".repeat(51), 50).map_err(|e| e.code),
            Err(ErrorCode::TooLarge)
        );
        assert_eq!(optional_text("x", "", 5).as_deref(), Ok(""));
    }

    #[test]
    fn codes() {
        assert!(code("012345", 6).is_ok());
        assert!(code("01234", 6).is_err());
        assert!(code("01234a", 6).is_err());
        assert!(code("０１２３４５", 6).is_err());
    }
}
