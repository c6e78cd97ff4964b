//! The object store behind release-edge: one closed set of backends, picked by config.
//!
//! Every backend answers the same two questions: what is this object (its [`ObjectMeta`]),
//! and give me these bytes of it (a [`ByteStream`]). Handlers never see which backend
//! answered, so S3 and GitHub Releases slot in beside the filesystem without touching them.

pub mod fs;
pub mod github;
pub mod key;
pub mod s3;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::Stream;

use crate::config::{CacheConfig, StoreConfig, StoreKind};
use key::KeyKind;

/// How long the store's answer about an immutable object is reused.
const IMMUTABLE_OBJECT_TTL: Duration = Duration::from_secs(3600);

/// How long a backend may reuse what it learnt about an object (metadata; a small file's
/// bytes), by kind of key. A zero duration means "do not reuse".
#[derive(Debug, Clone, Copy)]
pub struct ObjectTtl {
    /// `releases/latest/...` and other mutable keys.
    pub mutable: Duration,
    /// `releases/v*/...`.
    pub immutable: Duration,
}

impl ObjectTtl {
    /// The TTL for `key`, `None` when it must not be cached.
    pub fn of(&self, key: &ObjectKey) -> Option<Duration> {
        let ttl = match key.kind() {
            KeyKind::Versioned => self.immutable,
            KeyKind::Mutable => self.mutable,
        };
        (!ttl.is_zero()).then_some(ttl)
    }
}

impl<V> moka::Expiry<ObjectKey, V> for ObjectTtl {
    fn expire_after_create(
        &self,
        key: &ObjectKey,
        _value: &V,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.of(key).unwrap_or(Duration::ZERO))
    }
}
use crate::http::conditional::ByteRange;
pub use key::ObjectKey;

/// Upload progress: called with the bytes written so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// A stream of object bytes. Dropping it stops the read from the store.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// What the store knows of an object: enough to answer `HEAD` and evaluate preconditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Length in bytes.
    pub size: u64,
    /// Strong entity tag, quoted as it goes on the wire (`"..."`).
    pub etag: String,
    /// Modification time, if the store keeps one.
    pub last_modified: Option<SystemTime>,
    /// `Content-Type` the store recorded, if any (S3 metadata); else it is guessed from the key.
    pub content_type: Option<String>,
}

/// Why the store could not answer. Each gets its HTTP meaning in `crate::error`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object (or it is not a regular file, or it lies outside the root).
    #[error("object not found: {key}")]
    NotFound {
        /// The key that was asked for.
        key: String,
    },
    /// The store did not answer in time.
    #[error("the store timed out after {0:?}")]
    Timeout(Duration),
    /// The store refused or failed in a way a retry may fix (I/O error, throttling, denied).
    #[error("the store is unavailable: {message}")]
    Unavailable {
        /// What went wrong, for the log.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<io::Error>,
    },
}

impl StoreError {
    /// A copy for each waiter of a coalesced request (moka shares one error among them).
    pub fn duplicate(&self) -> Self {
        match self {
            StoreError::NotFound { key } => StoreError::NotFound { key: key.clone() },
            StoreError::Timeout(after) => StoreError::Timeout(*after),
            StoreError::Unavailable { message, source } => StoreError::Unavailable {
                message: message.clone(),
                source: source
                    .as_ref()
                    .map(|s| io::Error::new(s.kind(), s.to_string())),
            },
        }
    }

    fn from_io(key: &ObjectKey, err: io::Error) -> Self {
        match err.kind() {
            // A path that escapes the root is reported by cap-std as PermissionDenied; a
            // directory or a path through a file as NotADirectory/IsADirectory. To a client
            // all of these are "no such object".
            io::ErrorKind::NotFound
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::IsADirectory
            | io::ErrorKind::InvalidFilename => StoreError::NotFound {
                key: key.to_string(),
            },
            _ => StoreError::Unavailable {
                message: format!("reading {key}"),
                source: Some(err),
            },
        }
    }
}

/// The configured object store: a backend plus the time limit every operation runs under.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    timeout: Duration,
}

/// The closed set of backends.
#[derive(Clone)]
enum Backend {
    /// A local directory holding `releases/` (the embedded default).
    Fs(Arc<fs::FsStore>),
    /// A bucket.
    S3(Arc<s3::S3Store>),
}

impl Store {
    /// Builds the store named by the config; S3 credentials come from the AWS chain.
    pub fn from_config(config: &StoreConfig, cache: &CacheConfig) -> Result<Self, StoreError> {
        Self::with_credentials(config, cache, None)
    }

