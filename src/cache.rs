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
//!   that a storm of checks for a channel that does not exist is not a storm of reads; then
//!   they are looked up again, and when that fails the "not there" stands too (for up to
//!   `cache.stale_if_error`): a failing origin never turns a known answer into an error.
//! - "Not in the store, and GitHub could not be asked" ([`Found::Unconfirmed`]) is kept for
//!   the retry gap, so a failing GitHub is not asked once per update check.
//! - Time is the injected [`Clock`]'s, so tests move it instead of sleeping, and
//!   [`ManifestCache::settled`] tells them when background revalidations are done.
//! - Memory is bounded by weight (bytes), not entry count.
//! - A channel's release policy (`policy/{channel}.json`) is held here too; a channel
//!   without one holds the default policy, fresh and revalidated like a found manifest.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use crate::clock::Clock;
use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::origin::{Found, OriginError, OriginName, Origins};
use crate::release::channel::Channel;
use crate::release::electron::{ChannelFile, ElectronManifest};
use crate::release::policy::ChannelPolicy;
use crate::release::sparkle::Appcast;
use crate::release::squirrel::SquirrelReleases;
use crate::release::tauri::TauriManifest;
use crate::release::velopack::{self, VelopackFeed, VelopackInstallers};
use crate::store::ObjectKey;
use crate::store::key::{KeyHasher, KeyKind};
use prometheus::IntCounter;

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
    /// A Velopack feed, `releases.{channel}.json`.
    Velopack(Arc<VelopackFeed>),
    /// A Velopack version's installers, `assets.{channel}.json`.
    VelopackInstallers(Arc<VelopackInstallers>),
    /// A Sparkle appcast, `appcast.xml` / `appcast-{channel}.xml`.
    Sparkle(Arc<Appcast>),
    /// A signature (`.sig`), trimmed.
    Signature(Arc<str>),
    /// A channel's release policy (`policy/{channel}.json`), parsed once per version of it.
    Policy(Arc<ChannelPolicy>),
}

impl Manifest {
    /// Parses `bytes` by the kind of file `key` names; `None` when it does not parse.
    fn parse(key: &ObjectKey, bytes: &[u8], public_url: &str) -> Option<Self> {
        let name = key.file_name();
        if key.kind() == KeyKind::Policy {
            return match ChannelPolicy::parse(bytes) {
                Ok(policy) => Some(Manifest::Policy(Arc::new(policy))),
                Err(err) => {
                    tracing::warn!(key = %key, error = %err, "policy document does not parse; the channel is served without one");
                    None
                }
            };
        }
        if name.ends_with(".yml") {
            let file = ChannelFile::parse(name)?;
            match ElectronManifest::parse(bytes, &file, public_url) {
                Ok(m) => Some(Manifest::Electron(Arc::new(m))),
                Err(err) => {
                    tracing::warn!(key = %key, error = %err, "channel file does not parse; treated as missing");
                    None
                }
            }
        } else if velopack::feed_channel(name).is_some() {
            VelopackFeed::parse(bytes).map(|m| Manifest::Velopack(Arc::new(m)))
        } else if velopack::assets_channel(name).is_some() {
            VelopackInstallers::parse(bytes).map(|m| Manifest::VelopackInstallers(Arc::new(m)))
        } else if name.ends_with(".xml") {
            Appcast::parse(bytes, public_url).map(|m| Manifest::Sparkle(Arc::new(m)))
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

/// The `result` of a lookup, in the order of `Inner::lookups`.
#[derive(Clone, Copy)]
enum Lookup {
    Hit = 0,
    Miss = 1,
    Stale = 2,
}

/// What is cached for a key.
enum Cached {
    /// A manifest, its weight, and the origin that gave it.
    Found(Manifest, u32, OriginName),
    /// No origin has one.
    Missing,
    /// Not in the store; GitHub, which might have it, failed.
    Unconfirmed(OriginError),
}

impl Cached {
    fn from_found(found: Found<(Manifest, u32)>) -> Self {
        match found {
            Found::Yes((manifest, weight), origin) => Cached::Found(manifest, weight, origin),
            Found::No => Cached::Missing,
            Found::Unconfirmed(err) => Cached::Unconfirmed(err),
        }
    }
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
    fn new(value: Cached, loaded: Instant) -> Arc<Self> {
        Arc::new(Self {
            value,
            loaded,
            refreshing: AtomicBool::new(false),
            failed_at: Mutex::new(None),
        })
    }

    /// The answer this entry gives.
    fn answer(&self) -> Found<Manifest> {
        match &self.value {
            Cached::Found(manifest, _, origin) => Found::Yes(manifest.clone(), *origin),
            Cached::Missing => Found::No,
            Cached::Unconfirmed(err) => Found::Unconfirmed(err.duplicate()),
        }
    }

    fn failed_at(&self) -> Option<Instant> {
        self.failed_at.lock().ok().and_then(|f| *f)
    }

    fn mark_failed(&self, at: Instant) {
        if let Ok(mut failed) = self.failed_at.lock() {
            *failed = Some(at);
        }
    }
}

/// Memory backstop: entries leave the cache after their freshness plus `stale_if_error` of
/// real time. Whether an entry is fresh is decided on the injected clock.
struct Lifetime {
    found: Duration,
    negative: Duration,
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
            Cached::Missing | Cached::Unconfirmed(_) => self.negative,
        })
    }
}

