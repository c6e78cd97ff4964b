//! `release-edge mirror --from-github`: copies GitHub releases into the store with
//! `publish`'s guarantees, so that the bucket becomes the origin and GitHub the fallback.
//!
//! For each release (drafts never; a pre-release belongs to the channel of its version's
//! pre-release tag, as the GitHub origin serves it):
//! 1. its feed assets (`latest*.yml`, Tauri `{channel}.json`, `RELEASES`, Velopack
//!    `releases.{channel}.json`) are read, and every file they list must be an asset of the
//!    release with the size and hash they give (sha512 for electron-builder, SHA-1 for
//!    Squirrel, SHA-256 for Velopack) and the `sha256` digest GitHub keeps for every asset;
//! 2. what the store lacks is downloaded into the work directory (resumed with a `Range`
//!    after a kill, one file per asset id) and verified; a release with one bad file is
//!    refused whole: nothing of it is written;
//! 3. then, with the writer `publish` uses: the artifacts, then the feed assets beside them
//!    under `releases/v{X}/`;
//! 4. last, for every channel, its channel files under `releases/latest/`: each is what the
//!    GitHub origin serves for it — the file of the newest release that has it among the
//!    channel's own and the stable ones — from the releases now in the store (a refused
//!    release is passed over: the channel goes on serving the newest good one), and never
//!    older than what the store serves (a version published straight to the store stands).
//!
//! Idempotent: a release whose files are all in the store (same names and sizes) is not
//! touched, and nothing is written that is there already. The list of releases is kept in
//! the work directory and revalidated with `If-None-Match` (a `304` costs no rate limit).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_norway::Value;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use crate::cdn::{Change, ChangeKind};
use crate::clock::Clock;
use crate::origin::github::model::{self, Asset, ChannelRelease, GitHubKey};
use crate::origin::github::{GitHubError, GitHubOrigin, ReleaseList, tauri_urls_through_us};
use crate::release::channel::Channel;
use crate::release::electron::ChannelFile;
use crate::release::{MAX_MANIFEST_BYTES, parse_version};
use crate::store::{ByteRange, ObjectKey, Store};
use crate::writer::{self, Artifact, channel_key, version_key};

/// Longest wait for GitHub's rate limit to reset before giving up.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);
/// Wait after GitHub failed without a rate limit: doubled for each further attempt.
const RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Attempts of one GitHub request that fails for a reason other than the rate limit.
const ATTEMPTS: u32 = 4;
/// Name of the cached list of releases in the work directory.
const LISTING_FILE: &str = "github-releases.json";

/// What to mirror, and where downloads wait.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only releases of this version or newer (semver precedence), besides the releases a
    /// channel file comes from.
    pub since: Option<semver::Version>,
    /// Only this channel's releases and channel files.
    pub channel: Option<Channel>,
    /// Where the list of releases is kept between runs and downloads are written before
    /// they are verified and uploaded.
    pub work_dir: PathBuf,
}

impl Options {
    /// The default work directory for a repository: under the system's temporary directory.
    pub fn default_work_dir(owner: &str, repo: &str) -> PathBuf {
        std::env::temp_dir()
            .join("release-edge-mirror")
            .join(format!("{owner}-{repo}"))
    }
}

/// What happened to one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every file was in the store already: nothing read or written.
    InStore,
    /// Copied: the files uploaded (artifacts and feed assets) and their bytes.
    Copied {
        /// Names written under `releases/v{X}/`.
        files: Vec<String>,
        /// Bytes uploaded.
        bytes: u64,
    },
    /// Refused: nothing of it was written, nor any channel file that would point at it.
    Refused(String),
}

/// What a mirror run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Each release in scope, newest first.
    pub releases: Vec<(semver::Version, Channel, Outcome)>,
    /// Channel files written under `releases/latest/` (keys).
    pub channel_files: Vec<String>,
    /// Things left as the store has them, with the reason (a channel the store serves a
    /// newer version on, a version file published straight to the store).
    pub kept: Vec<String>,
    /// Bytes downloaded from GitHub in this run.
    pub downloaded: u64,
}

impl Report {
    /// True when a release was refused.
    pub fn failed(&self) -> bool {
        self.releases
            .iter()
            .any(|(_, _, o)| matches!(o, Outcome::Refused(_)))
    }

    /// The change for the CDN: the channels whose files were written, and those files.
    pub fn change(&self) -> Change {
        let files: BTreeSet<String> = self.channel_files.iter().cloned().collect();
        let channels = files
            .iter()
            .filter_map(|key| key.rsplit('/').next())
            .filter_map(crate::versions::channel_of_file)
            .collect();
        Change {
            kind: ChangeKind::Mirror,
            channels,
            files,
        }
    }
}

