//! The `[files]` section.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Local,
    S3,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    pub backend: StorageKind,
    pub local_dir: String,
    pub s3_endpoint: String,
    /// The endpoint as browsers reach it, for presigned URLs; empty = the
    /// same as `s3_endpoint` (the nodes' own way in may be a private name).
    pub s3_public_endpoint: String,
    pub s3_region: String,
    pub s3_bucket: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    pub s3_force_path_style: bool,
    pub s3_timeout_secs: u64,
    pub max_file_bytes: u64,
    pub quota_bytes_per_subscriber: u64,
    pub allowed_types: Vec<String>,
    pub blocked_types: Vec<String>,
    pub upload_ttl_secs: u64,
    /// Lifetime of a presigned upload URL (short: a leaked URL is of use
    /// only this long, and only for the upload area, never a verified file).
    pub upload_url_ttl_secs: u64,
    pub presign_ttl_secs: u64,
    pub retention_days: u64,
    pub multipart_threshold_bytes: u64,
    pub part_size_bytes: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            backend: StorageKind::Local,
            local_dir: "parley-files".into(),
            s3_endpoint: String::new(),
            s3_public_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_bucket: String::new(),
            s3_access_key: String::new(),
            s3_secret_key: String::new(),
            s3_force_path_style: true,
            s3_timeout_secs: 10,
            max_file_bytes: 100 * 1024 * 1024,
            quota_bytes_per_subscriber: 10 * 1024 * 1024 * 1024,
            allowed_types: Vec::new(),
            blocked_types: vec![
                "application/x-msdownload".into(),
                "application/x-msdos-program".into(),
                "application/x-sh".into(),
            ],
            upload_ttl_secs: 3600,
            upload_url_ttl_secs: 300,
            presign_ttl_secs: 900,
            retention_days: 0,
            multipart_threshold_bytes: 16 * 1024 * 1024,
            part_size_bytes: 8 * 1024 * 1024,
        }
    }
}

impl FilesConfig {
    /// Range checks; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let bad = |k: &'static str, m: &str| Err((k, m.to_owned()));
        if self.backend == StorageKind::S3 {
            if self.s3_bucket.is_empty() {
                return bad("files.s3_bucket", "must be set when backend = \"s3\"");
            }
            let e = &self.s3_endpoint;
            if !(e.is_empty() || e.starts_with("http://") || e.starts_with("https://")) {
                return bad(
                    "files.s3_endpoint",
                    "must be an http:// or https:// URL (or empty for AWS)",
                );
            }
            let p = &self.s3_public_endpoint;
            if !(p.is_empty() || p.starts_with("http://") || p.starts_with("https://")) {
                return bad(
                    "files.s3_public_endpoint",
                    "must be an http:// or https:// URL (or empty: the same as s3_endpoint)",
                );
            }
        } else if self.local_dir.is_empty() {
            return bad("files.local_dir", "must be set when backend = \"local\"");
        }
        if self.max_file_bytes == 0 {
            return bad("files.max_file_bytes", "must be at least 1");
        }
        // S3 parts are 5 MiB at least (but the last).
        if self.part_size_bytes < 5 * 1024 * 1024 || self.part_size_bytes > 512 * 1024 * 1024 {
            return bad("files.part_size_bytes", "must be between 5 MiB and 512 MiB");
        }
        if self.multipart_threshold_bytes < self.part_size_bytes {
            return bad(
                "files.multipart_threshold_bytes",
                "must be at least files.part_size_bytes",
            );
        }
        if !(60..=7 * 24 * 3600).contains(&self.presign_ttl_secs) {
            return bad("files.presign_ttl_secs", "must be between 60 and 604800");
        }
        if !(60..=3600).contains(&self.upload_url_ttl_secs) {
            return bad("files.upload_url_ttl_secs", "must be between 60 and 3600");
        }
        if self.upload_ttl_secs < 60 {
            return bad("files.upload_ttl_secs", "must be at least 60");
        }
        if self.s3_timeout_secs == 0 {
            return bad("files.s3_timeout_secs", "must be at least 1");
        }
        Ok(())
    }

    /// Whether uploads of this content type are accepted.
    pub fn type_allowed(&self, content_type: &str) -> bool {
        let base = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let matches = |pattern: &String| {
            let p = pattern.to_ascii_lowercase();
            match p.strip_suffix("/*") {
                Some(prefix) => base.split('/').next() == Some(prefix),
                None => p == base,
            }
        };
        if self.blocked_types.iter().any(matches) {
            return false;
        }
        self.allowed_types.is_empty() || self.allowed_types.iter().any(matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        let mut c = FilesConfig::default();
        assert!(c.type_allowed("image/png"));
        assert!(!c.type_allowed("application/x-msdownload"));
        c.allowed_types = vec!["image/*".into(), "application/pdf".into()];
        assert!(c.type_allowed("image/jpeg"));
        assert!(c.type_allowed("application/pdf; charset=binary"));
        assert!(!c.type_allowed("text/plain"));
    }
}
