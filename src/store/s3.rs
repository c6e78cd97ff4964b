//! The S3 store: AWS S3 and every S3-compatible store (Cloudflare R2, MinIO, Garage,
//! Backblaze B2) through `aws-sdk-s3`.
//!
//! - Credentials come only from the standard AWS chain (environment, profile, web identity,
//!   instance metadata), resolved on first use.
//! - Object metadata (HEAD) is cached: an hour for immutable `releases/v*/` objects, a few
//!   seconds for mutable ones, so that a burst of range requests does not HEAD the bucket
//!   each time. Concurrent misses coalesce.
//! - Reads are ranged GETs with `If-Match` on the ETag the metadata gave, so every part of a
//!   response comes from the same version of the object; S3 cannot answer several ranges in
//!   one request, so a multipart response is assembled from single-range reads.
//! - Errors get their HTTP meaning in `StoreError`: no such key → 404, denied or throttled →
//!   503 with `Retry-After`, timeouts → 504; each is logged with the S3 request id.

use std::io;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::future;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, ProvideCredentials, Region, SharedCredentialsProvider,
};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::TryStreamExt;
use moka::future::Cache;
use sha2::Digest;

use super::ByteRange;
use super::key::KeyHasher;
use super::{
    ByteStream, Conditional, Object, ObjectKey, ObjectMeta, ObjectSource, ObjectTtl, Precondition,
    Progress, StoreError,
};
use crate::config::StoreConfig;

/// Files above this are uploaded in parts (S3's single PUT tops out at 5 GiB; parts also
/// retry cheaply).
const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Part size of multipart uploads.
const PART_SIZE: u64 = 16 * 1024 * 1024;
/// User metadata key that holds the SHA-512 of what publish uploaded (hex).
const SHA512_META: &str = "sha512";

/// Resolves the default AWS credential chain on first use, so that building the store
/// needs no async context and no network until a request is made.
#[derive(Debug)]
struct LazyDefaultChain {
    region: Region,
    chain:
        tokio::sync::OnceCell<aws_config::default_provider::credentials::DefaultCredentialsChain>,
}

impl ProvideCredentials for LazyDefaultChain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| {
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .region(self.region.clone())
                        .build()
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

/// A bucket (and prefix) holding `releases/`.
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    meta: Cache<ObjectKey, (ObjectMeta, Instant), KeyHasher>,
    ttl: ObjectTtl,
    /// The first-byte timeout, for error messages.
    timeout: Duration,
    /// `store.presign_ttl`: the shortest life of a presigned URL.
    presign_ttl: Duration,
    /// Presigned GETs by key and window (`store.downloads = "redirect"`).
    presigned: Cache<(ObjectKey, u64), String>,
}