/// Mirrors the repository `github` reads into `store`.
pub async fn mirror(
    store: &Store,
    github: &GitHubOrigin,
    options: &Options,
    clock: &Clock,
) -> anyhow::Result<Report> {
    let downloads = options.work_dir.join("downloads");
    tokio::fs::create_dir_all(&downloads)
        .await
        .with_context(|| format!("creating {}", downloads.display()))?;
    let list = list_releases(github, &options.work_dir, clock).await?;
    let all = list.servable();
    let channels: BTreeSet<Channel> = match &options.channel {
        Some(channel) => BTreeSet::from([channel.clone()]),
        None => all.iter().map(|r| r.channel.clone()).collect(),
    };
    // GitHub's choice for every channel file, and the releases it needs in the store.
    let wanted_sources = channel_sources(&all, &channels);
    let needed: BTreeSet<&semver::Version> = wanted_sources.iter().map(|s| &s.version).collect();
    let scope: Vec<&ChannelRelease> = all
        .iter()
        .filter(|r| {
            let wanted = options
                .since
                .as_ref()
                .is_none_or(|since| r.version.cmp_precedence(since).is_ge())
                && options.channel.as_ref().is_none_or(|c| *c == r.channel);
            wanted || needed.contains(&r.version)
        })
        .collect();

    let mut report = Report::default();
    let mut in_store = BTreeSet::new();
    let mirror = Mirror {
        store,
        github,
        downloads: &downloads,
        all: &all,
        clock,
    };
    for release in scope {
        let outcome = match mirror.release(release, &mut report).await {
            Ok(outcome) => outcome,
            Err(Stop::Refused(reason)) => Outcome::Refused(reason),
            Err(Stop::Failed(err)) => {
                return Err(err.context(format!(
                    "mirroring v{} (run the command again to resume)",
                    release.version
                )));
            }
        };
        if let Outcome::Refused(reason) = &outcome {
            eprintln!("refused v{}: {reason}", release.version);
        } else {
            in_store.insert(release.version.clone());
        }
        report
            .releases
            .push((release.version.clone(), release.channel.clone(), outcome));
    }

    // Last, the channel files: each from the newest release that has it among those now in
    // the store; a refused release is passed over, so the channel keeps serving a good one.
    let in_store: Vec<ChannelRelease> = all
        .iter()
        .filter(|r| in_store.contains(&r.version))
        .cloned()
        .collect();
    let sources = channel_sources(&in_store, &channels);
    for wanted in &wanted_sources {
        let served = sources
            .iter()
            .find(|s| s.channel == wanted.channel && s.file == wanted.file);
        if served.is_none_or(|s| s.version != wanted.version) {
            report.kept.push(format!(
                "releases/latest/{}: GitHub's is v{}'s, which is not in the store{}",
                wanted.file,
                wanted.version,
                served.map_or(String::new(), |s| format!("; v{} serves it", s.version))
            ));
        }
    }
    for source in &sources {
        let from = version_key(&source.version, &source.asset)?;
        let Some(bytes) = store.get_bytes(&from, MAX_MANIFEST_BYTES).await? else {
            bail!("{from} disappeared from the store");
        };
        match writer::served(store, &source.file).await? {
            Some((current, _)) if current == bytes => continue,
            Some((_, Some(served))) if served.cmp_precedence(&source.version).is_ge() => {
                report.kept.push(format!(
                    "releases/latest/{}: the store serves {served}, GitHub's newest is {}",
                    source.file, source.version
                ));
                continue;
            }
            _ => {}
        }
        let key = channel_key(&source.file)?;
        writer::put_manifest(store, &key, bytes).await?;
        report.channel_files.push(key.to_string());
    }
    Ok(report)
}

/// Where a channel file comes from: the feed asset `asset` of the release `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSource {
    /// The channel.
    pub channel: Channel,
    /// The name under `releases/latest/` (`beta-mac.yml`).
    pub file: String,
    /// The release it comes from.
    pub version: semver::Version,
    /// The asset of that release (`latest-mac.yml` for a stable release feeding `beta`).
    pub asset: String,
}

/// The channel files of `channels` and where each comes from, as the GitHub origin serves
/// them: every feed asset of a channel's own and the stable releases names a file (a stable
/// release's `latest-mac.yml` is `beta-mac.yml` to the beta channel), and each file comes
/// from the newest release that has it. Velopack's `releases.{channel}.json`, which the
/// GitHub origin does not serve, comes from the channel's newest release that has it.
pub fn channel_sources(
    releases: &[ChannelRelease],
    channels: &BTreeSet<Channel>,
) -> Vec<ChannelSource> {
    let mut out = Vec::new();
    for channel in channels {
        let mut names = BTreeSet::new();
        for release in releases
            .iter()
            .filter(|r| r.channel == *channel || r.channel.is_latest())
        {
            for asset in release.release.assets.iter().filter(|a| a.is_complete()) {
                if let Some(name) = name_in_channel(&asset.name, channel) {
                    names.insert(name);
                }
            }
        }
        for file in names {
            let found = match velopack_channel(&file) {
                Some(_) => releases
                    .iter()
                    .filter(|r| r.channel == *channel)
                    .find_map(|r| {
                        let asset = r
                            .release
                            .assets
                            .iter()
                            .find(|a| a.name == file && a.is_complete())?;
                        Some((r, asset))
                    }),
                None => ObjectKey::from_trusted(format!("releases/latest/{file}"))
                    .ok()
                    .and_then(|key| GitHubKey::of(&key))
                    .and_then(|key| model::find_release_asset(releases, &key)),
            };
            if let Some((release, asset)) = found {
                out.push(ChannelSource {
                    channel: channel.clone(),
                    file,
                    version: release.version.clone(),
                    asset: asset.name.clone(),
                });
            }
        }
    }
    out
}

