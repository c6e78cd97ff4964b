//! The filesystem store: a local directory that holds `releases/`, confined with `cap-std`.
//!
//! All file I/O runs on Tokio's blocking pool. Opening a file, reading its metadata and, for
//! small files, its whole content happen in one blocking call, so a manifest or signature
//! costs one hop off the async workers.

use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use moka::future::Cache;

use super::ByteRange;
use super::key::KeyHasher;
use super::pool::BufferPool;
use super::{
    ByteStream, Conditional, Object, ObjectKey, ObjectMeta, ObjectSource, ObjectTtl, Precondition,
    StoreError,
};

/// Files up to this size are read whole when opened: one blocking hop serves the request.
const SMALL_FILE: u64 = 64 * 1024;

/// How much an open file handle counts against the cache of opened objects: bounds the
/// file descriptors held open (at most 128 when the cache holds handles only).
const HANDLE_WEIGHT: u32 = 512 * 1024;

/// How many file identities keep their computed ETag.
const ETAG_CACHE_ENTRIES: u64 = 100_000;

/// A file changed this recently may change again within the same timestamp tick without any
/// visible metadata change, so its hash is not cached (git's "racy" index entries).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Everything that changes when a file's content can have changed: a new file (publish
/// renames into place), a write (mtime, ctime), a truncate or append (size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileIdentity {
    fn of(md: &std::fs::Metadata) -> Self {
        Self {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }

    fn is_racy(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(i128::MAX);
        now - self.mtime_ns.max(self.ctime_ns) < RACY_WINDOW.as_nanos() as i128
    }
}

/// A local directory store.
pub struct FsStore {
    root: Arc<Dir>,
    /// Content hashes by file identity: the strong ETag of a file is the BLAKE3 of its bytes,
    /// so it changes whenever the content does and is the same on every node that serves the
    /// same files. Concurrent misses for one file hash it once.
    etags: Cache<FileIdentity, Arc<str>>,
    /// Opened objects with their metadata, reused for the key's TTL (an hour for immutable
    /// `releases/v*/` objects): small files (up to [`SMALL_FILE`]) with their bytes, so a
    /// manifest asked for thousands of times a second costs no file system call at all;
    /// larger ones as an open file handle, so a download or a range of an artifact costs no
    /// open and no stat. Bounded by weight: bytes, and [`HANDLE_WEIGHT`] per handle.
    opened: Cache<ObjectKey, (Object, Instant), KeyHasher>,
    /// Their read buffers, recycled.
    pool: BufferPool,
    ttl: ObjectTtl,
}

/// Bytes of small files kept in memory.
const SMALL_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The bytes of an opened file.
#[derive(Clone)]
enum FsSource {
    /// Small files, read whole when opened.
    Memory(Bytes),
    /// Larger files, read by position (`pread`) so that parts of one response never share a
    /// file offset.
    File(Arc<std::fs::File>),
}

/// An open file of the store, read by position.
#[derive(Clone)]
pub(super) struct FsFile {
    file: Arc<std::fs::File>,
    pool: BufferPool,
}

impl FsStore {
    /// Opens `root` as the store's root directory.
    pub fn new(root: &Path, ttl: ObjectTtl) -> Result<Self, StoreError> {
        let dir = Dir::open_ambient_dir(root, ambient_authority()).map_err(|err| {
            StoreError::Unavailable {
                message: format!("cannot open store root {}", root.display()),
                source: Some(err),
            }
        })?;
        Ok(Self {
            root: Arc::new(dir),
            etags: Cache::builder().max_capacity(ETAG_CACHE_ENTRIES).build(),
            opened: Cache::builder()
                .max_capacity(SMALL_CACHE_BYTES)
                .weigher(|_, (object, _): &(Object, Instant)| match &object.source {
                    ObjectSource::Memory(bytes) => {
                        u32::try_from(bytes.len() + 256).unwrap_or(u32::MAX)
                    }
                    _ => HANDLE_WEIGHT,
                })
                .expire_after(ttl.clone())
                .build_with_hasher(KeyHasher::default()),
            pool: BufferPool::default(),
            ttl,
        })
    }

    pub(super) async fn open(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        if let Some((object, learnt)) = self.opened.get(key).await
            && self.ttl.fresh(key, learnt)
        {
            return Ok(object);
        }
        let learnt = self.ttl.clock.now();
        let object = self.open_file(key).await?;
        if self.ttl.of(key).is_some() {
            self.opened
                .insert(key.clone(), (object.clone(), learnt))
                .await;
        }
        Ok(object)
    }

