//! The object store behind release-edge: one closed set of backends, picked by config.
//!
//! Every backend answers the same two questions: what is this object (its [`ObjectMeta`]),
//! and give me these bytes of it (a [`ByteStream`]). Handlers never see which backend
//! answered. Another origin's object (a private GitHub asset) is served the same way through
//! [`Object::external`] and its [`ByteSource`].

pub mod fs;
pub mod key;
pub mod parts;
mod pool;
mod range;
pub mod s3;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::Stream;

use crate::clock::Clock;
use crate::config::{CacheConfig, StoreConfig, StoreKind};
use key::KeyKind;

/// How long the store's answer about an immutable object is reused.
const IMMUTABLE_OBJECT_TTL: Duration = Duration::from_secs(3600);

/// How long a backend may reuse what it learnt about an object (metadata; a small file's
/// bytes), by kind of key. A zero duration means "do not reuse".
#[derive(Debug, Clone)]
pub struct ObjectTtl {
    /// `releases/latest/...` and other mutable keys.
    pub mutable: Duration,
    /// `releases/v*/...`.
    pub immutable: Duration,
    /// The clock freshness is judged by.
    pub clock: Clock,
}

impl ObjectTtl {
    /// The TTL for `key`, `None` when it must not be cached.
    pub fn of(&self, key: &ObjectKey) -> Option<Duration> {
        let ttl = match key.kind() {
            KeyKind::Versioned => self.immutable,
            KeyKind::Mutable => self.mutable,
            // Read fresh every time: the admin API compares its ETag before it writes, and
            // the feeds hold it in the manifest cache anyway.
            KeyKind::Policy => return None,
        };
        (!ttl.is_zero()).then_some(ttl)
    }

    /// Whether what was learnt about `key` at `learnt` may still be used.
    pub fn fresh(&self, key: &ObjectKey, learnt: Instant) -> bool {
        self.of(key)
            .is_some_and(|ttl| self.clock.since(learnt) < ttl)
    }
}

/// Memory backstop: the caches drop an entry after its TTL of real time. Whether an entry
/// may be used is decided by [`ObjectTtl::fresh`], on the injected clock.
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
pub use key::ObjectKey;
pub use range::ByteRange;

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