/// The name a feed asset has for `channel`: its own name in its own channel; a `latest`
/// file's name spelled for another channel (`latest-mac.yml` → `beta-mac.yml`,
/// `latest.json` → `beta.json`, `RELEASES` → `RELEASES-beta`); `None` otherwise.
fn name_in_channel(name: &str, channel: &Channel) -> Option<String> {
    if let Some(own) = velopack_channel(name) {
        return (own == *channel).then(|| name.to_owned());
    }
    let (own, _) = model::channel_of_file(name)?;
    if own == *channel {
        return Some(name.to_owned());
    }
    if !own.is_latest() {
        return None;
    }
    if let Some(file) = ChannelFile::parse(name) {
        return Some(
            ChannelFile {
                channel: channel.clone(),
                ..file
            }
            .file_name(),
        );
    }
    Some(match name {
        "RELEASES" => format!("RELEASES-{channel}"),
        _ => format!("{channel}.json"),
    })
}

/// The channel of a Velopack feed, `releases.{channel}.json`.
fn velopack_channel(name: &str) -> Option<Channel> {
    let channel = name.strip_prefix("releases.")?.strip_suffix(".json")?;
    Channel::parse(channel).ok()
}

/// True for a release's feed assets: electron-builder channel files, Tauri manifests,
/// Squirrel `RELEASES`, Velopack feeds.
fn is_feed(name: &str) -> bool {
    velopack_channel(name).is_some() || model::channel_of_file(name).is_some()
}

/// Why a release was not mirrored: something wrong with it (refused: nothing of it is
/// written, the run goes on with the others), or a store, GitHub or local disk that failed
/// (the run stops; run it again to resume).
enum Stop {
    Refused(String),
    Failed(anyhow::Error),
}

fn refused(reason: String) -> Stop {
    Stop::Refused(reason)
}

impl From<anyhow::Error> for Stop {
    fn from(err: anyhow::Error) -> Self {
        Stop::Failed(err)
    }
}

impl From<crate::store::StoreError> for Stop {
    fn from(err: crate::store::StoreError) -> Self {
        Stop::Failed(err.into())
    }
}

/// What the mirror needs while it works through the releases.
struct Mirror<'a> {
    store: &'a Store,
    github: &'a GitHubOrigin,
    downloads: &'a Path,
    all: &'a [ChannelRelease],
    clock: &'a Clock,
}

