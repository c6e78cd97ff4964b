//! The release versions and channels the store holds, listed in the background and read
//! from memory: what bounds the labels of `release_edge_client_versions_total`, and what the
//! release policy walks to find a channel's previous release.
//!
//! The listing (`releases/v*/` and the channel files of `releases/latest/`) is refreshed at
//! most once per interval (`cache.manifest_ttl`), by one background task started by the
//! first reader that finds it old: a reader never waits on the store. Until the first listing
//! lands, the store is taken to hold nothing. A failed listing keeps the previous one, and
//! while the store's circuit is open nothing is listed: a failing store is not asked.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use semver::Version;

use crate::clock::Clock;
use crate::origin::Origins;
use crate::release::channel::Channel;
use crate::release::electron::ChannelFile;
use crate::store::StoreError;
use crate::store::key::RELEASES_PREFIX;

/// Where the channel files are: `releases/latest/` (SPEC §1).
const LATEST: &str = "latest";

/// The label of a client version or channel the store does not hold.
pub const OTHER: &str = "other";

/// Shortest interval between two listings, whatever `cache.manifest_ttl` says: a listing
/// walks a directory or a bucket prefix, which is not per-request work.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// One listing of the store.
#[derive(Debug, Default)]
pub struct Listing {
    /// Release versions, oldest first in semver order.
    versions: Vec<Version>,
    /// `versions` as label values, index for index (no allocation per update check).
    labels: Vec<String>,
    /// Channels that have a channel file in `releases/latest/`.
    channels: BTreeSet<String>,
    /// When the store answered it; `None` for the empty listing before the first one.
    listed_at: Option<Instant>,
}

impl Listing {
    /// A listing of `versions` (any order) and `channels`, not (yet) from the store.
    pub fn new(mut versions: Vec<Version>, channels: BTreeSet<String>) -> Self {
        versions.sort();
        versions.dedup();
        let labels = versions.iter().map(Version::to_string).collect();
        Self {
            versions,
            labels,
            channels,
            listed_at: None,
        }
    }

    /// Every release version, oldest first.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// The newest release version.
    pub fn newest(&self) -> Option<&Version> {
        self.versions.last()
    }

    /// The newest version older than `version`: the release before it.
    pub fn previous(&self, version: &Version) -> Option<&Version> {
        let at = self.versions.partition_point(|v| v < version);
        at.checked_sub(1).map(|i| &self.versions[i])
    }

    /// Whether the store holds `releases/v{version}/`.
    pub fn contains(&self, version: &Version) -> bool {
        self.versions.binary_search(version).is_ok()
    }

    /// The channels with a channel file in `releases/latest/`.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().map(String::as_str)
    }

    /// When the store gave this listing; `None` before the first listing.
    pub fn listed_at(&self) -> Option<Instant> {
        self.listed_at
    }

    /// `[channel, version]` labels of `release_edge_client_versions_total`: each as it is
    /// when the store holds it, else [`OTHER`], so that no client can add series.
    pub fn adoption_labels<'a>(&'a self, channel: &'a str, version: &Version) -> [&'a str; 2] {
        let channel = if self.channels.contains(channel) {
            channel
        } else {
            OTHER
        };
        let version = self
            .versions
            .binary_search(version)
            .map_or(OTHER, |i| self.labels[i].as_str());
        [channel, version]
    }
}

