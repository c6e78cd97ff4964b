//! The manifest cache: parsed channel files, Tauri manifests, `RELEASES` files and
//! signatures, held in memory (moka) so that an update check is answered without touching
//! an origin.
//!
//! - Concurrent misses for one key make one origin read (moka's `try_get_with` coalesces).
//! - A found manifest is fresh for `cache.manifest_ttl`. After that it is still served at
//!   once while one background task revalidates it (stale-while-revalidate): a slow origin
//!   never adds latency to an update check.
//! - When the revalidation fails (store and GitHub both), the last good copy keeps being
//!   served, for up to `cache.stale_if_error` after it was last confirmed.
//! - Missing manifests (no origin has one, or it does not parse) are remembered briefly so
//!   that a storm of checks for a channel that does not exist is not a storm of reads.
//! - Memory is bounded by weight (bytes), not entry count.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::origin::Origins;
use crate::release::electron::{ChannelFile, ElectronManifest};
use crate::release::squirrel::SquirrelReleases;
use crate::release::tauri::TauriManifest;
use crate::store::{ObjectKey, StoreError};

/// Largest manifest read into memory; a bigger object is not a manifest.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Total weight (about the bytes held) of the cache.
const MAX_WEIGHT: u64 = 64 * 1024 * 1024;

/// How long "not there" is remembered (at most; never longer than the TTL).
const MISSING_TTL: Duration = Duration::from_secs(5);

/// After a failed revalidation, how long the stale copy is served before trying again
/// (at most; never longer than the TTL).
const RETRY_GAP: Duration = Duration::from_secs(5);

/// A manifest as the handlers use it; cloning one clones an `Arc`.
#[derive(Debug, Clone)]
pub enum Manifest {
    /// An electron-builder channel file.
    Electron(Arc<ElectronManifest>),
    /// A Tauri static manifest.
    Tauri(Arc<TauriManifest>),
    /// A Squirrel.Windows `RELEASES` file.
    Squirrel(Arc<SquirrelReleases>),
    /// A signature (`.sig`), trimmed.
    Signature(Arc<str>),
}

impl Manifest {
    /// Parses `bytes` by the kind of file `key` names; `None` when it does not parse.
    fn parse(key: &ObjectKey, bytes: &[u8], public_url: &str) -> Option<Self> {
        let name = key.file_name();
        if name.ends_with(".yml") {
            let file = ChannelFile::parse(name)?;
            match ElectronManifest::parse(bytes, &file, public_url) {
                Ok(m) => Some(Manifest::Electron(Arc::new(m))),
                Err(err) => {
                    tracing::warn!(key = %key, error = %err, "channel file does not parse; treated as missing");
                    None
                }
            }
        } else if name.ends_with(".json") {
            TauriManifest::parse(bytes, public_url).map(|m| Manifest::Tauri(Arc::new(m)))
        } else if name.starts_with("RELEASES") {
            SquirrelReleases::parse(bytes, public_url).map(|m| Manifest::Squirrel(Arc::new(m)))
        } else if name.ends_with(".sig") {
            std::str::from_utf8(bytes)
                .ok()
                .map(|s| Manifest::Signature(Arc::from(s.trim())))
        } else {
            None
        }
    }
}

#[derive(Clone)]
enum Cached {
    Found(Manifest, u32),
    Missing,
}

/// A cached answer and what is known of its freshness.
struct Entry {
    value: Cached,
    /// When an origin last gave (or confirmed) it.
    loaded: Instant,
    /// A background revalidation is running.
    refreshing: AtomicBool,
    /// When the last revalidation failed; the copy is then served as a fallback.
    failed_at: Mutex<Option<Instant>>,
}

impl Entry {
    fn new(value: Cached) -> Arc<Self> {
        Arc::new(Self {
            value,
            loaded: Instant::now(),
            refreshing: AtomicBool::new(false),
            failed_at: Mutex::new(None),
        })
    }

    fn manifest(&self) -> Option<Manifest> {
        match &self.value {
            Cached::Found(manifest, _) => Some(manifest.clone()),
            Cached::Missing => None,
        }
    }
}

/// Found entries live through their TTL and then `stale_if_error` more, as stale copies;
/// missing ones only briefly.
struct Lifetime {
    found: Duration,
    missing: Duration,
}