impl Mirror<'_> {
    /// Mirrors one release; a refusal for what is wrong with it, an error (which stops the
    /// run) for a store or GitHub that does not answer.
    async fn release(
        &self,
        release: &ChannelRelease,
        report: &mut Report,
    ) -> Result<Outcome, Stop> {
        let version = &release.version;
        let assets: Vec<&Asset> = release
            .release
            .assets
            .iter()
            .filter(|a| a.is_complete())
            .collect();
        // A name the store cannot hold refuses the release (GitHub allows more than keys do).
        for asset in &assets {
            version_key(version, &asset.name)
                .map_err(|err| refused(format!("asset `{}`: {err}", asset.name)))?;
        }
        let dir = format!("releases/v{version}");
        let present: BTreeMap<String, u64> = self
            .store
            .list_sized(&dir)
            .await
            .with_context(|| format!("listing {dir}"))?
            .into_iter()
            .collect();
        let complete = assets.iter().all(|a| match present.get(&a.name) {
            Some(size) => is_feed(&a.name) || *size == a.size,
            None => false,
        });
        if complete {
            return Ok(Outcome::InStore);
        }

        // 1. The feed assets, and what they say of every other file.
        let (feeds, artifacts): (Vec<&Asset>, Vec<&Asset>) = assets
            .iter()
            .partition(|a| is_feed(&a.name) && a.size <= MAX_MANIFEST_BYTES);
        let mut expected: BTreeMap<String, Expect> = BTreeMap::new();
        let mut feed_bytes = Vec::new();
        for asset in &feeds {
            let path = self.fetch(asset, report).await?;
            let bytes = Bytes::from(
                tokio::fs::read(&path)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?,
            );
            check_digest(asset, &bytes)?;
            for (file, expect) in listed_files(&asset.name, &bytes, release)? {
                expected
                    .entry(file)
                    .or_default()
                    .merge(expect, &asset.name)?;
            }
            // A Tauri manifest's GitHub download URLs become release-edge's, now that the
            // release is in the store.
            let bytes = if asset.name.ends_with(".json") {
                tauri_urls_through_us(&bytes, self.all).unwrap_or(bytes)
            } else {
                bytes
            };
            feed_bytes.push((asset.name.clone(), bytes));
        }
        for file in expected.keys() {
            if !assets.iter().any(|a| a.name == *file) {
                return Err(refused(format!(
                    "{} lists {file}, which the release does not have",
                    expected[file].by.join(", ")
                )));
            }
        }

        // 2. Every artifact the store lacks, downloaded and verified; those it has, checked.
        let mut to_write = Vec::new();
        for asset in &artifacts {
            let expect = expected.get(&asset.name);
            if let Some(want) = expect.and_then(|e| e.size)
                && want != asset.size
            {
                return Err(refused(format!(
                    "{} is {} bytes on GitHub, {} says {want}",
                    asset.name,
                    asset.size,
                    expect.map(|e| e.by.join(", ")).unwrap_or_default()
                )));
            }
            match present.get(&asset.name) {
                Some(&size) if size != asset.size => {
                    return Err(refused(format!(
                        "{dir}/{} is {size} bytes in the store, {} on GitHub: a published artifact never changes",
                        asset.name, asset.size
                    )));
                }
                Some(_) => {
                    if let Some(want) = expect.and_then(|e| e.sha512) {
                        let key = version_key(version, &asset.name)?;
                        let have = self.store.sha512(&key).await?;
                        if have != Some(want) {
                            return Err(refused(format!(
                                "{key} in the store differs from what {} lists: a published artifact never changes",
                                expect.map(|e| e.by.join(", ")).unwrap_or_default()
                            )));
                        }
                    }
                }
                None => {
                    let path = self.fetch(asset, report).await?;
                    let sha512 = verify(&path, asset, expect).await?;
                    to_write.push(Artifact {
                        name: asset.name.clone(),
                        path,
                        size: asset.size,
                        sha512,
                    });
                }
            }
        }

        // 3. Artifacts first, then the version's feed files beside them.
        let uploads = writer::check_artifacts(self.store, version, &to_write).await?;
        let bytes = uploads.bytes();
        let mut files = writer::upload(self.store, uploads).await?;
        for (name, body) in feed_bytes {
            let key = version_key(version, &name)?;
            match self.store.get_bytes(&key, MAX_MANIFEST_BYTES).await? {
                Some(existing) if existing != body => report.kept.push(format!(
                    "{key}: the store's copy differs from GitHub's and stands (a version's files never change)"
                )),
                Some(_) => {}
                None => {
                    writer::put_manifest(self.store, &key, body).await?;
                    files.push(name);
                }
            }
        }
        for artifact in &to_write {
            // Uploaded: the download has done its job.
            let _ = tokio::fs::remove_file(&artifact.path).await;
        }
        for asset in &feeds {
            let _ = tokio::fs::remove_file(self.download_path(asset)).await;
        }
        Ok(Outcome::Copied { files, bytes })
    }

    fn download_path(&self, asset: &Asset) -> PathBuf {
        // By asset id: a re-upload on GitHub gets a new id, so a partial download of the
        // old bytes is never resumed with the new.
        self.downloads.join(format!("{}.download", asset.id))
    }

    /// The asset's bytes in the work directory: what an earlier (killed) run downloaded is
    /// kept, and the rest fetched with a `Range` from where it stopped.
    async fn fetch(&self, asset: &Asset, report: &mut Report) -> anyhow::Result<PathBuf> {
        let path = self.download_path(asset);
        let mut attempt = 1;
        loop {
            let have = match tokio::fs::metadata(&path).await {
                Ok(meta) if meta.len() <= asset.size => meta.len(),
                Ok(_) => {
                    tokio::fs::remove_file(&path).await?;
                    0
                }
                Err(_) => 0,
            };
            if have == asset.size {
                if asset.size == 0 {
                    tokio::fs::write(&path, b"").await?;
                }
                return Ok(path);
            }
            let failed = match self.download(asset, &path, have, report).await {
                Ok(done) if done == asset.size => continue,
                // A body that ended early without an error: resumed like a failure.
                Ok(done) => Failed::GitHub(GitHubError::Unavailable {
                    message: format!("{} ended after {done} of {} bytes", asset.name, asset.size),
                    source: None,
                }),
                Err(failed) => failed,
            };
            match failed {
                Failed::GitHub(err) => {
                    let wait = wait_for(&err, attempt)
                        .with_context(|| format!("downloading {} from GitHub", asset.name))?;
                    eprintln!(
                        "GitHub: {err}; downloading {} again in {}s",
                        asset.name,
                        wait.as_secs()
                    );
                    self.clock.sleep(wait).await;
                    attempt += 1;
                }
                Failed::Local(err) => return Err(err),
            }
        }
    }

    /// Appends bytes `have..` of `asset` (`have` < its size) to `path`; returns how many
    /// bytes the file holds then.
    async fn download(
        &self,
        asset: &Asset,
        path: &Path,
        have: u64,
        report: &mut Report,
    ) -> Result<u64, Failed> {
        let range = ByteRange {
            start: have,
            end: asset.size - 1,
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))
            .map_err(Failed::Local)?;
        let bar = writer::progress_bar(asset.size);
        bar.set_message(asset.name.clone());
        bar.set_position(have);
        let mut stream = self.github.read_asset(asset, range);
        let mut done = have;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| {
                Failed::GitHub(GitHubError::Unavailable {
                    message: format!("reading {}: {err}", asset.name),
                    source: None,
                })
            })?;
            file.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", path.display()))
                .map_err(Failed::Local)?;
            done += chunk.len() as u64;
            report.downloaded += chunk.len() as u64;
            bar.set_position(done);
        }
        file.flush()
            .await
            .and(file.sync_data().await)
            .with_context(|| format!("writing {}", path.display()))
            .map_err(Failed::Local)?;
        bar.finish_and_clear();
        if bar.is_hidden() {
            eprintln!("downloaded {} ({} bytes)", asset.name, asset.size);
        }
        Ok(done)
    }
}