/// The channel a file of `releases/latest/` serves: electron-builder's channel files
/// (`beta-mac.yml`), Tauri's `{channel}.json`, Velopack's `releases.{channel}.json` (its
/// channel's: `releases.win.json` serves `latest`), Sparkle's `appcast[-{channel}].xml`,
/// Squirrel.Windows' `RELEASES` (the `latest` channel) and `RELEASES-{channel}`.
pub fn channel_of_file(name: &str) -> Option<Channel> {
    if name.ends_with(".yml") {
        return ChannelFile::parse(name).map(|file| file.channel);
    }
    if let Some(velopack_channel) = crate::release::velopack::feed_channel(name) {
        // `win`, `osx`, `linux` serve `latest`; `win-beta` serves `beta`.
        return Some(crate::release::velopack::release_channel(velopack_channel));
    }
    if name.ends_with(".xml") {
        return crate::release::sparkle::channel_of_file(name);
    }
    let channel = if name == "RELEASES" {
        "latest"
    } else if let Some(channel) = name.strip_prefix("RELEASES-") {
        channel
    } else {
        // Tauri's `{channel}.json`.
        name.strip_suffix(".json")?
    };
    Channel::parse(channel).ok()
}

/// The store's versions and channels, kept in memory and refreshed in the background.
/// Cloning shares the listing.
#[derive(Clone)]
pub struct KnownVersions {
    inner: Arc<Inner>,
}

struct Inner {
    /// The store to list (none with GitHub alone: nothing is ever listed), and its circuit.
    origins: Arc<Origins>,
    /// What the interval is measured by.
    clock: Clock,
    interval: Duration,
    /// Bound on one listing (each of its two store calls).
    timeout: Duration,
    current: RwLock<Arc<Listing>>,
    refreshing: AtomicBool,
}

impl KnownVersions {
    /// Lists the origins' store at most every `interval`; each listing call gives up after
    /// `timeout`.
    pub fn new(origins: Arc<Origins>, clock: Clock, interval: Duration, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                origins,
                clock,
                interval: interval.max(MIN_INTERVAL),
                timeout,
                current: RwLock::new(Arc::new(Listing::default())),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// The current listing, at once. When it is older than the interval (or there is none
    /// yet), one background task lists the store again; this call does not wait for it.
    pub fn current(&self) -> Arc<Listing> {
        let listing = self.inner.snapshot();
        let due = listing
            .listed_at
            .is_none_or(|at| self.inner.clock.since(at) >= self.inner.interval);
        if due
            && self.inner.origins.store().is_some()
            && !self.inner.origins.circuit_open()
            && !self.inner.refreshing.swap(true, Ordering::AcqRel)
        {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                // A failure is logged inside; the previous listing stays.
                let _ = inner.refresh().await;
                inner.refreshing.store(false, Ordering::Release);
            });
        }
        listing
    }

    /// Lists the store now and keeps the result, for callers that must see the newest
    /// state (a release manager's change). On failure the previous listing stays.
    pub async fn refresh(&self) -> Result<Arc<Listing>, StoreError> {
        self.inner.refresh().await
    }
}