    /// As [`Store::from_config`], with explicit S3 credentials instead of the AWS chain.
    pub fn with_credentials(
        config: &StoreConfig,
        cache: &CacheConfig,
        credentials: Option<aws_sdk_s3::config::Credentials>,
    ) -> Result<Self, StoreError> {
        let ttl = ObjectTtl {
            mutable: cache.object_ttl,
            immutable: IMMUTABLE_OBJECT_TTL,
        };
        let backend = match config.kind {
            StoreKind::Fs => Backend::Fs(Arc::new(fs::FsStore::new(&config.root, ttl)?)),
            StoreKind::S3 => Backend::S3(Arc::new(s3::S3Store::new(config, ttl, credentials))),
            StoreKind::None => {
                return Err(StoreError::Unavailable {
                    message: "no store is configured (store.kind = \"none\")".into(),
                    source: None,
                });
            }
        };
        Ok(Self {
            backend,
            timeout: config.timeout,
        })
    }

    /// Opens an object: its metadata now, its bytes on demand through [`Object::read`].
    pub async fn open(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        let open = async {
            match &self.backend {
                Backend::Fs(store) => store.open(key).await,
                Backend::S3(store) => store.open(key).await,
            }
        };
        tokio::time::timeout(self.timeout, open)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
    }

    /// A cheap request that proves the store answers (for `/readyz`).
    pub async fn probe(&self) -> Result<(), StoreError> {
        let probe = async {
            match &self.backend {
                Backend::Fs(store) => store.probe().await,
                Backend::S3(store) => store.probe().await,
            }
        };
        tokio::time::timeout(self.timeout, probe)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
    }

    /// Writes a local file to `key`, atomically (readers never see part of it).
    /// `progress` is called with the bytes written so far.
    pub async fn put_file(
        &self,
        key: &ObjectKey,
        local: &std::path::Path,
        sha512: Option<[u8; 64]>,
        progress: Progress,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::S3(store) => store.put_file(key, local, sha512, progress).await,
            Backend::Fs(store) => {
                let local = local.to_path_buf();
                store
                    .put_with(key, move |out| {
                        let mut input = std::fs::File::open(&local)?;
                        let mut buf = vec![0u8; 1 << 20];
                        let mut done = 0u64;
                        loop {
                            let n = std::io::Read::read(&mut input, &mut buf)?;
                            if n == 0 {
                                return Ok(());
                            }
                            std::io::Write::write_all(out, &buf[..n])?;
                            done += n as u64;
                            progress(done);
                        }
                    })
                    .await
            }
        }
    }

    /// Writes `bytes` to `key`, atomically.
    pub async fn put_bytes(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StoreError> {
        match &self.backend {
            Backend::S3(store) => store.put_bytes(key, bytes).await,
            Backend::Fs(store) => {
                store
                    .put_with(key, move |out| std::io::Write::write_all(out, &bytes))
                    .await
            }
        }
    }

    /// The whole of a small object, or `None` when there is none. An object over `max`
    /// bytes is not what the caller is looking for (a manifest): it counts as missing.
    pub async fn get_bytes(&self, key: &ObjectKey, max: u64) -> Result<Option<Bytes>, StoreError> {
        let object = match self.open(key).await {
            Ok(object) => object,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        if object.meta.size > max {
            tracing::warn!(key = %key, size = object.meta.size, max, "object too large; treated as missing");
            return Ok(None);
        }
        object.read_all(key).await.map(Some)
    }

    /// SHA-512 of an object's bytes, or `None` when there is no such object.
    pub async fn sha512(&self, key: &ObjectKey) -> Result<Option<[u8; 64]>, StoreError> {
        match &self.backend {
            Backend::Fs(store) => store.sha512(key).await,
            Backend::S3(store) => store.sha512(key).await,
        }
    }

    /// Names of the objects directly under the directory `prefix` (`releases/v1.2.0`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Fs(store) => store.list(prefix).await,
            Backend::S3(store) => store.list(prefix).await,
        }
    }

    /// Every release version in the store (`releases/v{version}/`), oldest first in semver
    /// order. Directories whose name is not `v` and a semver version are left out.
    pub async fn list_versions(&self) -> Result<Vec<semver::Version>, StoreError> {
        let list = async {
            match &self.backend {
                Backend::Fs(store) => store.list_dirs(key::RELEASES_PREFIX).await,
                Backend::S3(store) => store.list_dirs(key::RELEASES_PREFIX).await,
            }
        };
        let names = tokio::time::timeout(self.timeout, list)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))??;
        let mut versions: Vec<semver::Version> = names
            .iter()
            .filter_map(|name| name.strip_prefix('v'))
            .filter_map(|v| semver::Version::parse(v).ok())
            .collect();
        versions.sort();
        versions.dedup();
        Ok(versions)
    }

    /// Short name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Fs(_) => "fs",
            Backend::S3(_) => "s3",
        }
    }
}