/// A download that stopped: GitHub's doing (worth another attempt) or ours.
enum Failed {
    GitHub(GitHubError),
    Local(anyhow::Error),
}

/// How long to wait before asking GitHub again after `err` on attempt `attempt`, or the
/// error to give up with: a rate limit waits until it resets (at most an hour); a timeout or
/// a failure is tried [`ATTEMPTS`] times with a doubling pause; a missing asset is final.
fn wait_for(err: &GitHubError, attempt: u32) -> Result<Duration, GitHubError> {
    match err {
        GitHubError::RateLimited { retry_after, .. } if attempt <= ATTEMPTS => {
            let wait = retry_after.unwrap_or(Duration::from_secs(60));
            if wait > MAX_RATE_LIMIT_WAIT {
                return Err(err.clone());
            }
            Ok(wait)
        }
        GitHubError::Timeout(_) | GitHubError::Unavailable { .. } if attempt < ATTEMPTS => {
            Ok(RETRY_BACKOFF * (1 << (attempt - 1)))
        }
        _ => Err(err.clone()),
    }
}

/// The list of releases: the copy kept in the work directory, revalidated page by page
/// (`If-None-Match`), waiting out GitHub's rate limit.
async fn list_releases(
    github: &GitHubOrigin,
    work_dir: &Path,
    clock: &Clock,
) -> anyhow::Result<ReleaseList> {
    let path = work_dir.join(LISTING_FILE);
    let cached: Option<ReleaseList> = tokio::fs::read(&path)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let mut attempt = 1;
    let list = loop {
        match github.list_every_release(cached.as_ref()).await {
            Ok(list) => break list,
            Err(err) => {
                let wait = wait_for(&err, attempt).context("listing the releases on GitHub")?;
                eprintln!(
                    "GitHub: {err}; listing the releases again in {}s",
                    wait.as_secs()
                );
                clock.sleep(wait).await;
                attempt += 1;
            }
        }
    };
    // Kept for the next run's `If-None-Match`; written whole, then renamed.
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec(&list)?;
    tokio::fs::write(&tmp, json).await?;
    tokio::fs::rename(&tmp, &path).await?;
    Ok(list)
}