impl S3Store {
    /// Builds the client from the config. `credentials` overrides the AWS chain (tests that
    /// run a local S3 server in-process with keys made at run time).
    pub fn new(config: &StoreConfig, ttl: ObjectTtl, credentials: Option<Credentials>) -> Self {
        let region = Region::new(config.region.clone());
        let provider = match credentials {
            Some(credentials) => SharedCredentialsProvider::new(credentials),
            None => SharedCredentialsProvider::new(LazyDefaultChain {
                region: region.clone(),
                chain: tokio::sync::OnceCell::new(),
            }),
        };
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(provider)
            .force_path_style(config.force_path_style)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .read_timeout(config.first_byte_timeout)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts));
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let prefix = config.prefix.trim_matches('/');
        let meta = Cache::builder()
            .max_capacity(100_000)
            .expire_after(ttl.clone())
            .build_with_hasher(KeyHasher::default());
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone().unwrap_or_default(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            meta,
            ttl,
            timeout: config.first_byte_timeout,
            presign_ttl: config.presign_ttl,
            presigned: Cache::builder()
                .max_capacity(100_000)
                // Memory backstop: an entry's window is over by then.
                .time_to_live(config.presign_ttl)
                .build(),
        }
    }

    /// A presigned `GET` of `key` (SigV4 query authentication, the host the only signed
    /// header, so a client's `Range` and preconditions go to the bucket as they are), with
    /// `response-content-disposition` when given. Its start is rounded down to a window (a
    /// quarter of `store.presign_ttl`) and its life is the TTL plus a window, so every
    /// request of a window gets the same URL, made once (a CDN may keep it), valid at least
    /// the TTL from now.
    pub(super) async fn presigned_get(
        &self,
        key: &ObjectKey,
        disposition: Option<&str>,
    ) -> Result<String, StoreError> {
        let window = (self.presign_ttl.as_secs() / 4).max(1);
        let now = self
            .ttl
            .clock
            .system_time()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let slot = now / window;
        let presign = async {
            let start = SystemTime::UNIX_EPOCH + Duration::from_secs(slot * window);
            let config = PresigningConfig::builder()
                .start_time(start)
                .expires_in(self.presign_ttl + Duration::from_secs(window))
                .build()
                .map_err(|e| StoreError::Unavailable {
                    message: format!("cannot presign {key}: {e}"),
                    source: None,
                })?;
            let request = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.full_key(key.as_str()))
                .set_response_content_disposition(disposition.map(str::to_owned))
                .presigned(config)
                .await
                .map_err(|err| classify(key.as_str(), "presign GetObject", self.timeout, err))?;
            Ok::<_, StoreError>(request.uri().to_owned())
        };
        self.presigned
            .try_get_with((key.clone(), slot), presign)
            .await
            .map_err(|err| err.duplicate())
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(super) async fn open(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        let meta = if self.ttl.of(key).is_some() {
            match self.meta.get(key).await {
                Some((meta, learnt)) if self.ttl.fresh(key, learnt) => meta,
                stale => {
                    if stale.is_some() {
                        self.meta.invalidate(key).await;
                    }
                    let head = async {
                        let learnt = self.ttl.clock.now();
                        self.head(key).await.map(|meta| (meta, learnt))
                    };
                    // Concurrent misses share one HEAD.
                    let (meta, _) = self
                        .meta
                        .try_get_with_by_ref(key, head)
                        .await
                        .map_err(|err| err.duplicate())?;
                    meta
                }
            }
        } else {
            self.head(key).await?
        };
        Ok(Object {
            source: ObjectSource::S3(S3Source {
                client: self.client.clone(),
                bucket: self.bucket.clone(),
                key: self.full_key(key.as_str()),
                etag: meta.etag.clone(),
                timeout: self.timeout,
            }),
            meta,
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await
            .map_err(|err| classify(key.as_str(), "HeadObject", self.timeout, err))?;
        Ok(ObjectMeta {
            size: out
                .content_length()
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            etag: quoted(out.e_tag().unwrap_or_default()),
            last_modified: out
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok()),
            content_type: out
                .content_type()
                .filter(|ct| *ct != "binary/octet-stream" && *ct != "application/octet-stream")
                .map(str::to_owned),
        })
    }

    pub(super) async fn probe(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| classify(&self.bucket, "HeadBucket", self.timeout, err))
    }

    pub(super) async fn put_file(
        &self,
        key: &ObjectKey,
        local: &std::path::Path,
        sha512: Option<[u8; 64]>,
        progress: Progress,
    ) -> Result<(), StoreError> {
        let size = tokio::fs::metadata(local)
            .await
            .map_err(|err| local_error(local, err))?
            .len();
        let sha512 = match sha512 {
            Some(digest) => digest,
            None => {
                let path = local.to_path_buf();
                tokio::task::spawn_blocking(move || -> io::Result<[u8; 64]> {
                    super::sha512_file(std::fs::File::open(path)?).map(|(digest, _)| digest)
                })
                .await
                .map_err(|err| local_error(local, io::Error::other(err)))?
                .map_err(|err| local_error(local, err))?
            }
        };
        let full = self.full_key(key.as_str());
        let content_type = key.guessed_content_type();
        let content_type = content_type.to_str().unwrap_or("application/octet-stream");
        if size <= MULTIPART_THRESHOLD {
            let body = S3Body::from_path(local)
                .await
                .map_err(|err| local_error(local, io::Error::other(err)))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .content_type(content_type)
                .metadata(SHA512_META, hex(&sha512))
                .body(body)
                .send()
                .await
                .map_err(|err| classify(key.as_str(), "PutObject", self.timeout, err))?;
            progress(size);
        } else {
            self.multipart(key, &full, local, size, &sha512, content_type, progress)
                .await?;
        }
        self.meta.invalidate(key).await;
        Ok(())
    }

    /// A multipart upload; aborted (nothing left behind, nothing visible) when a part fails.
    #[allow(clippy::too_many_arguments)]
    async fn multipart(
        &self,
        key: &ObjectKey,
        full: &str,
        local: &std::path::Path,
        size: u64,
        sha512: &[u8; 64],
        content_type: &str,
        progress: Progress,
    ) -> Result<(), StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .content_type(content_type)
            .metadata(SHA512_META, hex(sha512))
            .send()
            .await
            .map_err(|err| classify(key.as_str(), "CreateMultipartUpload", self.timeout, err))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result = async {
            let mut parts = Vec::new();
            let mut offset = 0u64;
            let mut number = 1i32;
            while offset < size {
                let length = PART_SIZE.min(size - offset);
                let body = S3Body::read_from()
                    .path(local)
                    .offset(offset)
                    .length(aws_smithy_types::byte_stream::Length::Exact(length))
                    .build()
                    .await
                    .map_err(|err| local_error(local, io::Error::other(err)))?;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(body)
                    .send()
                    .await
                    .map_err(|err| classify(key.as_str(), "UploadPart", self.timeout, err))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .build(),
                );
                offset += length;
                number += 1;
                progress(offset);
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|err| {
                    classify(key.as_str(), "CompleteMultipartUpload", self.timeout, err)
                })?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    pub(super) async fn put_bytes(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StoreError> {
        let digest: [u8; 64] = sha2::Sha512::digest(&bytes).into();
        let content_type = key.guessed_content_type();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .content_type(content_type.to_str().unwrap_or("application/octet-stream"))
            .metadata(SHA512_META, hex(&digest))
            .body(S3Body::from(bytes))
            .send()
            .await
            .map_err(|err| classify(key.as_str(), "PutObject", self.timeout, err))?;
        self.meta.invalidate(key).await;
        Ok(())
    }

    /// `PutObject` with `If-Match` (or `If-None-Match: *` for an object that must not exist
    /// yet): S3 (since 2024) and R2 decide the precondition and the write atomically, and
    /// answer `412 Precondition Failed` (or `409 ConditionalRequestConflict` to a write
    /// racing another conditional one on the same key).
    pub(super) async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> Result<Conditional, StoreError> {
        let digest: [u8; 64] = sha2::Sha512::digest(&bytes).into();
        let content_type = key.guessed_content_type();
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .content_type(content_type.to_str().unwrap_or("application/octet-stream"))
            .metadata(SHA512_META, hex(&digest))
            .body(S3Body::from(bytes));
        let request = match &precondition {
            Precondition::Absent => request.if_none_match("*"),
            Precondition::Matches(etag) => request.if_match(etag),
        };
        let sent = request.send().await;
        self.meta.invalidate(key).await;
        match sent {
            Ok(out) => {
                let etag = match out.e_tag() {
                    Some(etag) => quoted(etag),
                    None => self.head(key).await?.etag,
                };
                Ok(Conditional::Written { etag })
            }
            Err(err)
                if err
                    .raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) =>
            {
                let current = match self.head(key).await {
                    Ok(meta) => Some(meta.etag),
                    Err(StoreError::NotFound { .. }) => None,
                    Err(other) => return Err(other),
                };
                Ok(Conditional::Failed { current })
            }
            Err(err) => Err(classify(key.as_str(), "PutObject", self.timeout, err)),
        }
    }

    /// The SHA-512 that publish recorded in the object's metadata, else computed by reading
    /// the object.
    pub(super) async fn sha512(&self, key: &ObjectKey) -> Result<Option<[u8; 64]>, StoreError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await;
        let head = match head {
            Ok(head) => head,
            Err(err) => {
                return match classify(key.as_str(), "HeadObject", self.timeout, err) {
                    StoreError::NotFound { .. } => Ok(None),
                    other => Err(other),
                };
            }
        };
        if let Some(recorded) = head
            .metadata()
            .and_then(|m| m.get(SHA512_META))
            .and_then(|h| unhex(h))
        {
            return Ok(Some(recorded));
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await
            .map_err(|err| classify(key.as_str(), "GetObject", self.timeout, err))?;
        let mut hasher = sha2::Sha512::new();
        let mut body = out.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| StoreError::Unavailable {
                message: format!("reading {key}"),
                source: Some(io::Error::other(err)),
            })?;
            hasher.update(&chunk);
        }
        Ok(Some(hasher.finalize().into()))
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_entries(prefix, false)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Names of the "directories" directly under `prefix`: the common prefixes that
    /// ListObjectsV2 reports with delimiter `/`.
    pub(super) async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_entries(prefix, true)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// The objects directly under `prefix` with their sizes (for `mirror` and `status`).
    pub(super) async fn list_sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.list_entries(prefix, false).await
    }

    /// Names and sizes of the objects (or, with `dirs`, names of the common prefixes, size
    /// 0) directly under `prefix`, sorted.
    async fn list_entries(
        &self,
        prefix: &str,
        dirs: bool,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let dir = format!("{}/", self.full_key(prefix.trim_end_matches('/')));
        let mut names = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&dir)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| classify(prefix, "ListObjectsV2", self.timeout, err))?;
            let keys: Vec<(&str, u64)> = if dirs {
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix())
                    .filter_map(|p| p.strip_suffix('/'))
                    .map(|p| (p, 0))
                    .collect()
            } else {
                page.contents()
                    .iter()
                    .filter_map(|o| {
                        let size = u64::try_from(o.size().unwrap_or(0)).unwrap_or(0);
                        Some((o.key()?, size))
                    })
                    .collect()
            };
            names.extend(
                keys.into_iter()
                    .filter_map(|(k, size)| Some((k.strip_prefix(&dir)?, size)))
                    .filter(|(n, _)| !n.is_empty())
                    .map(|(n, size)| (n.to_owned(), size)),
            );
        }
        names.sort();
        Ok(names)
    }
}