    async fn open_file(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        let root = Arc::clone(&self.root);
        let path = key.as_str().to_owned();
        let opened = tokio::task::spawn_blocking(move || open_blocking(&root, &path))
            .await
            .map_err(join_error)?
            .map_err(|err| StoreError::from_io(key, err))?;

        let identity = FileIdentity::of(&opened.metadata);
        let etag = if identity.is_racy() {
            hash_source(opened.source.clone()).await
        } else {
            let source = opened.source.clone();
            self.etags
                .try_get_with(identity, hash_source(source))
                .await
                .map_err(|err: Arc<io::Error>| io::Error::new(err.kind(), err.to_string()))
        }
        .map_err(|err| StoreError::from_io(key, err))?;

        Ok(Object {
            meta: ObjectMeta {
                size: identity.size,
                etag: format!("\"{etag}\""),
                last_modified: opened.metadata.modified().ok(),
                content_type: None,
            },
            source: match opened.source {
                FsSource::Memory(bytes) => ObjectSource::Memory(bytes),
                FsSource::File(file) => ObjectSource::Fs(FsFile {
                    file,
                    pool: self.pool.clone(),
                }),
            },
        })
    }

    pub(super) async fn probe(&self) -> Result<(), StoreError> {
        let root = Arc::clone(&self.root);
        // `releases/` itself, looked up by name: a root that was deleted or unmounted fails
        // here even though our directory handle stays open.
        tokio::task::spawn_blocking(move || root.metadata(super::key::RELEASES_PREFIX))
            .await
            .map_err(join_error)?
            .map(|_| ())
            .map_err(|err| StoreError::Unavailable {
                message: "store root is not readable".into(),
                source: Some(err),
            })
    }
}

/// Where uploads are written before they are renamed into place: inside the root (so the
/// rename is atomic, on the same filesystem) but outside `releases/`, so a half-written file
/// is never served, even when a killed publish leaves it behind.
const UPLOAD_DIR: &str = ".release-edge-uploads";

/// The lock file of conditional writes (policy documents), beside the uploads.
const LOCK_FILE: &str = ".release-edge-uploads/conditional.lock";

/// Writes `dest` from `fill` through a temporary file in [`UPLOAD_DIR`], `fsync`, then a
/// rename over the destination; a failed write leaves no partial file.
fn write_atomic<F>(root: &Dir, dest: &str, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut std::fs::File) -> io::Result<()>,
{
    root.create_dir_all(UPLOAD_DIR)?;
    let tmp = format!("{UPLOAD_DIR}/{:016x}.part", fastrand::u64(..));
    let written = (|| {
        let mut file = root.create(&tmp)?.into_std();
        fill(&mut file)?;
        file.sync_all()?;
        if let Some((parent, _)) = dest.rsplit_once('/') {
            root.create_dir_all(parent)?;
        }
        root.rename(&tmp, root, dest)
    })();
    if written.is_err() {
        let _ = root.remove_file(&tmp);
    }
    written
}

impl FsStore {
    /// Writes `len` bytes from `fill` to `key` atomically: a temporary file, `fsync`, then a
    /// rename over the destination. Readers see the old object or the new one, never part.
    pub(super) async fn put_with<F>(&self, key: &ObjectKey, fill: F) -> Result<(), StoreError>
    where
        F: FnOnce(&mut std::fs::File) -> io::Result<()> + Send + 'static,
    {
        let root = Arc::clone(&self.root);
        let dest = key.as_str().to_owned();
        let result = tokio::task::spawn_blocking(move || write_atomic(&root, &dest, fill))
            .await
            .map_err(join_error)?;
        self.opened.invalidate(key).await;
        result.map_err(|err| StoreError::from_io(key, err))
    }