/// The cached list of releases in `work_dir`, when a mirror run left one (for `status`).
pub async fn cached_list(work_dir: &Path) -> Option<ReleaseList> {
    let bytes = tokio::fs::read(work_dir.join(LISTING_FILE)).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What the feed assets say of a file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Expect {
    size: Option<u64>,
    sha512: Option<[u8; 64]>,
    sha256: Option<[u8; 32]>,
    sha1: Option<[u8; 20]>,
    /// The feed assets that list it.
    by: Vec<String>,
}

impl Expect {
    /// Adds what `by` says; two feeds that disagree about a file refuse the release.
    fn merge(&mut self, other: Expect, by: &str) -> Result<(), Stop> {
        fn one<T: PartialEq + Copy>(
            have: &mut Option<T>,
            new: Option<T>,
            what: &str,
            by: &str,
            before: &[String],
        ) -> Result<(), Stop> {
            match (*have, new) {
                (Some(a), Some(b)) if a != b => Err(refused(format!(
                    "{by} and {} disagree about the {what}",
                    before.join(", ")
                ))),
                (None, Some(b)) => {
                    *have = Some(b);
                    Ok(())
                }
                _ => Ok(()),
            }
        }
        one(&mut self.size, other.size, "size", by, &self.by)?;
        one(&mut self.sha512, other.sha512, "sha512", by, &self.by)?;
        one(&mut self.sha256, other.sha256, "sha256", by, &self.by)?;
        one(&mut self.sha1, other.sha1, "SHA-1", by, &self.by)?;
        if !self.by.iter().any(|b| b == by) {
            self.by.push(by.to_owned());
        }
        Ok(())
    }
}

/// The files a feed asset of `release` lists and what it says of each. A feed for another
/// version than the release's is refused (its relative URLs would point at the wrong
/// `releases/v{X}/`). Squirrel and Velopack feeds list a whole history: only the entries of
/// this version count (the others are other releases' files).
fn listed_files(
    name: &str,
    bytes: &[u8],
    release: &ChannelRelease,
) -> Result<Vec<(String, Expect)>, Stop> {
    let version = &release.version;
    let wrong_version = |said: &str| {
        refused(format!(
            "{name} is for version `{said}`, but the release is {}",
            release.version
        ))
    };
    let mut out = Vec::new();
    if name.ends_with(".yml") {
        let doc: Value = serde_norway::from_slice(bytes)
            .map_err(|e| refused(format!("{name} is not valid YAML: {e}")))?;
        let said = doc
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if parse_version(said).as_ref() != Some(version) {
            return Err(wrong_version(said));
        }
        let entries = doc.get("files").and_then(Value::as_sequence);
        for entry in entries.into_iter().flatten() {
            let Some(url) = entry.get("url").and_then(Value::as_str) else {
                continue;
            };
            if url.starts_with("https://") || url.starts_with("http://") {
                continue;
            }
            out.push((
                url.to_owned(),
                Expect {
                    size: entry.get("size").and_then(Value::as_u64),
                    sha512: entry
                        .get("sha512")
                        .and_then(Value::as_str)
                        .map(|s| base64_sha(s, name))
                        .transpose()?,
                    ..Expect::default()
                },
            ));
        }
        // The older single-file form: `path` and `sha512` at the top.
        if let (Some(path), Some(sha)) = (
            doc.get("path").and_then(Value::as_str),
            doc.get("sha512").and_then(Value::as_str),
        ) && !path.contains("://")
        {
            out.push((
                path.to_owned(),
                Expect {
                    sha512: Some(base64_sha(sha, name)?),
                    ..Expect::default()
                },
            ));
        }
        return Ok(out);
    }
    if name == "RELEASES" || name.starts_with("RELEASES-") {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| refused(format!("{name} is not text")))?
            .trim_start_matches('\u{feff}');
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let [sha1, package, size] = line.split_whitespace().collect::<Vec<_>>()[..] else {
                return Err(refused(format!("{name}: `{line}` is not `SHA1 name size`")));
            };
            if crate::release::squirrel::package_version(package).as_ref() != Some(version) {
                continue;
            }
            out.push((
                package.to_owned(),
                Expect {
                    size: size.parse().ok(),
                    sha1: Some(hex_sha(sha1, name)?),
                    ..Expect::default()
                },
            ));
        }
        return Ok(out);
    }
    let doc: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| refused(format!("{name} is not valid JSON: {e}")))?;
    if let Some(assets) = doc.get("Assets").and_then(serde_json::Value::as_array) {
        // Velopack: every package of the channel's history.
        for entry in assets {
            let said = entry
                .get("Version")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let Some(file) = entry.get("FileName").and_then(|v| v.as_str()) else {
                continue;
            };
            if parse_version(said).as_ref() != Some(version) {
                continue;
            }
            let hash = |key: &str| entry.get(key).and_then(|v| v.as_str());
            out.push((
                file.to_owned(),
                Expect {
                    size: entry.get("Size").and_then(serde_json::Value::as_u64),
                    sha256: hash("SHA256").map(|h| hex_sha(h, name)).transpose()?,
                    sha1: hash("SHA1").map(|h| hex_sha(h, name)).transpose()?,
                    ..Expect::default()
                },
            ));
        }
        return Ok(out);
    }
    // Tauri: `{"version", "platforms": {"darwin-aarch64": {"url", "signature"}}}`.
    let said = doc
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if parse_version(said).as_ref() != Some(version) {
        return Err(wrong_version(said));
    }
    let platforms = doc.get("platforms").and_then(serde_json::Value::as_object);
    for entry in platforms.into_iter().flat_map(|p| p.values()) {
        let Some(url) = entry.get("url").and_then(|v| v.as_str()) else {
            continue;
        };
        let own = release
            .release
            .assets
            .iter()
            .find(|a| a.browser_download_url == url)
            .map(|a| a.name.clone());
        let file = match own {
            Some(file) => file,
            None if !url.contains("://") => url.to_owned(),
            // Somewhere else entirely: not this release's to check.
            None => continue,
        };
        out.push((file, Expect::default()));
    }
    Ok(out)
}

fn base64_sha<const N: usize>(text: &str, name: &str) -> Result<[u8; N], Stop> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
        .ok_or_else(|| refused(format!("{name}: `{text}` is not a base64 hash")))
}