/// The cache of every manifest the update routes read. Cheap to clone.
#[derive(Clone)]
pub struct ManifestCache {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Cache<ObjectKey, Arc<Entry>, KeyHasher>,
    origins: Arc<Origins>,
    public_url: String,
    ttl: Duration,
    missing_ttl: Duration,
    retry_gap: Duration,
    stale_if_error: Duration,
    clock: Clock,
    /// Background revalidations running; [`ManifestCache::settled`] waits for zero.
    running: tokio::sync::watch::Sender<usize>,
    /// Origin loads started, for tests that count them.
    loads: AtomicU64,
    metrics: Arc<Metrics>,
    /// `release_edge_cache_lookups_total{cache="manifest"}` for `hit`, `miss`, `stale`,
    /// resolved once: every update check makes two lookups (its manifest, its channel's
    /// policy), and a labelled lookup hashes the labels each time.
    lookups: [IntCounter; 3],
}

impl ManifestCache {
    /// An empty cache reading from `origins`.
    pub fn new(
        origins: Arc<Origins>,
        config: &CacheConfig,
        public_url: &str,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let missing_ttl = MISSING_TTL.min(config.manifest_ttl);
        let entries = Cache::builder()
            .max_capacity(MAX_WEIGHT)
            .weigher(|_key: &ObjectKey, entry: &Arc<Entry>| match entry.value {
                Cached::Found(_, weight, _) => weight,
                Cached::Missing | Cached::Unconfirmed(_) => 64,
            })
            .expire_after(Lifetime {
                found: config.manifest_ttl.saturating_add(config.stale_if_error),
                negative: missing_ttl.saturating_add(config.stale_if_error),
            })
            .build_with_hasher(KeyHasher::default());
        Self {
            inner: Arc::new(Inner {
                entries,
                origins,
                public_url: public_url.to_owned(),
                ttl: config.manifest_ttl,
                missing_ttl,
                retry_gap: RETRY_GAP.min(config.manifest_ttl),
                stale_if_error: config.stale_if_error,
                clock,
                running: tokio::sync::watch::Sender::new(0),
                loads: AtomicU64::new(0),
                lookups: ["hit", "miss", "stale"].map(|result| {
                    metrics
                        .cache_lookups
                        .with_label_values(&["manifest", result])
                }),
                metrics,
            }),
        }
    }

    /// What the origins say of the manifest at `key`. An error only when no origin could
    /// say anything and nothing was known before.
    pub async fn get(&self, key: &ObjectKey) -> Result<Found<Manifest>, OriginError> {
        let inner = &self.inner;
        if let Some(entry) = inner.entries.get(key).await {
            let age = inner.clock.since(entry.loaded);
            match entry.value {
                Cached::Found(..) if age < inner.ttl => {
                    self.lookup(Lookup::Hit);
                    return Ok(entry.answer());
                }
                Cached::Found(..) if age >= inner.ttl.saturating_add(inner.stale_if_error) => {
                    // Too old even to stand in for a failing origin.
                    inner.entries.invalidate(key).await;
                }
                Cached::Found(..) => {
                    // Stale: answer now, revalidate behind the answer.
                    self.lookup(Lookup::Stale);
                    let failed = entry.failed_at();
                    if failed.is_some() {
                        inner.metrics.fallback.with_label_values(&["stale"]).inc();
                    }
                    if failed.is_none_or(|at| inner.clock.since(at) >= inner.retry_gap) {
                        self.revalidate(key, &entry);
                    }
                    return Ok(entry.answer());
                }
                Cached::Missing if age < inner.missing_ttl => {
                    self.lookup(Lookup::Hit);
                    return Ok(entry.answer());
                }
                Cached::Unconfirmed(_) if age < inner.retry_gap => {
                    self.lookup(Lookup::Hit);
                    return Ok(entry.answer());
                }
                Cached::Missing | Cached::Unconfirmed(_) => {
                    return self.reload_negative(key, entry).await;
                }
            }
        }
        self.load_coalesced(key).await
    }