    /// Writes `bytes` to `key` only when the object there is as `precondition` says, the
    /// compare and the write done under an exclusive lock on a file of the store (so two
    /// processes sharing the directory, a server and the CLI, cannot both win), the write
    /// atomic as [`FsStore::put_with`]'s.
    pub(super) async fn put_if(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> Result<Conditional, StoreError> {
        let root = Arc::clone(&self.root);
        let dest = key.as_str().to_owned();
        let result = tokio::task::spawn_blocking(move || -> io::Result<Conditional> {
            root.create_dir_all(UPLOAD_DIR)?;
            let mut options = cap_std::fs::OpenOptions::new();
            options.create(true).write(true);
            let lock = root.open_with(LOCK_FILE, &options)?.into_std();
            // Blocks until another writer's compare-and-write is done; released on drop.
            lock.lock()?;
            let current = match root.read(&dest) {
                Ok(existing) => Some(format!("\"{}\"", etag_of(blake3::hash(&existing)))),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    None
                }
                Err(err) => return Err(err),
            };
            let holds = match &precondition {
                Precondition::Absent => current.is_none(),
                Precondition::Matches(etag) => current.as_deref() == Some(etag.as_str()),
            };
            if !holds {
                return Ok(Conditional::Failed { current });
            }
            let etag = format!("\"{}\"", etag_of(blake3::hash(&bytes)));
            write_atomic(&root, &dest, move |out| {
                std::io::Write::write_all(out, &bytes)
            })?;
            Ok(Conditional::Written { etag })
        })
        .await
        .map_err(join_error)?;
        self.opened.invalidate(key).await;
        result.map_err(|err| StoreError::from_io(key, err))
    }

    /// SHA-512 of an object's bytes, or `None` when there is no such object.
    pub(super) async fn sha512(&self, key: &ObjectKey) -> Result<Option<[u8; 64]>, StoreError> {
        let root = Arc::clone(&self.root);
        let path = key.as_str().to_owned();
        let result = tokio::task::spawn_blocking(move || -> io::Result<Option<[u8; 64]>> {
            let file = match root.open(&path) {
                Ok(file) => file.into_std(),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err),
            };
            if !file.metadata()?.is_file() {
                return Ok(None);
            }
            super::sha512_file(file).map(|(digest, _)| Some(digest))
        })
        .await
        .map_err(join_error)?;
        result.map_err(|err| StoreError::from_io(key, err))
    }

    /// The names of the objects directly under `prefix` (a directory), sorted.
    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(names(self.list_entries(prefix, false).await?))
    }

    /// Names of the directories directly under `prefix`.
    pub(super) async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(names(self.list_entries(prefix, true).await?))
    }

    /// The files directly under `prefix` with their sizes (for `mirror` and `status`).
    pub(super) async fn list_sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.list_entries(prefix, false).await
    }

    /// Names and sizes of the files (or, with `dirs`, names of the directories, size 0)
    /// directly under `prefix`, sorted; none when `prefix` does not exist.
    async fn list_entries(
        &self,
        prefix: &str,
        dirs: bool,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let root = Arc::clone(&self.root);
        let dir = prefix.trim_end_matches('/').to_owned();
        let result = tokio::task::spawn_blocking(move || -> io::Result<Vec<(String, u64)>> {
            let entries = match root.read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(err) => return Err(err),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry?;
                let kind = entry.file_type()?;
                let wanted = if dirs { kind.is_dir() } else { kind.is_file() };
                if wanted && let Ok(name) = entry.file_name().into_string() {
                    let size = if dirs { 0 } else { entry.metadata()?.len() };
                    names.push((name, size));
                }
            }
            names.sort();
            Ok(names)
        })
        .await
        .map_err(join_error)?;
        result.map_err(|err| StoreError::Unavailable {
            message: format!("listing {prefix}"),
            source: Some(err),
        })
    }
}

struct Opened {
    metadata: std::fs::Metadata,
    source: FsSource,
}

fn open_blocking(root: &Dir, path: &str) -> io::Result<Opened> {
    let file = root.open(path)?.into_std();
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    let source = if metadata.len() <= SMALL_FILE {
        FsSource::Memory(read_at(&file, 0, metadata.len() as usize)?)
    } else {
        FsSource::File(Arc::new(file))
    };
    Ok(Opened { metadata, source })
}

async fn hash_source(source: FsSource) -> io::Result<Arc<str>> {
    match source {
        FsSource::Memory(bytes) => Ok(etag_of(blake3::hash(&bytes))),
        FsSource::File(file) => tokio::task::spawn_blocking(move || {
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1024 * 1024];
            let mut offset = 0u64;
            loop {
                let n = file.read_at(&mut buf, offset)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Ok(etag_of(hasher.finalize()))
        })
        .await
        .map_err(io::Error::other)?,
    }
}