/// An opened object. Reads are pinned to the version whose metadata was returned: the
/// filesystem keeps the opened file, object stores send `If-Match` with its ETag.
#[derive(Clone)]
pub struct Object {
    /// Its metadata.
    pub meta: ObjectMeta,
    source: ObjectSource,
}

#[derive(Clone)]
enum ObjectSource {
    Fs(fs::FsSource),
    S3(s3::S3Source),
    GitHub(github::GitHubSource),
    /// A copy held in memory of an object that came from `origin`.
    Kept {
        bytes: Bytes,
        origin: ObjectOrigin,
    },
}

/// Where the bytes of an [`Object`] come from, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectOrigin {
    /// The object store (or a copy of what it gave).
    Store,
    /// GitHub Releases (or a copy of what it gave).
    GitHub,
    /// A last good copy, served because every origin failed.
    Stale,
}

impl ObjectOrigin {
    /// The `origin` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectOrigin::Store => "store",
            ObjectOrigin::GitHub => "github",
            ObjectOrigin::Stale => "stale",
        }
    }
}

impl Object {
    /// An object held in memory (a last good copy).
    pub fn from_bytes(meta: ObjectMeta, bytes: Bytes) -> Self {
        Self {
            meta,
            source: ObjectSource::Fs(fs::FsSource::Memory(bytes)),
        }
    }

    /// A copy of this object held in memory, `bytes` being its whole content; it reports
    /// the origin this object came from.
    pub fn kept_copy(&self, bytes: Bytes) -> Self {
        Self {
            meta: self.meta.clone(),
            source: ObjectSource::Kept {
                bytes,
                origin: self.origin(),
            },
        }
    }

    /// This object, served as a last good copy because every origin failed.
    pub fn as_stale(&self) -> Self {
        match &self.source {
            ObjectSource::Kept { bytes, .. } => Self {
                meta: self.meta.clone(),
                source: ObjectSource::Kept {
                    bytes: bytes.clone(),
                    origin: ObjectOrigin::Stale,
                },
            },
            _ => self.clone(),
        }
    }

    /// Where its bytes come from.
    pub fn origin(&self) -> ObjectOrigin {
        match &self.source {
            ObjectSource::Fs(_) | ObjectSource::S3(_) => ObjectOrigin::Store,
            ObjectSource::GitHub(_) => ObjectOrigin::GitHub,
            ObjectSource::Kept { origin, .. } => *origin,
        }
    }

    /// Its bytes, when they are already in memory.
    pub fn in_memory(&self) -> Option<Bytes> {
        match &self.source {
            ObjectSource::Fs(fs::FsSource::Memory(bytes)) | ObjectSource::Kept { bytes, .. } => {
                Some(bytes.clone())
            }
            _ => None,
        }
    }

    /// Reads the whole object (`key` names it in errors). For small objects only.
    pub async fn read_all(&self, key: &ObjectKey) -> Result<Bytes, StoreError> {
        use futures_util::StreamExt;
        if let Some(bytes) = self.in_memory() {
            return Ok(bytes);
        }
        let Some(whole) = ByteRange::whole(self.meta.size) else {
            return Ok(Bytes::new());
        };
        let mut stream = self.read(whole);
        let mut buf = bytes::BytesMut::with_capacity(usize::try_from(self.meta.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(|err| StoreError::Unavailable {
                message: format!("reading {key}"),
                source: Some(err),
            })?);
        }
        if buf.len() as u64 != self.meta.size {
            return Err(StoreError::Unavailable {
                message: format!("{key} changed size while read"),
                source: None,
            });
        }
        Ok(buf.freeze())
    }

    /// Streams `range` of the object. Nothing is read until the stream is polled, and the
    /// read stops when the stream is dropped (the client went away).
    pub fn read(&self, range: ByteRange) -> ByteStream {
        match &self.source {
            ObjectSource::Fs(source) => source.read(range),
            ObjectSource::S3(source) => source.read(range),
            ObjectSource::GitHub(source) => source.read(range),
            ObjectSource::Kept { bytes, .. } => fs::FsSource::Memory(bytes.clone()).read(range),
        }
    }
}