/// Reads of one object version.
#[derive(Clone)]
pub(super) struct S3Source {
    client: Client,
    bucket: String,
    key: String,
    etag: String,
    timeout: Duration,
}

impl S3Source {
    /// One ranged GET, sent when the stream is first polled; dropping the stream drops the
    /// connection to S3.
    pub(super) fn read(&self, range: ByteRange) -> ByteStream {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(format!("bytes={}-{}", range.start, range.end))
            .if_match(&self.etag);
        let key = self.key.clone();
        let timeout = self.timeout;
        let body = async move {
            let out = request.send().await.map_err(|err| {
                let err = classify(&key, "GetObject", timeout, err);
                io::Error::other(err)
            })?;
            Ok::<_, io::Error>(body_stream(out.body))
        };
        Box::pin(futures_util::stream::once(body).try_flatten())
    }
}

/// An S3 response body as a byte stream.
fn body_stream(body: S3Body) -> ByteStream {
    Box::pin(futures_util::stream::try_unfold(
        body,
        |mut body| async move {
            match body.next().await {
                Some(Ok(chunk)) => Ok(Some((chunk, body))),
                Some(Err(err)) => Err(io::Error::other(err)),
                None => Ok(None),
            }
        },
    ))
}

/// An ETag as HTTP spells it: quoted (some S3-compatible stores send it bare).
fn quoted(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 64]> {
    if text.len() != 128 {
        return None;
    }
    let mut out = [0u8; 64];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn local_error(path: &std::path::Path, err: io::Error) -> StoreError {
    StoreError::Unavailable {
        message: format!("reading {}", path.display()),
        source: Some(err),
    }
}

/// Gives an SDK error its meaning, and logs it once with the S3 request id.
fn classify<E>(
    key: &str,
    operation: &str,
    timeout: Duration,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let request_id = err.request_id().unwrap_or("-").to_owned();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let error = match &err {
        SdkError::TimeoutError(_) => StoreError::Timeout(timeout),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => StoreError::Timeout(timeout),
        _ if status == Some(404) => StoreError::NotFound {
            key: key.to_owned(),
        },
        _ => StoreError::Unavailable {
            message: format!(
                "S3 {operation} {key} failed (status {}, request id {request_id})",
                status.map_or("none".to_owned(), |s| s.to_string())
            ),
            source: Some(io::Error::other(
                aws_sdk_s3::error::DisplayErrorContext(err).to_string(),
            )),
        },
    };
    match &error {
        StoreError::NotFound { .. } => {}
        other => tracing::warn!(operation, key, request_id, error = %other, "S3 request failed"),
    }
    error
}