/// 128 bits of the content hash, hex: plenty against collisions, short on the wire.
fn etag_of(hash: blake3::Hash) -> Arc<str> {
    let hex = hash.to_hex();
    Arc::from(&hex.as_str()[..32])
}

/// The names of a listing.
fn names(entries: Vec<(String, u64)>) -> Vec<String> {
    entries.into_iter().map(|(name, _)| name).collect()
}

fn join_error(err: tokio::task::JoinError) -> StoreError {
    StoreError::Unavailable {
        message: "blocking file task failed".into(),
        source: Some(io::Error::other(err)),
    }
}

impl FsFile {
    /// Streams `range` in chunks read on the blocking pool into pooled buffers, growing from
    /// 64 KiB to 1 MiB while the pool's budget allows ([`BufferPool::lend`]). A file
    /// that shrank under us ends the stream with an error, never with short data.
    pub(super) fn read(&self, range: ByteRange) -> ByteStream {
        let end = range.end + 1;
        let pool = self.pool.clone();
        Box::pin(futures_util::stream::try_unfold(
            (Arc::clone(&self.file), range.start, 0usize),
            move |(file, pos, last)| {
                let pool = pool.clone();
                async move {
                    if pos >= end {
                        return Ok(None);
                    }
                    let loan = pool.lend(last, end - pos);
                    let len = loan.len();
                    let reader = Arc::clone(&file);
                    let chunk = tokio::task::spawn_blocking(move || loan.read_at(&reader, pos))
                        .await
                        .map_err(io::Error::other)??;
                    Ok(Some((chunk, (file, pos + len as u64, len))))
                }
            },
        ))
    }
}

