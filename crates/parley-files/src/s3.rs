//! Any S3-compatible bucket through aws-sdk-s3: presigned URLs for direct
//! transfers, streaming with multipart above a threshold otherwise.

use crate::config::FilesConfig;
use crate::{hex, ByteStream, FilesError, Object, Presigned, Storage, Stored};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::time::Duration;

pub struct S3Storage {
    client: aws_sdk_s3::Client,
    /// Signs the URLs browsers use: the same bucket through
    /// `s3_public_endpoint` (a presigned URL's signature covers its host).
    presigner: aws_sdk_s3::Client,
    bucket: String,
    endpoint: String,
    threshold: u64,
    part_size: u64,
}

/// Turns an SDK error into one that says what to fix.
fn sdk<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    endpoint: &str,
    e: SdkError<E, R>,
) -> FilesError {
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            FilesError::Unavailable(format!("cannot reach the S3 endpoint {endpoint}"))
        }
        SdkError::ServiceError(_) => {
            let code = e.code().unwrap_or("unknown").to_owned();
            let msg = e.message().unwrap_or("").to_owned();
            let hint = match code.as_str() {
                "NoSuchBucket" => " (create the bucket, or fix files.s3_bucket)",
                "InvalidAccessKeyId" | "SignatureDoesNotMatch" => {
                    " (check files.s3_access_key / files.s3_secret_key)"
                }
                "AccessDenied" => " (the key lacks read/write rights on the bucket)",
                "AuthorizationHeaderMalformed" => " (check files.s3_region)",
                _ => "",
            };
            FilesError::Unavailable(format!("S3 refused: {code} {msg}{hint}"))
        }
        _ => FilesError::Unavailable(format!("S3 error: {e:?}")),
    }
}

fn presigned(req: aws_sdk_s3::presigning::PresignedRequest) -> Presigned {
    Presigned {
        method: req.method().to_owned(),
        url: req.uri().to_owned(),
        headers: req
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    }
}

/// RFC 5987 encoding of a file name for Content-Disposition.
fn encode_filename(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl S3Storage {
    pub fn new(cfg: &FilesConfig) -> Self {
        let timeout = Duration::from_secs(cfg.s3_timeout_secs);
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.s3_region.clone()))
            .credentials_provider(Credentials::new(
                &cfg.s3_access_key,
                &cfg.s3_secret_key,
                None,
                None,
                "parley",
            ))
            .force_path_style(cfg.s3_force_path_style)
            // S3-compatible servers (MinIO, Garage) do not all take the
            // newer default checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3).min(timeout))
                    .read_timeout(timeout)
                    .build(),
            );
        let mut public = b.clone();
        if !cfg.s3_endpoint.is_empty() {
            b = b.endpoint_url(&cfg.s3_endpoint);
        }
        match (cfg.s3_public_endpoint.as_str(), cfg.s3_endpoint.as_str()) {
            ("", "") => {}
            ("", own) => public = public.endpoint_url(own),
            (outside, _) => public = public.endpoint_url(outside),
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            presigner: aws_sdk_s3::Client::from_conf(public.build()),
            bucket: cfg.s3_bucket.clone(),
            endpoint: if cfg.s3_endpoint.is_empty() {
                "AWS".into()
            } else {
                cfg.s3_endpoint.clone()
            },
            threshold: cfg.multipart_threshold_bytes,
            part_size: cfg.part_size_bytes,
        }
    }

    async fn put_single(
        &self,
        key: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<(), FilesError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(SdkStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk(&self.endpoint, e))?;
        Ok(())
    }

    /// Uploads the rest of the stream as parts, starting with `first`.
    async fn put_multipart(
        &self,
        key: &str,
        content_type: &str,
        first: BytesMut,
        input: &mut Intake,
    ) -> Result<(), FilesError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| sdk(&self.endpoint, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| FilesError::Unavailable("S3 gave no upload id".into()))?
            .to_owned();
        match self.parts(key, &upload_id, first, input).await {
            Ok(parts) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| sdk(&self.endpoint, e))?;
                Ok(())
            }
            Err(e) => {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    async fn parts(
        &self,
        key: &str,
        upload_id: &str,
        mut buf: BytesMut,
        input: &mut Intake,
    ) -> Result<Vec<CompletedPart>, FilesError> {
        let part = self.part_size as usize;
        let mut parts = Vec::new();
        let mut ended = false;
        loop {
            while !ended && buf.len() < part {
                match input.next().await? {
                    Some(chunk) => buf.extend_from_slice(&chunk),
                    None => ended = true,
                }
            }
            if buf.is_empty() {
                break;
            }
            // Every part but the last has exactly part_size bytes.
            let piece = buf.split_to(buf.len().min(part)).freeze();
            let n = parts.len() as i32 + 1;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(n)
                .body(SdkStream::from(piece))
                .send()
                .await
                .map_err(|e| sdk(&self.endpoint, e))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .part_number(n)
                    .build(),
            );
        }
        Ok(parts)
    }
}