fn hex_sha<const N: usize>(text: &str, name: &str) -> Result<[u8; N], Stop> {
    let text = text.trim();
    let bytes: Option<Vec<u8>> = (text.len() == N * 2)
        .then(|| {
            (0..N)
                .map(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    bytes
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or_else(|| refused(format!("{name}: `{text}` is not a hex hash")))
}

/// GitHub's own `sha256:` digest of an asset, when it keeps one.
fn github_digest(asset: &Asset) -> Result<Option<[u8; 32]>, Stop> {
    match asset.digest.as_deref().map(|d| d.split_once(':')) {
        Some(Some(("sha256", hex))) => hex_sha(hex, &asset.name).map(Some),
        _ => Ok(None),
    }
}

/// A small feed asset against GitHub's digest.
fn check_digest(asset: &Asset, bytes: &[u8]) -> Result<(), Stop> {
    if bytes.len() as u64 != asset.size {
        return Err(refused(format!(
            "{}: GitHub sent {} bytes of {}",
            asset.name,
            bytes.len(),
            asset.size
        )));
    }
    if let Some(want) = github_digest(asset)? {
        let have: [u8; 32] = sha2::Sha256::digest(bytes).into();
        if have != want {
            return Err(refused(format!(
                "{}: the bytes GitHub sent do not match its sha256 digest",
                asset.name
            )));
        }
    }
    Ok(())
}

/// Checks a downloaded artifact: its size, GitHub's digest, and what the feeds say (sha512,
/// SHA-256, SHA-1). A file that fails is deleted, so that a later run downloads it anew.
/// Returns its SHA-512.
async fn verify(path: &Path, asset: &Asset, expect: Option<&Expect>) -> Result<[u8; 64], Stop> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let digests = tokio::task::spawn_blocking(move || digests(file))
        .await
        .context("hashing a download")?
        .with_context(|| format!("reading {}", path.display()))?;
    let by = expect.map(|e| e.by.join(", ")).unwrap_or_default();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut wrong = None;
    if digests.size != asset.size {
        wrong = Some(format!(
            "{} is {} bytes, GitHub says {}",
            asset.name, digests.size, asset.size
        ));
    } else if github_digest(asset)?.is_some_and(|want| want != digests.sha256) {
        wrong = Some(format!(
            "{}: sha256 differs from GitHub's digest",
            asset.name
        ));
    } else if let Some(expect) = expect {
        if expect.sha512.is_some_and(|want| want != digests.sha512) {
            wrong = Some(format!(
                "{}: sha512 {} differs from {by}'s {}",
                asset.name,
                b64(&digests.sha512),
                expect.sha512.map(|s| b64(&s)).unwrap_or_default()
            ));
        } else if expect.sha256.is_some_and(|want| want != digests.sha256) {
            wrong = Some(format!("{}: SHA256 differs from {by}'s", asset.name));
        } else if expect.sha1.is_some_and(|want| want != digests.sha1) {
            wrong = Some(format!("{}: SHA1 differs from {by}'s", asset.name));
        }
    }
    if let Some(wrong) = wrong {
        let _ = tokio::fs::remove_file(path).await;
        return Err(refused(wrong));
    }
    Ok(digests.sha512)
}

struct Digests {
    size: u64,
    sha512: [u8; 64],
    sha256: [u8; 32],
    sha1: [u8; 20],
}

/// Every hash a feed may give, in one read of the file (blocking).
fn digests(file: std::fs::File) -> std::io::Result<Digests> {
    use std::io::Read;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let (mut s512, mut s256, mut s1) =
        (sha2::Sha512::new(), sha2::Sha256::new(), sha1::Sha1::new());
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s512.update(&buf[..n]);
        s256.update(&buf[..n]);
        s1.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Digests {
        size,
        sha512: s512.finalize().into(),
        sha256: s256.finalize().into(),
        sha1: s1.finalize().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::github::model::{Release, servable, test_release};

    fn release(tag: &str, prerelease: bool, assets: &[&str]) -> Release {
        let sized: Vec<(&str, u64)> = assets.iter().map(|name| (*name, 1)).collect();
        test_release(tag, prerelease, &sized)
    }

    fn reason(stop: Stop) -> String {
        match stop {
            Stop::Refused(reason) => reason,
            Stop::Failed(err) => format!("failed: {err}"),
        }
    }

    fn channels(names: &[&str]) -> BTreeSet<Channel> {
        names.iter().map(|n| Channel::parse(n).unwrap()).collect()
    }

    #[test]
    fn channel_files_come_from_the_newest_release_that_has_them() {
        let all = servable(vec![
            release(
                "v1.0.0",
                false,
                &["latest-mac.yml", "latest-linux.yml", "RELEASES"],
            ),
            release("v1.1.0", false, &["latest-mac.yml", "latest.json"]),
            release(
                "v1.2.0-beta.1",
                true,
                &["beta-mac.yml", "releases.beta.json", "App.zip"],
            ),
            release("v0.9.0-alpha.1", true, &["latest.yml"]),
        ]);
        let got: Vec<(String, String, String, String)> =
            channel_sources(&all, &channels(&["latest", "beta", "alpha"]))
                .into_iter()
                .map(|s| {
                    (
                        s.channel.to_string(),
                        s.file,
                        s.version.to_string(),
                        s.asset,
                    )
                })
                .collect();
        let row = |c: &str, f: &str, v: &str, a: &str| {
            (c.to_owned(), f.to_owned(), v.to_owned(), a.to_owned())
        };
        assert_eq!(
            got,
            [
                // alpha: its own release's `latest.yml`, and the stable releases' files.
                row("alpha", "RELEASES-alpha", "1.0.0", "RELEASES"),
                row("alpha", "alpha-linux.yml", "1.0.0", "latest-linux.yml"),
                row("alpha", "alpha-mac.yml", "1.1.0", "latest-mac.yml"),
                row("alpha", "alpha.json", "1.1.0", "latest.json"),
                row("alpha", "alpha.yml", "0.9.0-alpha.1", "latest.yml"),
                // beta: the beta release first, then stable.
                row("beta", "RELEASES-beta", "1.0.0", "RELEASES"),
                row("beta", "beta-linux.yml", "1.0.0", "latest-linux.yml"),
                row("beta", "beta-mac.yml", "1.2.0-beta.1", "beta-mac.yml"),
                row("beta", "beta.json", "1.1.0", "latest.json"),
                row(
                    "beta",
                    "releases.beta.json",
                    "1.2.0-beta.1",
                    "releases.beta.json"
                ),
                // latest: stable releases only.
                row("latest", "RELEASES", "1.0.0", "RELEASES"),
                row("latest", "latest-linux.yml", "1.0.0", "latest-linux.yml"),
                row("latest", "latest-mac.yml", "1.1.0", "latest-mac.yml"),
                row("latest", "latest.json", "1.1.0", "latest.json"),
            ]
        );
    }

    #[test]
    fn feeds_say_what_each_file_must_be() {
        let all = servable(vec![release(
            "v1.2.0",
            false,
            &[
                "latest-mac.yml",
                "App-1.2.0.zip",
                "RELEASES",
                "App-1.2.0-full.nupkg",
            ],
        )]);
        let r = &all[0];
        let sha = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        let yml = format!(
            "version: 1.2.0\nfiles:\n  - url: App-1.2.0.zip\n    sha512: {sha}\n    size: 10\n  - url: https://elsewhere/x.zip\npath: App-1.2.0.zip\nsha512: {sha}\n"
        );
        let files = listed_files("latest-mac.yml", yml.as_bytes(), r)
            .map_err(reason)
            .unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "App-1.2.0.zip");
        assert_eq!(files[0].1.size, Some(10));
        assert_eq!(files[0].1.sha512, Some([7u8; 64]));
        let wrong = listed_files("latest-mac.yml", b"version: 1.1.0\nfiles: []\n", r);
        assert!(wrong.map_err(reason).is_err_and(|e| e.contains("`1.1.0`")));

        let releases = "E3F67244E4166A65310C816221A12685C83F8E6F App-1.1.0-full.nupkg 5\n\
                        85F4D657F8424DD437D1B33CC4511EA7AD86B1A7 App-1.2.0-full.nupkg 12\n";
        let files = listed_files("RELEASES", releases.as_bytes(), r)
            .map_err(reason)
            .unwrap();
        assert_eq!(files.len(), 1, "only this version's package");
        assert_eq!(files[0].1.size, Some(12));
        assert_eq!(files[0].1.sha1.map(|s| s[0]), Some(0x85));

        let velopack = r#"{"Assets":[
            {"PackageId":"App","Version":"1.2.0","Type":"Full","FileName":"App-1.2.0-full.nupkg","SHA1":"85F4D657F8424DD437D1B33CC4511EA7AD86B1A7","SHA256":"0000000000000000000000000000000000000000000000000000000000000001","Size":12},
            {"PackageId":"App","Version":"1.1.0","Type":"Full","FileName":"App-1.1.0-full.nupkg","Size":5}]}"#;
        let files = listed_files("releases.win.json", velopack.as_bytes(), r)
            .map_err(reason)
            .unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].1.sha256.map(|s| s[31]), Some(1));

        let mut e = Expect::default();
        e.merge(
            Expect {
                size: Some(1),
                ..Expect::default()
            },
            "a.yml",
        )
        .map_err(reason)
        .unwrap();
        let clash = e.merge(
            Expect {
                size: Some(2),
                ..Expect::default()
            },
            "b.yml",
        );
        assert!(
            clash
                .map_err(reason)
                .is_err_and(|e| e.contains("disagree about the size"))
        );
    }

    #[test]
    fn waits_follow_what_github_said() {
        let limited = GitHubError::RateLimited {
            message: "x".into(),
            retry_after: Some(Duration::from_secs(42)),
        };
        assert_eq!(wait_for(&limited, 1).ok(), Some(Duration::from_secs(42)));
        let long = GitHubError::RateLimited {
            message: "x".into(),
            retry_after: Some(Duration::from_secs(7200)),
        };
        assert!(wait_for(&long, 1).is_err(), "longer than an hour: give up");
        let down = GitHubError::Timeout(Duration::from_secs(1));
        let waits: Vec<u64> = (1..ATTEMPTS)
            .map(|a| wait_for(&down, a).unwrap().as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8]);
        assert!(wait_for(&down, ATTEMPTS).is_err());
        let gone = GitHubError::NotFound { what: "x".into() };
        assert!(wait_for(&gone, 1).is_err());
    }
}
