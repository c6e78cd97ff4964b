//! The manifest cache: parsed channel files, Tauri manifests, `RELEASES` files and
//! signatures, held in memory (moka) so that an update check is answered without touching
//! the store.
//!
//! - Concurrent misses for one key make one store read (moka's `try_get_with` coalesces).
//! - Found manifests live `cache.manifest_ttl`; missing ones (404, or a file that does not
//!   parse) are remembered briefly so that a storm of checks for a channel that does not
//!   exist does not become a storm of store reads.
//! - When the store fails, the last good copy is served for up to `cache.stale_if_error`.
//! - Memory is bounded by weight (bytes), not entry count.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::release::electron::{ChannelFile, ElectronManifest};
use crate::release::squirrel::SquirrelReleases;
use crate::release::tauri::TauriManifest;
use crate::store::{ObjectKey, Store, StoreError};

/// Largest manifest read into memory; a bigger object is not a manifest.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Total weight (about the bytes held) of the cache.
const MAX_WEIGHT: u64 = 64 * 1024 * 1024;

/// How long "not there" is remembered (at most; never longer than the TTL).
const MISSING_TTL: Duration = Duration::from_secs(5);

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

struct Ttl {
    found: Duration,
    missing: Duration,
}

impl Expiry<ObjectKey, Cached> for Ttl {
    fn expire_after_create(
        &self,
        _key: &ObjectKey,
        value: &Cached,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value {
            Cached::Found(..) => self.found,
            Cached::Missing => self.missing,
        })
    }
}

/// The cache of every manifest the update routes read.
pub struct ManifestCache {
    entries: Cache<ObjectKey, Cached>,
    last_good: Cache<ObjectKey, Manifest>,
    store: Store,
    public_url: String,
}

impl ManifestCache {
    /// An empty cache reading from `store`.
    pub fn new(store: Store, config: &CacheConfig, public_url: &str) -> Self {
        let entries = Cache::builder()
            .max_capacity(MAX_WEIGHT)
            .weigher(|_key: &ObjectKey, value: &Cached| match value {
                Cached::Found(_, weight) => *weight,
                Cached::Missing => 64,
            })
            .expire_after(Ttl {
                found: config.manifest_ttl,
                missing: MISSING_TTL.min(config.manifest_ttl),
            })
            .build();
        let last_good = Cache::builder()
            .max_capacity(10_000)
            .time_to_live(config.stale_if_error)
            .build();
        Self {
            entries,
            last_good,
            store,
            public_url: public_url.to_owned(),
        }
    }

    /// The manifest at `key`: `Ok(None)` when the store has none (or it does not parse).
    pub async fn get(
        &self,
        key: &ObjectKey,
        metrics: &Metrics,
    ) -> Result<Option<Manifest>, StoreError> {
        let loaded = AtomicBool::new(false);
        let result = self
            .entries
            .try_get_with_by_ref(key, async {
                loaded.store(true, Ordering::Relaxed);
                self.load(key, metrics).await
            })
            .await;
        let lookup = |result: &str| {
            metrics
                .cache_lookups
                .with_label_values(&["manifest", result])
                .inc();
        };
        match result {
            Ok(cached) => {
                lookup(if loaded.load(Ordering::Relaxed) {
                    "miss"
                } else {
                    "hit"
                });
                Ok(match cached {
                    Cached::Found(manifest, _) => Some(manifest),
                    Cached::Missing => None,
                })
            }
            Err(err) => match self.last_good.get(key).await {
                Some(stale) => {
                    lookup("stale");
                    metrics.fallback.with_label_values(&["stale"]).inc();
                    tracing::warn!(key = %key, error = %err, "store failed; serving the last good manifest");
                    Ok(Some(stale))
                }
                None => {
                    lookup("miss");
                    Err(err.duplicate())
                }
            },
        }
    }

    /// Drops every entry (the last good copies stay, for stale-if-error).
    pub fn purge(&self) {
        self.entries.invalidate_all();
    }

    async fn load(&self, key: &ObjectKey, metrics: &Metrics) -> Result<Cached, StoreError> {
        let start = Instant::now();
        let read = self.store.get_bytes(key, MAX_MANIFEST_BYTES).await;
        metrics
            .origin_duration
            .with_label_values(&["store"])
            .observe(start.elapsed().as_secs_f64());
        let outcome = match &read {
            Ok(Some(_)) => "ok",
            Ok(None) => "not_found",
            Err(_) => "error",
        };
        metrics
            .origin_requests
            .with_label_values(&["store", outcome])
            .inc();
        let Some(bytes) = read? else {
            return Ok(Cached::Missing);
        };
        Ok(match Manifest::parse(key, &bytes, &self.public_url) {
            Some(manifest) => {
                self.last_good.insert(key.clone(), manifest.clone()).await;
                // Parsed form plus rendering: about three times the file.
                let weight = u32::try_from(bytes.len().saturating_mul(3)).unwrap_or(u32::MAX);
                Cached::Found(manifest, weight.max(256))
            }
            None => Cached::Missing,
        })
    }
}