/// What a conditional write requires of the object it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// There is no object at the key yet.
    Absent,
    /// The object's ETag (quoted) is this one.
    Matches(String),
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// Written; the new object's ETag.
    Written {
        /// Quoted, as the store gives it.
        etag: String,
    },
    /// The object was not as required: nothing written. Its ETag now, when there is one.
    Failed {
        /// Quoted; `None` when there is no object.
        current: Option<String>,
    },
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
        Self::with_credentials(config, cache, None, Clock::system())
    }

    /// As [`Store::from_config`], with explicit S3 credentials instead of the AWS chain (a
    /// test's S3 server), and the clock that judges what may be reused.
    pub fn with_credentials(
        config: &StoreConfig,
        cache: &CacheConfig,
        credentials: Option<aws_sdk_s3::config::Credentials>,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let ttl = ObjectTtl {
            mutable: cache.object_ttl,
            immutable: IMMUTABLE_OBJECT_TTL,
            clock,
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

    /// Writes `bytes` to `key` only when `precondition` holds, deciding and writing in one
    /// step that no other writer can come between (filesystem: a lock file; S3: a
    /// conditional `PutObject`). The write is atomic as [`Store::put_bytes`]'s.
    pub async fn put_bytes_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> Result<Conditional, StoreError> {
        let put = async {
            match &self.backend {
                Backend::Fs(store) => store.put_if(key, bytes, precondition).await,
                Backend::S3(store) => store.put_if(key, bytes, precondition).await,
            }
        };
        tokio::time::timeout(self.timeout, put)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
    }

    /// A small object's bytes and its ETag (quoted), or `None` when there is none.
    pub async fn get_with_etag(
        &self,
        key: &ObjectKey,
        max: u64,
    ) -> Result<Option<(Bytes, String)>, StoreError> {
        let object = match self.open(key).await {
            Ok(object) => object,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        if object.meta.size > max {
            return Err(StoreError::Unavailable {
                message: format!(
                    "{key} is {} bytes, over the {max} a document may have",
                    object.meta.size
                ),
                source: None,
            });
        }
        let bytes = object.read_all(key).await?;
        Ok(Some((bytes, object.meta.etag)))
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

    /// The objects directly under the directory `prefix`, with their sizes (a listing: no
    /// object is opened or read).
    pub async fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let list = async {
            match &self.backend {
                Backend::Fs(store) => store.list_sizes(prefix).await,
                Backend::S3(store) => store.list_sizes(prefix).await,
            }
        };
        tokio::time::timeout(self.timeout, list)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
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

    /// A presigned URL that lets a client `GET` `key` straight from the bucket (for a while:
    /// `store.presign_ttl`), with `disposition` as its `Content-Disposition`; `None` for a
    /// store that has no such URLs (the filesystem).
    pub async fn presigned_get(
        &self,
        key: &ObjectKey,
        disposition: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Fs(_) => Ok(None),
            Backend::S3(store) => {
                let presign = store.presigned_get(key, disposition);
                tokio::time::timeout(self.timeout, presign)
                    .await
                    .map_err(|_| StoreError::Timeout(self.timeout))?
                    .map(Some)
            }
        }
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

/// Where an object's bytes come from when they are not in the store: another origin (a
/// private GitHub asset, streamed through). The origin implements it; the store layer only
/// calls it, so serving such an object is the same as serving one of the store.
pub trait ByteSource: Send + Sync {
    /// Streams `range` of the object. Nothing is read until the stream is polled, and the
    /// read stops when the stream is dropped.
    fn read(&self, range: ByteRange) -> ByteStream;
}

#[derive(Clone)]
enum ObjectSource {
    /// Held in memory: a small file read whole, or a last good copy.
    Memory(Bytes),
    /// A file of the filesystem store.
    Fs(fs::FsFile),
    /// An object of a bucket.
    S3(s3::S3Source),
    /// Bytes from another origin.
    External(Arc<dyn ByteSource>),
    /// A copy held in memory of an object that came from `origin`.
    Kept { bytes: Bytes, origin: ObjectOrigin },
}

/// Where the bytes of an [`Object`] come from, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectOrigin {
    /// The store (or a copy of what it gave).
    Store,
    /// Another origin, through [`Object::external`] (or a copy of what it gave).
    External,
    /// A last good copy, served because every origin failed.
    Stale,
}

impl Object {
    /// An object held in memory (a last good copy).
    pub fn from_bytes(meta: ObjectMeta, bytes: Bytes) -> Self {
        Self {
            meta,
            source: ObjectSource::Memory(bytes),
        }
    }

    /// An object whose bytes come from elsewhere (another origin), described by `meta`.
    pub fn external(meta: ObjectMeta, source: Arc<dyn ByteSource>) -> Self {
        Self {
            meta,
            source: ObjectSource::External(source),
        }
    }

    /// How far apart two ranges of this object may be and still be read with one request
    /// (see [`parts`]): remote objects only.
    pub fn read_gap(&self) -> u64 {
        match self.source {
            ObjectSource::S3(_) | ObjectSource::External(_) => parts::REMOTE_GAP,
            ObjectSource::Memory(_) | ObjectSource::Kept { .. } | ObjectSource::Fs(_) => 0,
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
        let bytes = match &self.source {
            ObjectSource::Kept { bytes, .. } | ObjectSource::Memory(bytes) => bytes.clone(),
            _ => return self.clone(),
        };
        Self {
            meta: self.meta.clone(),
            source: ObjectSource::Kept {
                bytes,
                origin: ObjectOrigin::Stale,
            },
        }
    }

    /// Where its bytes come from.
    pub fn origin(&self) -> ObjectOrigin {
        match &self.source {
            ObjectSource::Memory(_) | ObjectSource::Fs(_) | ObjectSource::S3(_) => {
                ObjectOrigin::Store
            }
            ObjectSource::External(_) => ObjectOrigin::External,
            ObjectSource::Kept { origin, .. } => *origin,
        }
    }

    /// Its bytes, when they are already in memory.
    fn in_memory(&self) -> Option<Bytes> {
        match &self.source {
            ObjectSource::Memory(bytes) | ObjectSource::Kept { bytes, .. } => Some(bytes.clone()),
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
            ObjectSource::Memory(bytes) => read_memory(bytes, range),
            ObjectSource::Fs(file) => file.read(range),
            ObjectSource::S3(source) => source.read(range),
            ObjectSource::External(source) => source.read(range),
            ObjectSource::Kept { bytes, .. } => read_memory(bytes, range),
        }
    }
}

/// SHA-512 and length of a local file's bytes, read in 1 MiB pieces (blocking: call it off
/// the async workers). The one place a file is hashed, for publish's checks and the stores.
pub fn sha512_file(file: std::fs::File) -> io::Result<([u8; 64], u64)> {
    use sha2::Digest;
    let mut hasher = sha2::Sha512::new();
    let size = io::copy(
        &mut io::BufReader::with_capacity(1 << 20, file),
        &mut hasher,
    )?;
    Ok((hasher.finalize().into(), size))
}

/// `range` of bytes held in memory, as a one-chunk stream.
fn read_memory(bytes: &Bytes, range: ByteRange) -> ByteStream {
    let slice = usize::try_from(range.start)
        .ok()
        .zip(usize::try_from(range.end).ok())
        .filter(|&(start, end)| start <= end && end < bytes.len());
    let item = match slice {
        Some((start, end)) => Ok(bytes.slice(start..=end)),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "range outside the object",
        )),
    };
    Box::pin(futures_util::stream::iter([item]))
}