/// Exactly `len` bytes of `file` at `pos`, read straight into a fresh buffer (`pread` into
/// its spare capacity: no zero-filling first), for a small file kept whole in memory. A file
/// that ends before is an error.
fn read_at(file: &std::fs::File, pos: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let offset = pos + buf.len() as u64;
        let read = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), offset)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended before the range did",
            ));
        }
    }
    // The allocation may be larger than asked: a read may have gone past the range.
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Conditional, Precondition};
    use futures_util::TryStreamExt;

    fn no_reuse() -> ObjectTtl {
        ObjectTtl {
            mutable: Duration::ZERO,
            immutable: Duration::ZERO,
            clock: crate::clock::Clock::system(),
        }
    }

    async fn collect(stream: ByteStream) -> Vec<u8> {
        stream
            .try_fold(Vec::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await
            .unwrap()
    }

    fn store_with(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, FsStore) {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
        let store = FsStore::new(dir.path(), no_reuse()).unwrap();
        (dir, store)
    }

    fn key(path: &str) -> ObjectKey {
        ObjectKey::from_trusted(path).unwrap()
    }

    #[tokio::test]
    async fn small_and_large_files_read_exact_ranges() {
        let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (_dir, store) = store_with(&[
            ("releases/v1/small.yml", b"version: 1.0.0\n".to_vec()),
            ("releases/v1/large.bin", large.clone()),
        ]);
        let small = store.open(&key("releases/v1/small.yml")).await.unwrap();
        assert_eq!(small.meta.size, 15);
        let got = collect(small.read(ByteRange { start: 9, end: 13 })).await;
        assert_eq!(got, b"1.0.0");

        let object = store.open(&key("releases/v1/large.bin")).await.unwrap();
        assert_eq!(object.meta.size, 300_000);
        let range = ByteRange {
            start: 65_000,
            end: 200_123,
        };
        let got = collect(object.read(range)).await;
        assert_eq!(got, large[65_000..=200_123]);
    }

    #[tokio::test]
    async fn etag_is_strong_content_hash_and_changes_with_content() {
        let (dir, store) = store_with(&[("releases/v1/a.bin", vec![1; 100])]);
        let first = store.open(&key("releases/v1/a.bin")).await.unwrap();
        assert!(first.meta.etag.starts_with('"') && first.meta.etag.ends_with('"'));
        assert_eq!(first.meta.etag.len(), 34);
        let again = store.open(&key("releases/v1/a.bin")).await.unwrap();
        assert_eq!(first.meta.etag, again.meta.etag);

        // Same size, rewritten immediately: the identity may not change, the hash must.
        std::fs::write(dir.path().join("releases/v1/a.bin"), vec![2; 100]).unwrap();
        let changed = store.open(&key("releases/v1/a.bin")).await.unwrap();
        assert_ne!(first.meta.etag, changed.meta.etag);

        // The same bytes elsewhere have the same ETag: nodes agree without talking.
        let (_dir2, other) = store_with(&[("releases/v1/a.bin", vec![2; 100])]);
        let twin = other.open(&key("releases/v1/a.bin")).await.unwrap();
        assert_eq!(changed.meta.etag, twin.meta.etag);
    }

    #[tokio::test]
    async fn atomic_put_list_and_digest() {
        use sha2::Digest;
        let (dir, store) = store_with(&[("releases/v1/old.bin", vec![1; 10])]);
        store
            .put_with(&key("releases/v2/new.bin"), |f| {
                std::io::Write::write_all(f, b"new bytes")
            })
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("releases/v2/new.bin")).unwrap(),
            b"new bytes"
        );
        let failed = store
            .put_with(&key("releases/v1/old.bin"), |f| {
                std::io::Write::write_all(f, b"half")?;
                Err(io::Error::other("disk full"))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            std::fs::read(dir.path().join("releases/v1/old.bin")).unwrap(),
            vec![1; 10],
            "a failed write leaves the old object"
        );
        let leftovers = std::fs::read_dir(dir.path().join(UPLOAD_DIR))
            .unwrap()
            .count();
        assert_eq!(leftovers, 0, "and no partial file");
        assert_eq!(store.list("releases/v2").await.unwrap(), ["new.bin"]);
        assert!(store.list("releases/v9").await.unwrap().is_empty());
        let digest: [u8; 64] = sha2::Sha512::digest(b"new bytes").into();
        assert_eq!(
            store.sha512(&key("releases/v2/new.bin")).await.unwrap(),
            Some(digest)
        );
        assert_eq!(store.sha512(&key("releases/v2/none")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn missing_directories_and_escapes_are_not_found() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        let (dir, store) = store_with(&[("releases/v1/a.bin", vec![1; 10])]);
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            dir.path().join("releases/v1/link"),
        )
        .unwrap();
        for path in ["releases/v1/none", "releases/v1", "releases/v1/link"] {
            match store.open(&key(path)).await {
                Err(StoreError::NotFound { .. }) => {}
                Err(other) => panic!("{path}: {other}"),
                Ok(_) => panic!("{path}: opened"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conditional_writes_compare_and_swap() {
        let (dir, store) = store_with(&[]);
        let key = key("policy/latest.json");
        let put = |bytes: &'static [u8], precondition| {
            store.put_if(&key, Bytes::from_static(bytes), precondition)
        };
        let Conditional::Written { etag: first } = put(b"one", Precondition::Absent).await.unwrap()
        else {
            panic!("created");
        };
        assert_eq!(
            put(b"two", Precondition::Absent).await.unwrap(),
            Conditional::Failed {
                current: Some(first.clone())
            }
        );
        assert_eq!(
            put(b"two", Precondition::Matches("\"other\"".into()))
                .await
                .unwrap(),
            Conditional::Failed {
                current: Some(first.clone())
            }
        );
        let Conditional::Written { etag: second } =
            put(b"two", Precondition::Matches(first.clone()))
                .await
                .unwrap()
        else {
            panic!("replaced");
        };
        assert_eq!(
            std::fs::read(dir.path().join("policy/latest.json")).unwrap(),
            b"two"
        );
        assert_eq!(
            store.open(&key).await.unwrap().meta.etag,
            second,
            "the ETag reads give"
        );
        // Many writers with the same precondition, from two stores on one directory (two
        // processes): exactly one wins.
        let other = FsStore::new(dir.path(), no_reuse()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..16u8 {
            let (store, key, etag) = (
                FsStore::new(dir.path(), no_reuse()).unwrap(),
                key.clone(),
                second.clone(),
            );
            tasks.push(tokio::spawn(async move {
                store
                    .put_if(&key, Bytes::from(vec![i; 10]), Precondition::Matches(etag))
                    .await
                    .unwrap()
            }));
        }
        let mut won = 0;
        for task in tasks {
            if matches!(task.await.unwrap(), Conditional::Written { .. }) {
                won += 1;
            }
        }
        assert_eq!(won, 1, "exactly one writer wins");
        assert!(other.open(&key).await.is_ok());
    }
}