impl Inner {
    fn snapshot(&self) -> Arc<Listing> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    async fn refresh(&self) -> Result<Arc<Listing>, StoreError> {
        let Some(store) = self.origins.store() else {
            return Ok(self.snapshot());
        };
        let listed = async {
            let versions = store.list_versions().await?;
            let latest = format!("{RELEASES_PREFIX}/{LATEST}");
            let files = tokio::time::timeout(self.timeout, store.list(&latest))
                .await
                .map_err(|_| StoreError::Timeout(self.timeout))??;
            let channels = files
                .iter()
                .filter_map(|f| channel_of_file(f))
                .map(|c| c.as_str().to_owned())
                .collect();
            let mut listing = Listing::new(versions, channels);
            listing.listed_at = Some(self.clock.now());
            Ok::<_, StoreError>(listing)
        }
        .await;
        match listed {
            Ok(listing) => {
                let listing = Arc::new(listing);
                match self.current.write() {
                    Ok(mut current) => *current = Arc::clone(&listing),
                    Err(poisoned) => *poisoned.into_inner() = Arc::clone(&listing),
                }
                Ok(listing)
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot list the store's versions; keeping the last listing");
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, GithubConfig, Secrets, StoreKind};
    use crate::metrics::Metrics;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    /// How often the tests' listings may be refreshed (on the manual clock).
    const INTERVAL: Duration = Duration::from_secs(60);

    fn known(config: &Config) -> (KnownVersions, Clock) {
        let clock = Clock::manual();
        let metrics = Arc::new(Metrics::new().unwrap());
        let origins = Origins::build(config, &Secrets::default(), clock.clone(), metrics).unwrap();
        let known = KnownVersions::new(
            Arc::new(origins),
            clock.clone(),
            INTERVAL,
            Duration::from_secs(5),
        );
        (known, clock)
    }

    /// A filesystem store holding `dirs` under `releases/` and `latest` files, listed.
    fn known_with(dirs: &[&str], latest: &[&str]) -> (tempfile::TempDir, KnownVersions, Clock) {
        let root = tempfile::tempdir().unwrap();
        for dir in dirs {
            std::fs::create_dir_all(root.path().join("releases").join(dir)).unwrap();
        }
        std::fs::create_dir_all(root.path().join("releases/latest")).unwrap();
        for file in latest {
            std::fs::write(root.path().join("releases/latest").join(file), b"x").unwrap();
        }
        let mut config = Config::default();
        config.store.root = root.path().to_path_buf();
        let (known, clock) = known(&config);
        (root, known, clock)
    }

    /// Waits (bounded) until a background listing has landed that `done` accepts.
    async fn listing_where(known: &KnownVersions, done: impl Fn(&Listing) -> bool) -> Arc<Listing> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listing = known.inner.snapshot();
            if done(&listing) {
                return listing;
            }
            assert!(Instant::now() < deadline, "no such listing within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn versions_sort_by_semver_and_previous_walks_back() {
        let listing = Listing::new(
            vec![
                v("1.10.0"),
                v("1.9.0"),
                v("2.0.0-beta.2"),
                v("2.0.0"),
                v("1.9.0"),
            ],
            BTreeSet::new(),
        );
        let names: Vec<String> = listing.versions().iter().map(Version::to_string).collect();
        assert_eq!(names, ["1.9.0", "1.10.0", "2.0.0-beta.2", "2.0.0"]);
        assert_eq!(listing.newest(), Some(&v("2.0.0")));
        assert_eq!(listing.previous(&v("2.0.0")), Some(&v("2.0.0-beta.2")));
        assert_eq!(listing.previous(&v("1.10.0")), Some(&v("1.9.0")));
        // A version the store does not hold still has a predecessor.
        assert_eq!(listing.previous(&v("1.9.5")), Some(&v("1.9.0")));
        assert_eq!(listing.previous(&v("1.9.0")), None);
        assert!(listing.contains(&v("1.10.0")));
        assert!(!listing.contains(&v("1.10.1")));
    }

    #[test]
    fn unknown_versions_and_channels_fold_into_other() {
        let listing = Listing::new(
            vec![v("1.0.0"), v("1.1.0")],
            ["latest".to_owned(), "beta".to_owned()].into(),
        );
        let cases = [
            ("latest", "1.1.0", ["latest", "1.1.0"]),
            ("beta", "9.9.9", ["beta", OTHER]),
            ("nightly", "1.0.0", [OTHER, "1.0.0"]),
            // Build metadata makes another version: a client cannot pass one off as known.
            ("latest", "1.0.0+hacked", ["latest", OTHER]),
        ];
        for (channel, version, labels) in cases {
            assert_eq!(listing.adoption_labels(channel, &v(version)), labels);
        }
        assert_eq!(
            Listing::default().adoption_labels("latest", &v("1.0.0")),
            [OTHER, OTHER]
        );
    }

    #[test]
    fn channels_come_from_every_kind_of_channel_file() {
        let cases = [
            ("latest.yml", Some("latest")),
            ("beta-mac.yml", Some("beta")),
            ("alpha-linux-arm64.yml", Some("alpha")),
            ("latest.json", Some("latest")),
            ("releases.beta.json", Some("beta")),
            ("RELEASES", Some("latest")),
            ("RELEASES-beta", Some("beta")),
            ("RELEASES-Beta", None),
            ("releases.win.json", Some("latest")),
            ("releases.osx-beta.json", Some("beta")),
            ("appcast.xml", Some("latest")),
            ("appcast-beta.xml", Some("beta")),
            ("feed.xml", None),
            ("notes.txt", None),
            ("UPPER.json", None),
        ];
        for (name, channel) in cases {
            let found = channel_of_file(name);
            assert_eq!(found.as_ref().map(Channel::as_str), channel, "{name}");
        }
    }

    #[tokio::test]
    async fn lists_version_directories_only() {
        let (root, known, _) = known_with(
            &[
                "v1.0.0",
                "v1.10.0",
                "v1.2.0",
                "vendor",
                "v1",
                "1.3.0",
                "v2.0.0-rc.1",
            ],
            &[
                "latest.yml",
                "latest-mac.yml",
                "beta.json",
                "RELEASES-alpha",
            ],
        );
        std::fs::write(
            root.path().join("releases/v9.9.9"),
            b"a file, not a release",
        )
        .unwrap();
        let listing = known.refresh().await.unwrap();
        let names: Vec<String> = listing.versions().iter().map(Version::to_string).collect();
        assert_eq!(names, ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]);
        assert_eq!(
            listing.channels().collect::<Vec<_>>(),
            ["alpha", "beta", "latest"]
        );
    }

    #[tokio::test]
    async fn readers_never_wait_and_the_listing_is_renewed_once_per_interval() {
        let (root, known, clock) = known_with(&["v1.0.0"], &["latest.yml"]);
        // Nothing listed yet: the reader gets the empty listing at once, and starts one.
        let first = known.current();
        assert!(first.listed_at().is_none() && first.versions().is_empty());
        let listed = listing_where(&known, |l| l.listed_at().is_some()).await;
        assert_eq!(listed.versions(), [v("1.0.0")]);
        // Within the interval a new version is not listed...
        std::fs::create_dir_all(root.path().join("releases/v1.1.0")).unwrap();
        clock.advance(INTERVAL - Duration::from_secs(1));
        assert_eq!(known.current().versions(), [v("1.0.0")]);
        tokio::task::yield_now().await;
        assert!(
            Arc::ptr_eq(&known.inner.snapshot(), &listed),
            "listed again too soon"
        );
        // ...once it has passed, the next reader starts a listing that finds it.
        clock.advance(Duration::from_secs(1));
        assert_eq!(known.current().versions(), [v("1.0.0")]);
        let renewed = listing_where(&known, |l| l.versions().len() == 2).await;
        assert_eq!(renewed.versions(), [v("1.0.0"), v("1.1.0")]);
    }

    #[tokio::test]
    async fn a_failed_listing_keeps_the_last_one() {
        let (root, known, _) = known_with(&["v1.0.0"], &["latest.yml"]);
        known.refresh().await.unwrap();
        // The store's root replaced by a file: listing `releases/` fails.
        std::fs::remove_dir_all(root.path().join("releases")).unwrap();
        std::fs::write(root.path().join("releases"), b"not a directory").unwrap();
        assert!(known.refresh().await.is_err());
        assert_eq!(known.current().versions(), [v("1.0.0")]);
    }

    #[tokio::test]
    async fn without_a_store_nothing_is_known() {
        let mut config = Config::default();
        config.store.kind = StoreKind::None;
        config.github = Some(GithubConfig {
            owner: "acme".into(),
            repo: "app".into(),
            api_url: "http://127.0.0.1:9".into(),
            private: None,
            fallback_on: Vec::new(),
            timeout: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(60),
        });
        let (known, _) = known(&config);
        assert!(known.refresh().await.unwrap().versions().is_empty());
        assert_eq!(
            known.current().adoption_labels("latest", &v("1.0.0")),
            [OTHER, OTHER]
        );
    }
}