impl Expiry<ObjectKey, Arc<Entry>> for Lifetime {
    fn expire_after_create(
        &self,
        _key: &ObjectKey,
        entry: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(match entry.value {
            Cached::Found(..) => self.found,
            Cached::Missing => self.missing,
        })
    }
}

/// The cache of every manifest the update routes read. Cheap to clone.
#[derive(Clone)]
pub struct ManifestCache {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Cache<ObjectKey, Arc<Entry>>,
    origins: Arc<Origins>,
    public_url: String,
    ttl: Duration,
    retry_gap: Duration,
    metrics: Arc<Metrics>,
}

impl ManifestCache {
    /// An empty cache reading from `origins`.
    pub fn new(
        origins: Arc<Origins>,
        config: &CacheConfig,
        public_url: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        let entries = Cache::builder()
            .max_capacity(MAX_WEIGHT)
            .weigher(|_key: &ObjectKey, entry: &Arc<Entry>| match entry.value {
                Cached::Found(_, weight) => weight,
                Cached::Missing => 64,
            })
            .expire_after(Lifetime {
                found: config.manifest_ttl.saturating_add(config.stale_if_error),
                missing: MISSING_TTL.min(config.manifest_ttl),
            })
            .build();
        Self {
            inner: Arc::new(Inner {
                entries,
                origins,
                public_url: public_url.to_owned(),
                ttl: config.manifest_ttl,
                retry_gap: RETRY_GAP.min(config.manifest_ttl),
                metrics,
            }),
        }
    }

    /// The manifest at `key`: `Ok(None)` when no origin has one (or it does not parse).
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Manifest>, StoreError> {
        let inner = &self.inner;
        if let Some(entry) = inner.entries.get(key).await {
            if entry.loaded.elapsed() < inner.ttl {
                self.lookup("hit");
                return Ok(entry.manifest());
            }
            // Stale: answer now, revalidate behind the answer.
            self.lookup("stale");
            let failed = entry.failed_at.lock().ok().and_then(|f| *f);
            if failed.is_some() {
                inner.metrics.fallback.with_label_values(&["stale"]).inc();
            }
            if failed.is_none_or(|at| at.elapsed() >= inner.retry_gap) {
                self.revalidate(key, &entry);
            }
            return Ok(entry.manifest());
        }
        let loaded = AtomicBool::new(false);
        let result = inner
            .entries
            .try_get_with_by_ref(key, async {
                loaded.store(true, Ordering::Relaxed);
                inner.load(key).await.map(Entry::new)
            })
            .await;
        let coalesced = !loaded.load(Ordering::Relaxed);
        self.lookup(if coalesced && result.is_ok() {
            "hit"
        } else {
            "miss"
        });
        match result {
            Ok(entry) => Ok(entry.manifest()),
            Err(err) => Err(err.duplicate()),
        }
    }

    /// Drops every entry.
    pub fn purge(&self) {
        self.inner.entries.invalidate_all();
    }

    /// Starts one background revalidation of `entry` (none if one is running).
    fn revalidate(&self, key: &ObjectKey, entry: &Arc<Entry>) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        let key = key.clone();
        let entry = entry.clone();
        tokio::spawn(async move {
            match inner.load(&key).await {
                Ok(fresh) => inner.entries.insert(key, Entry::new(fresh)).await,
                Err(err) => {
                    tracing::warn!(key = %key, error = %err, "revalidation failed; serving the last good manifest");
                    if let Ok(mut failed) = entry.failed_at.lock() {
                        *failed = Some(Instant::now());
                    }
                }
            }
            entry.refreshing.store(false, Ordering::Release);
        });
    }

    fn lookup(&self, result: &str) {
        self.inner
            .metrics
            .cache_lookups
            .with_label_values(&["manifest", result])
            .inc();
    }
}

impl Inner {
    async fn load(&self, key: &ObjectKey) -> Result<Cached, StoreError> {
        let parsed = self
            .origins
            .manifest(key, MAX_MANIFEST_BYTES, |bytes| {
                let manifest = Manifest::parse(key, bytes, &self.public_url)?;
                // Parsed form plus rendering: about three times the file.
                let weight = u32::try_from(bytes.len().saturating_mul(3)).unwrap_or(u32::MAX);
                Some((manifest, weight.max(256)))
            })
            .await?;
        Ok(match parsed {
            Some((manifest, weight)) => Cached::Found(manifest, weight),
            None => Cached::Missing,
        })
    }
}