    /// A "not there" past its freshness: looked up again (coalesced); when that fails,
    /// the old answer stands (within `stale_if_error`), and is asked again after the
    /// retry gap.
    async fn reload_negative(
        &self,
        key: &ObjectKey,
        entry: Arc<Entry>,
    ) -> Result<Found<Manifest>, OriginError> {
        let inner = &self.inner;
        if entry
            .failed_at()
            .is_some_and(|at| inner.clock.since(at) < inner.retry_gap)
        {
            self.lookup(Lookup::Stale);
            return Ok(entry.answer());
        }
        inner.entries.invalidate(key).await;
        match self.load_coalesced(key).await {
            Ok(found) => Ok(found),
            Err(err) if inner.clock.since(entry.loaded) < inner.stale_if_error => {
                tracing::warn!(key = %key, origin = err.origin().as_str(), error = %err, "origins failed; the last answer (not there) stands");
                entry.mark_failed(inner.clock.now());
                let answer = entry.answer();
                inner.entries.insert(key.clone(), entry).await;
                Ok(answer)
            }
            Err(err) => Err(err),
        }
    }

    /// Loads `key` from the origins; concurrent callers share one load.
    async fn load_coalesced(&self, key: &ObjectKey) -> Result<Found<Manifest>, OriginError> {
        let inner = &self.inner;
        let loaded = AtomicBool::new(false);
        let result = inner
            .entries
            .try_get_with_by_ref(key, async {
                loaded.store(true, Ordering::Relaxed);
                let at = inner.clock.now();
                inner.load(key).await.map(|value| Entry::new(value, at))
            })
            .await;
        let coalesced = !loaded.load(Ordering::Relaxed);
        self.lookup(if coalesced && result.is_ok() {
            Lookup::Hit
        } else {
            Lookup::Miss
        });
        match result {
            Ok(entry) => Ok(entry.answer()),
            Err(err) => Err(err.duplicate()),
        }
    }

    /// Drops every entry.
    pub fn purge(&self) {
        self.inner.entries.invalidate_all();
    }

    /// Drops the entry of `key` (a release manager's change: this node shows it at once).
    pub async fn invalidate(&self, key: &ObjectKey) {
        self.inner.entries.invalidate(key).await;
    }

    /// What is cached for `key` now, without asking an origin or counting a lookup; `None`
    /// when nothing is (for gauges read at scrape time).
    pub async fn peek(&self, key: &ObjectKey) -> Option<Found<Manifest>> {
        self.inner
            .entries
            .get(key)
            .await
            .map(|entry| entry.answer())
    }

    /// Waits until no background revalidation is running (tests, and anyone who changed
    /// the store and wants the next answer to show it).
    pub async fn settled(&self) {
        let mut running = self.inner.running.subscribe();
        // The sender lives in `inner`, which `self` holds: the channel cannot close.
        let _ = running.wait_for(|n| *n == 0).await;
    }

    /// Origin loads started so far (first loads and revalidations).
    pub fn loads(&self) -> u64 {
        self.inner.loads.load(Ordering::Relaxed)
    }

    /// Starts one background revalidation of `entry` (none if one is running).
    fn revalidate(&self, key: &ObjectKey, entry: &Arc<Entry>) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        let key = key.clone();
        let entry = entry.clone();
        inner.running.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            let at = inner.clock.now();
            let fresh = inner.load(&key).await;
            match (fresh, &entry.value) {
                // The origin that gave this copy failed (the other one has none): it cannot
                // be confirmed, nor denied, so it stands. (When the origin that gave it
                // answers "not there", that answer is taken.)
                (Ok(Cached::Unconfirmed(err)), Cached::Found(_, _, origin))
                    if err.origin() == *origin =>
                {
                    tracing::warn!(key = %key, origin = origin.as_str(), error = %err, "revalidation failed; serving the last good manifest");
                    entry.mark_failed(inner.clock.now());
                }
                (Ok(fresh), _) => inner.entries.insert(key, Entry::new(fresh, at)).await,
                (Err(err), _) => {
                    tracing::warn!(key = %key, origin = err.origin().as_str(), error = %err, "revalidation failed; serving the last good manifest");
                    entry.mark_failed(inner.clock.now());
                }
            }
            entry.refreshing.store(false, Ordering::Release);
            inner.running.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    fn lookup(&self, result: Lookup) {
        self.inner.lookups[result as usize].inc();
    }
}