/// The incoming bytes, counted, hashed and held to a maximum.
struct Intake {
    body: ByteStream,
    hasher: Sha256,
    size: u64,
    max: u64,
}

impl Intake {
    async fn next(&mut self) -> Result<Option<Bytes>, FilesError> {
        match self.body.next().await {
            None => Ok(None),
            Some(chunk) => {
                let chunk = chunk?;
                self.size += chunk.len() as u64;
                if self.size > self.max {
                    return Err(FilesError::TooLarge { limit: self.max });
                }
                self.hasher.update(&chunk);
                Ok(Some(chunk))
            }
        }
    }

    fn stored(self) -> Stored {
        Stored {
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        }
    }
}

impl Storage for S3Storage {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        body: ByteStream,
        max: u64,
    ) -> BoxFuture<'a, Result<Stored, FilesError>> {
        Box::pin(async move {
            let mut input = Intake {
                body,
                hasher: Sha256::new(),
                size: 0,
                max,
            };
            let mut buf = BytesMut::new();
            // Small files go in one request; past the threshold, multipart
            // with parts of part_size, so memory stays bounded.
            while let Some(chunk) = input.next().await? {
                buf.extend_from_slice(&chunk);
                if buf.len() as u64 > self.threshold {
                    self.put_multipart(key, content_type, buf, &mut input)
                        .await?;
                    return Ok(input.stored());
                }
            }
            self.put_single(key, content_type, buf.freeze()).await?;
            Ok(input.stored())
        })
    }

    fn presign_put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        size: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Presigned>, FilesError>> {
        Box::pin(async move {
            let cfg = PresigningConfig::expires_in(ttl)
                .map_err(|e| FilesError::Invalid(e.to_string()))?;
            let req = self
                .presigner
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .content_length(i64::try_from(size).unwrap_or(i64::MAX))
                .presigned(cfg)
                .await
                .map_err(|e| sdk(&self.endpoint, e))?;
            Ok(Some(presigned(req)))
        })
    }

    fn presign_get<'a>(
        &'a self,
        key: &'a str,
        filename: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Presigned>, FilesError>> {
        Box::pin(async move {
            let cfg = PresigningConfig::expires_in(ttl)
                .map_err(|e| FilesError::Invalid(e.to_string()))?;
            let req = self
                .presigner
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .response_content_disposition(format!(
                    "attachment; filename*=UTF-8''{}",
                    encode_filename(filename)
                ))
                .presigned(cfg)
                .await
                .map_err(|e| sdk(&self.endpoint, e))?;
            Ok(Some(presigned(req)))
        })
    }

    fn copy<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), FilesError>> {
        Box::pin(async move {
            match self
                .client
                .copy_object()
                .bucket(&self.bucket)
                .key(to)
                .copy_source(format!("{}/{}", self.bucket, from))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some("NoSuchKey") => Err(FilesError::NotFound),
                Err(e) => Err(sdk(&self.endpoint, e)),
            }
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, FilesError>> {
        Box::pin(async move {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_start_after(after.map(str::to_owned))
                .max_keys(i32::try_from(limit.min(1000)).unwrap_or(1000))
                .send()
                .await
                .map_err(|e| sdk(&self.endpoint, e))?;
            Ok(out
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect())
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, FilesError>> {
        Box::pin(async move {
            match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
                Err(SdkError::ServiceError(se)) if se.err().is_not_found() => Ok(None),
                Err(e) => Err(sdk(&self.endpoint, e)),
            }
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<(u64, Option<u64>)>,
    ) -> BoxFuture<'a, Result<Object, FilesError>> {
        Box::pin(async move {
            let mut req = self.client.get_object().bucket(&self.bucket).key(key);
            if let Some((s, e)) = range {
                req = req.range(match e {
                    Some(e) => format!("bytes={s}-{e}"),
                    None => format!("bytes={s}-"),
                });
            }
            let out = match req.send().await {
                Ok(o) => o,
                Err(SdkError::ServiceError(se)) if se.err().is_no_such_key() => {
                    return Err(FilesError::NotFound)
                }
                Err(e) => {
                    if e.code() == Some("InvalidRange") {
                        return Err(FilesError::Invalid("range starts past the end".into()));
                    }
                    return Err(sdk(&self.endpoint, e));
                }
            };
            let len = out.content_length().unwrap_or(0).max(0) as u64;
            // "bytes START-END/TOTAL"
            let parsed = out.content_range().and_then(|cr| {
                let (span, total) = cr.strip_prefix("bytes ")?.split_once('/')?;
                let (s, e) = span.split_once('-')?;
                Some((
                    s.parse::<u64>().ok()?,
                    e.parse::<u64>().ok()?,
                    total.parse::<u64>().ok()?,
                ))
            });
            let (total, got) = match (range, parsed) {
                (Some(_), Some((s, e, t))) => (t, Some((s, e))),
                _ => (len, None),
            };
            let endpoint = self.endpoint.clone();
            let stream = futures_util::stream::unfold(out.body, move |mut b| {
                let endpoint = endpoint.clone();
                async move {
                    match b.next().await {
                        None => None,
                        Some(Ok(bytes)) => Some((Ok(bytes), b)),
                        Some(Err(e)) => Some((
                            Err(FilesError::Unavailable(format!(
                                "reading from {endpoint}: {e}"
                            ))),
                            b,
                        )),
                    }
                }
            });
            Ok(Object {
                total,
                range: got,
                stream: stream.boxed(),
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), FilesError>> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| sdk(&self.endpoint, e))?;
            Ok(())
        })
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), FilesError>> {
        Box::pin(async move {
            self.client
                .head_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map_err(|e| sdk(&self.endpoint, e))?;
            Ok(())
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), FilesError>> {
        Box::pin(async move {
            // Like `ready`, but each refusal gets its own explanation.
            self.client
                .head_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map_err(|e| match &e {
                    SdkError::ServiceError(se) if se.err().is_not_found() => FilesError::Unavailable(format!(
                        "bucket {} does not exist at {} (create it, or fix files.s3_bucket)",
                        self.bucket, self.endpoint
                    )),
                    SdkError::ServiceError(se) if se.raw().status().as_u16() == 403 => FilesError::Unavailable(format!(
                        "access to bucket {} denied (check files.s3_access_key, files.s3_secret_key and the key's rights)",
                        self.bucket
                    )),
                    _ => sdk(&self.endpoint, e),
                })?;
            // Writing proves the rights uploads need.
            let probe = ".parley-probe";
            self.put_single(probe, "text/plain", Bytes::from_static(b"ok"))
                .await?;
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(probe)
                .send()
                .await
                .map_err(|e| sdk(&self.endpoint, e))?;
            Ok(())
        })
    }
}