impl Inner {
    async fn load(&self, key: &ObjectKey) -> Result<Cached, OriginError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        // Boxed: the origins' future (store, then GitHub) is deep, and it is awaited inside
        // the cache's own, which every update check awaits.
        let found = Box::pin(self.origins.manifest(key, |bytes| {
            let manifest = Manifest::parse(key, bytes, &self.public_url)?;
            // Parsed form plus rendering: about three times the file.
            let weight = u32::try_from(bytes.len().saturating_mul(3)).unwrap_or(u32::MAX);
            Some((manifest, weight.max(256)))
        }))
        .await?;
        // No policy document is a policy too (the default, which changes nothing): cached and
        // revalidated behind the answers like a found one, so that a channel without a policy
        // costs no store read on the request path, not even every few seconds.
        let found = match found {
            Found::No if key.kind() == KeyKind::Policy => Found::Yes(
                (Manifest::Policy(Arc::new(ChannelPolicy::default())), 256),
                OriginName::Store,
            ),
            other => other,
        };
        Ok(Cached::from_found(found))
    }
}

/// Which manifest of a channel a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelManifest {
    /// `releases/latest/{channel}.json`: Tauri's static manifest.
    Tauri,
    /// `releases/latest/RELEASES` (`latest`) or `RELEASES-{channel}`: Squirrel.Windows.
    Squirrel,
    /// `policy/{channel}.json`: the channel's release policy.
    Policy,
    /// `releases/latest/appcast.xml` (`latest`) or `appcast-{channel}.xml`: Sparkle.
    Sparkle,
}

/// Most keys remembered per kind: channel names come from requests, so the memory is
/// bounded; past it, keys are composed per request.
const MAX_REMEMBERED_KEYS: usize = 4096;

/// The keys of the manifests update checks ask for, composed once: a check costs a map
/// lookup instead of formatting and validating a path.
#[derive(Default)]
pub struct ManifestKeys {
    channel_files: RwLock<HashMap<ChannelFile, ObjectKey>>,
    channels: RwLock<HashMap<(Channel, ChannelManifest), ObjectKey>>,
}

impl ManifestKeys {
    /// `releases/latest/{file}`.
    pub fn channel_file(&self, file: &ChannelFile) -> ObjectKey {
        remembered(&self.channel_files, file, || latest_key(&file.file_name()))
    }

    /// The key of one of `channel`'s manifests.
    pub fn of_channel(&self, channel: &Channel, which: ChannelManifest) -> ObjectKey {
        remembered(&self.channels, &(channel.clone(), which), || match which {
            ChannelManifest::Tauri => latest_key(&format!("{channel}.json")),
            ChannelManifest::Squirrel if channel.is_latest() => latest_key("RELEASES"),
            ChannelManifest::Squirrel => latest_key(&format!("RELEASES-{channel}")),
            ChannelManifest::Policy => ObjectKey::policy(channel),
            ChannelManifest::Sparkle => latest_key(&crate::release::sparkle::file_name(channel)),
        })
    }
}

fn remembered<K: Hash + Eq + Clone>(
    map: &RwLock<HashMap<K, ObjectKey>>,
    key: &K,
    make: impl FnOnce() -> ObjectKey,
) -> ObjectKey {
    if let Ok(known) = map.read()
        && let Some(found) = known.get(key)
    {
        return found.clone();
    }
    let made = make();
    if let Ok(mut known) = map.write()
        && known.len() < MAX_REMEMBERED_KEYS
    {
        known.insert(key.clone(), made.clone());
    }
    made
}

/// `releases/latest/{name}`, for a name the server composed from a validated channel (a
/// channel name and a fixed suffix cannot make an invalid key).
fn latest_key(name: &str) -> ObjectKey {
    ObjectKey::latest(name)
}
