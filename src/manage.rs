//! The release manager's operations (SPEC §2.4, §2.5), against the store itself: read and
//! change a channel's policy (replace, halt, resume, rollout, yank, unyank), roll back, list
//! what the store holds, and keep the append-only audit trail. The admin API and the CLI
//! both call these, so both make the same checks and write the same audit entries.
//!
//! Every change is a compare-and-swap on `policy/{channel}.json` ([`Store::put_bytes_if`]):
//! an explicit replacement carries the ETag its author read (`If-Match`) and fails when the
//! document changed since; a shortcut (halt, yank, ...) reads, changes and writes, and reads
//! again when another writer came between. Nothing is written when a check refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use semver::Version;
use serde::Serialize;
use serde_json::json;

use crate::inventory::{Location, Place};
use crate::publish;
use crate::release::channel::{Channel, InvalidChannel};
use crate::release::electron::ChannelFile;
use crate::release::platform::{Format, platform_of_file};
use crate::release::policy::{ChannelPolicy, MAX_POLICY_BYTES, PolicyError, parse_percentage};
use crate::release::{MAX_MANIFEST_BYTES, channel_of, parse_version};
use crate::store::key::{AUDIT_DIR, POLICY_PREFIX, RELEASES_PREFIX};
use crate::store::{Conditional, ObjectKey, Precondition, Store, StoreError};
use crate::versions::channel_of_file;

/// How often a shortcut reads again when another writer changed the policy under it.
const ATTEMPTS: usize = 5;

/// Version directories listed at once when the store is walked.
const LIST_CONCURRENCY: usize = 16;

/// The newest audit entries `GET /admin/audit` returns by default, and at most.
pub const AUDIT_DEFAULT: usize = 50;
/// See [`AUDIT_DEFAULT`].
pub const AUDIT_MAX: usize = 1000;

/// Why a change was refused (nothing was written), or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// Not a channel name.
    #[error(transparent)]
    Channel(#[from] InvalidChannel),
    /// Not a semver version.
    #[error("`{0}` is not a semver version (like 1.2.3)")]
    Version(String),
    /// A policy document (or a value of one) that does not validate.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The store has no such version for the channel.
    #[error(
        "version {version} has no channel files for `{channel}` in the store (looked in releases/v{version}/)"
    )]
    UnknownVersion {
        /// The version named.
        version: Version,
        /// The channel.
        channel: Channel,
    },
    /// The change would leave a platform of the channel with nothing to serve.
    #[error(
        "refused: {file} of channel `{channel}` would have no version left to serve ({versions}); publish a fixed version, or unyank one, first"
    )]
    LastServable {
        /// The channel.
        channel: Channel,
        /// The channel file that would be left empty (its platform).
        file: String,
        /// What makes it empty: the versions it has, all yanked.
        versions: String,
    },
    /// `minimum_version` above every version the channel can serve.
    #[error(
        "refused: minimum_version {minimum} is above every servable version of `{channel}` (newest: {newest}); no client could satisfy it"
    )]
    MinimumTooHigh {
        /// The channel.
        channel: Channel,
        /// The minimum asked for.
        minimum: Version,
        /// The newest servable version, or "none".
        newest: String,
    },
    /// Unyank of a version that is not yanked.
    #[error("version {version} is not yanked in channel `{channel}`")]
    NotYanked {
        /// The version named.
        version: Version,
        /// The channel.
        channel: Channel,
    },
    /// A rollback to a version the policy yanks.
    #[error(
        "version {version} is yanked in channel `{channel}`; unyank it before rolling back to it"
    )]
    RollbackToYanked {
        /// The version named.
        version: Version,
        /// The channel.
        channel: Channel,
    },
    /// The policy changed since its ETag was read (`If-Match`), or exists already
    /// (`If-None-Match: *`).
    #[error(
        "the policy of `{channel}` changed since it was read (its ETag is now {}); read it again and reapply the change",
        current.as_deref().unwrap_or("none: it was deleted")
    )]
    Stale {
        /// The channel.
        channel: Channel,
        /// The ETag now (quoted), if there is a document.
        current: Option<String>,
    },
    /// A replacement without `If-Match` or `If-None-Match: *`.
    #[error(
        "replacing a policy needs If-Match with its ETag (from GET /admin/channels/{channel}/policy), or If-None-Match: * when there is none yet"
    )]
    PreconditionRequired {
        /// The channel.
        channel: Channel,
    },
    /// A yank without a reason.
    #[error("a yank needs a reason (it is kept in the policy and the audit trail)")]
    NoReason,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored document that does not parse, or a rollback that failed part-way.
    #[error("{0}")]
    Other(String),
}

/// A channel's policy as stored, with its ETag (`None`: there is no document).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPolicy {
    /// The policy (the default when there is no document).
    pub policy: ChannelPolicy,
    /// The document's ETag, quoted.
    pub etag: Option<String>,
}

/// What a change did.
#[derive(Debug, Clone)]
pub struct Change {
    /// The channel.
    pub channel: Channel,
    /// The action (`release_edge_admin_changes_total`'s label).
    pub action: &'static str,
    /// The policy before.
    pub before: ChannelPolicy,
    /// The policy after.
    pub after: ChannelPolicy,
    /// The document's ETag now.
    pub etag: Option<String>,
    /// False when the policy already was so: nothing written, no audit entry.
    pub changed: bool,
}

impl Change {
    /// The API's answer to a change.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "channel": self.channel.as_str(),
            "action": self.action,
            "changed": self.changed,
            "policy": self.after.to_json(),
            "etag": self.etag,
        })
    }
}

/// Who made a change: a token's name, or the CLI's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// The CLI's user: `cli:` and `$USER` (or `$LOGNAME`).
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Self(format!("cli:{user}"))
    }
}

/// The channel files of every release version in the store, by channel.
#[derive(Debug, Default)]
struct Holdings {
    /// Channel → version → the channel's files in `releases/v{version}/`.
    channels: BTreeMap<Channel, BTreeMap<Version, BTreeSet<String>>>,
    /// Version → every file in `releases/v{version}/`.
    files: BTreeMap<Version, Vec<String>>,
}

impl Holdings {
    fn of(&self, channel: &Channel) -> BTreeMap<Version, BTreeSet<String>> {
        self.channels.get(channel).cloned().unwrap_or_default()
    }
}

/// The release manager, over one store. Cheap to clone; clones share the audit clock.
#[derive(Clone)]
pub struct Manager {
    store: Store,
    /// The millisecond of the last audit entry this process named: names stay in the order
    /// of the changes even within one millisecond (or on a clock that stands still).
    last_entry: Arc<AtomicU64>,
}

fn parse_channel(name: &str) -> Result<Channel, ManageError> {
    Ok(Channel::parse(name)?)
}

/// Parses a version named by the manager.
pub fn parse_named_version(text: &str) -> Result<Version, ManageError> {
    parse_version(text).ok_or_else(|| ManageError::Version(text.chars().take(80).collect()))
}

/// A version named by the manager and the channel it is named in: `channel`, else the
/// version's own (`1.2.0-beta.1` → `beta`).
fn version_and_channel(
    version: &str,
    channel: Option<&str>,
) -> Result<(Version, Channel), ManageError> {
    let version = parse_named_version(version)?;
    let channel = match channel {
        Some(name) => parse_channel(name)?,
        None => channel_of(&version),
    };
    Ok((version, channel))
}

impl Manager {
    /// The manager of `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            last_entry: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A channel's policy and its ETag, read from the store now.
    pub async fn policy(&self, channel: &Channel) -> Result<StoredPolicy, ManageError> {
        let key = ObjectKey::policy(channel);
        match self
            .store
            .get_with_etag(&key, MAX_POLICY_BYTES as u64)
            .await?
        {
            None => Ok(StoredPolicy {
                policy: ChannelPolicy::default(),
                etag: None,
            }),
            Some((bytes, etag)) => Ok(StoredPolicy {
                policy: ChannelPolicy::parse(&bytes).map_err(|e| {
                    ManageError::Other(format!(
                        "{key} in the store does not parse ({e}); replace it with If-Match {etag}"
                    ))
                })?,
                etag: Some(etag),
            }),
        }
    }

    /// Replaces a channel's policy with `new`, when the stored one is as `precondition`
    /// says (`If-Match` / `If-None-Match: *`).
    pub async fn replace(
        &self,
        channel: &Channel,
        new: ChannelPolicy,
        precondition: Option<Precondition>,
        who: &Actor,
        at: SystemTime,
    ) -> Result<Change, ManageError> {
        let Some(precondition) = precondition else {
            return Err(ManageError::PreconditionRequired {
                channel: channel.clone(),
            });
        };
        let stored = self.policy(channel).await?;
        let holds = match (&precondition, &stored.etag) {
            (Precondition::Absent, None) => true,
            (Precondition::Matches(want), Some(have)) => want == have,
            _ => false,
        };
        if !holds {
            return Err(ManageError::Stale {
                channel: channel.clone(),
                current: stored.etag,
            });
        }
        let holdings = self.holdings().await?;
        check(channel, &stored.policy, &new, &holdings.of(channel))?;
        self.write(
            channel,
            "policy",
            &stored.policy,
            new,
            precondition,
            who,
            at,
            None,
        )
        .await
    }

    /// Halts the channel's rollout: its current release goes to nobody new.
    pub async fn halt(
        &self,
        channel: &Channel,
        who: &Actor,
        at: SystemTime,
    ) -> Result<Change, ManageError> {
        self.modify(channel, "halt", who, at, None, |p| {
            p.rollout.halted = true;
            Ok(())
        })
        .await
    }

    /// Resumes a halted rollout (at its percentage).
    pub async fn resume(
        &self,
        channel: &Channel,
        who: &Actor,
        at: SystemTime,
    ) -> Result<Change, ManageError> {
        self.modify(channel, "resume", who, at, None, |p| {
            p.rollout.halted = false;
            Ok(())
        })
        .await
    }

    /// Sets the rollout percentage (0–100, a JSON number as the API and the CLI give it).
    pub async fn rollout(
        &self,
        channel: &Channel,
        percentage: &serde_json::Value,
        who: &Actor,
        at: SystemTime,
    ) -> Result<Change, ManageError> {
        let percentage = parse_percentage(percentage)?;
        self.modify(channel, "rollout", who, at, None, |p| {
            p.rollout.percentage = percentage;
            Ok(())
        })
        .await
    }

    /// Yanks `version` from `channel` (by default the version's own channel: `1.2.0-beta.1`
    /// → `beta`): no feed offers it again; its files stay downloadable.
    pub async fn yank(
        &self,
        version: &str,
        channel: Option<&str>,
        reason: &str,
        who: &Actor,
        at: SystemTime,
    ) -> Result<Change, ManageError> {
        let (version, channel) = version_and_channel(version, channel)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ManageError::NoReason);
        }
        let detail = json!({ "version": version.to_string(), "reason": reason });
        self.modify(&channel, "yank", who, at, Some(detail), |p| {
            p.yanked.insert(version.clone(), reason.to_owned());
            Ok(())
        })
        .await
    }

    /// Offers `version` again.
    pub async fn unyank(
        &self,
        version: &str,
        channel: Option<&str>,
        who: &Actor,
        at: SystemTime,
    ) -> Result<Change, ManageError> {
        let (version, channel) = version_and_channel(version, channel)?;
        let detail = json!({ "version": version.to_string() });
        self.modify(&channel, "unyank", who, at, Some(detail), |p| {
            match p.yanked.remove(&version) {
                Some(_) => Ok(()),
                None => Err(ManageError::NotYanked {
                    version: version.clone(),
                    channel: channel.clone(),
                }),
            }
        })
        .await
    }

    /// Read, change, check and write, reading again when another writer came between.
    async fn modify(
        &self,
        channel: &Channel,
        action: &'static str,
        who: &Actor,
        at: SystemTime,
        detail: Option<serde_json::Value>,
        change: impl Fn(&mut ChannelPolicy) -> Result<(), ManageError>,
    ) -> Result<Change, ManageError> {
        let holdings = self.holdings().await?;
        let versions = holdings.of(channel);
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let stored = self.policy(channel).await?;
            let mut after = stored.policy.clone();
            change(&mut after)?;
            check(channel, &stored.policy, &after, &versions)?;
            if after == stored.policy {
                return Ok(Change {
                    channel: channel.clone(),
                    action,
                    before: stored.policy,
                    after,
                    etag: stored.etag,
                    changed: false,
                });
            }
            let precondition = match &stored.etag {
                Some(etag) => Precondition::Matches(etag.clone()),
                None => Precondition::Absent,
            };
            match self
                .write(
                    channel,
                    action,
                    &stored.policy,
                    after,
                    precondition,
                    who,
                    at,
                    detail.clone(),
                )
                .await
            {
                Err(ManageError::Stale { current, .. }) => last = current,
                other => return other,
            }
        }
        Err(ManageError::Stale {
            channel: channel.clone(),
            current: last,
        })
    }

    /// Writes `after` over `before` under `precondition`, then its audit entry.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        channel: &Channel,
        action: &'static str,
        before: &ChannelPolicy,
        after: ChannelPolicy,
        precondition: Precondition,
        who: &Actor,
        at: SystemTime,
        detail: Option<serde_json::Value>,
    ) -> Result<Change, ManageError> {
        let key = ObjectKey::policy(channel);
        let written = self
            .store
            .put_bytes_if(&key, Bytes::from(after.to_bytes()), precondition)
            .await?;
        let etag = match written {
            Conditional::Written { etag } => etag,
            Conditional::Failed { current } => {
                return Err(ManageError::Stale {
                    channel: channel.clone(),
                    current,
                });
            }
        };
        let mut entry = json!({
            "before": before.to_json(),
            "after": after.to_json(),
        });
        if let Some(detail) = detail {
            entry["detail"] = detail;
        }
        self.audit_entry(channel, action, who, at, entry).await?;
        Ok(Change {
            channel: channel.clone(),
            action,
            before: before.clone(),
            after,
            etag: Some(etag),
            changed: true,
        })
    }

    /// Appends one entry to the audit trail: `policy/audit/{millis}-{channel}-{action}-{random}.json`,
    /// created only if absent (never overwriting another's).
    async fn audit_entry(
        &self,
        channel: &Channel,
        action: &str,
        who: &Actor,
        at: SystemTime,
        mut entry: serde_json::Value,
    ) -> Result<(), ManageError> {
        let now = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // Later than every entry this process named before, so that names sort as the
        // changes happened.
        let mut last = self.last_entry.load(Ordering::Acquire);
        let millis = loop {
            let next = now.max(last.saturating_add(1));
            match self.last_entry.compare_exchange_weak(
                last,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break next,
                Err(seen) => last = seen,
            }
        };
        entry["at"] = json!(humantime::format_rfc3339_millis(at).to_string());
        entry["who"] = json!(who.0);
        entry["action"] = json!(action);
        entry["channel"] = json!(channel.as_str());
        let name = format!(
            "{millis:013}-{channel}-{action}-{:08x}.json",
            fastrand::u32(..)
        );
        let key = ObjectKey::audit(&name).map_err(|e| ManageError::Other(e.to_string()))?;
        let bytes =
            serde_json::to_vec_pretty(&entry).map_err(|e| ManageError::Other(e.to_string()))?;
        match self
            .store
            .put_bytes_if(&key, Bytes::from(bytes), Precondition::Absent)
            .await
        {
            Ok(Conditional::Written { .. }) => Ok(()),
            Ok(Conditional::Failed { .. }) => Err(ManageError::Other(format!(
                "the change was written, but the audit entry {key} already exists"
            ))),
            Err(err) => {
                tracing::error!(key = %key, error = %err, "the change was written, but its audit entry was not");
                Err(err.into())
            }
        }
    }

    /// Serves version `to` on `channel` again (SPEC §2.4: its channel files copied over
    /// `releases/latest/`, each write atomic), with an audit entry. Returns the keys written.
    pub async fn rollback(
        &self,
        channel: &str,
        to: &str,
        who: &Actor,
        at: SystemTime,
    ) -> Result<Vec<String>, ManageError> {
        let channel = parse_channel(channel)?;
        let version = parse_named_version(to)?;
        let holdings = self.holdings().await?;
        if !holdings.of(&channel).contains_key(&version) {
            return Err(ManageError::UnknownVersion { version, channel });
        }
        if self.policy(&channel).await?.policy.is_yanked(&version) {
            return Err(ManageError::RollbackToYanked { version, channel });
        }
        let before = self.served(&channel).await?;
        let written = publish::rollback(&self.store, channel.as_str(), &version.to_string())
            .await
            .map_err(|e| ManageError::Other(format!("{e:#}")))?;
        let after = self.served(&channel).await?;
        let entry = json!({
            "before": { "serves": before },
            "after": { "serves": after },
            "detail": { "version": version.to_string() },
        });
        self.audit_entry(&channel, "rollback", who, at, entry)
            .await?;
        Ok(written)
    }

    /// The newest audit entries (at most `limit`, newest first), of `channel` or all.
    pub async fn audit(
        &self,
        limit: usize,
        channel: Option<&Channel>,
    ) -> Result<Vec<serde_json::Value>, ManageError> {
        let dir = format!("{POLICY_PREFIX}/{AUDIT_DIR}");
        let mut names = self.store.list(&dir).await?;
        names.sort_unstable_by(|a, b| b.cmp(a));
        let wanted = names.into_iter().filter(|name| match channel {
            // `{millis}-{channel}-{action}-{random}.json`: the channel is the second field.
            Some(channel) => name
                .split_once('-')
                .is_some_and(|(_, rest)| rest.starts_with(&format!("{channel}-"))),
            None => true,
        });
        let mut entries = Vec::new();
        for name in wanted {
            if entries.len() >= limit.min(AUDIT_MAX) {
                break;
            }
            let key = ObjectKey::audit(&name).map_err(|e| ManageError::Other(e.to_string()))?;
            let Some(bytes) = self.store.get_bytes(&key, MAX_POLICY_BYTES as u64).await? else {
                continue;
            };
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(entry)
                    if channel.is_none_or(|c| entry["channel"].as_str() == Some(c.as_str())) =>
                {
                    entries.push(entry)
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(key = %key, error = %err, "audit entry does not parse; skipped")
                }
            }
        }
        Ok(entries)
    }

    /// The versions `releases/latest/` serves for `channel`: channel file → version.
    async fn served(&self, channel: &Channel) -> Result<BTreeMap<String, String>, ManageError> {
        let mut served = BTreeMap::new();
        for name in self
            .store
            .list(&format!("{RELEASES_PREFIX}/latest"))
            .await?
        {
            let kind = served_kind(&name);
            if kind.is_none() || channel_of_file(&name).as_ref() != Some(channel) {
                continue;
            }
            let key = ObjectKey::from_trusted(format!("{RELEASES_PREFIX}/latest/{name}"))
                .map_err(|e| ManageError::Other(e.to_string()))?;
            if let Some(bytes) = self.store.get_bytes(&key, MAX_MANIFEST_BYTES).await?
                && let Some(version) = kind.and_then(|kind| served_version(kind, &bytes))
            {
                served.insert(name, version.to_string());
            }
        }
        Ok(served)
    }

    /// Every release version's files, and the channel files by channel.
    async fn holdings(&self) -> Result<Holdings, ManageError> {
        use futures_util::StreamExt;
        let versions = self.store.list_versions().await?;
        let listed: Vec<Result<(Version, Vec<String>), StoreError>> =
            futures_util::stream::iter(versions)
                .map(|version| async move {
                    let files = self
                        .store
                        .list(&format!("{RELEASES_PREFIX}/v{version}"))
                        .await?;
                    Ok((version, files))
                })
                .buffered(LIST_CONCURRENCY)
                .collect()
                .await;
        let mut holdings = Holdings::default();
        for listed in listed {
            let (version, files) = listed?;
            for name in &files {
                let channel = match ChannelFile::parse(name) {
                    Some(file) => Some(file.channel),
                    // Tauri's `{channel}.json`, and Velopack's `releases.{channel}.json`
                    // (a `vpk` publish keeps it beside the version).
                    None if name.ends_with(".json") => channel_of_file(name),
                    None => None,
                };
                if let Some(channel) = channel {
                    holdings
                        .channels
                        .entry(channel)
                        .or_default()
                        .entry(version.clone())
                        .or_default()
                        .insert(name.clone());
                }
            }
            holdings.files.insert(version, files);
        }
        // The versions a Velopack feed or a Sparkle appcast of `releases/latest/` lists
        // belong to its channel (a Sparkle release's folder holds no channel file).
        for name in self
            .store
            .list(&format!("{RELEASES_PREFIX}/latest"))
            .await?
        {
            let (Some(kind @ (ServedKind::Velopack | ServedKind::Sparkle)), Some(channel)) =
                (served_kind(&name), channel_of_file(&name))
            else {
                continue;
            };
            let key = ObjectKey::from_trusted(format!("{RELEASES_PREFIX}/latest/{name}"))
                .map_err(|e| ManageError::Other(e.to_string()))?;
            let Some(bytes) = self.store.get_bytes(&key, MAX_MANIFEST_BYTES).await? else {
                continue;
            };
            for version in listed_versions(kind, &bytes) {
                if holdings.files.contains_key(&version) {
                    holdings
                        .channels
                        .entry(channel.clone())
                        .or_default()
                        .entry(version)
                        .or_default()
                        .insert(name.clone());
                }
            }
        }
        Ok(holdings)
    }

    /// What the store holds: every channel (what it serves, its current and previous
    /// release under its policy, its policy) and every version (its channels, its files by
    /// platform, where it lives). `GET /admin/releases` and `release-edge status`.
    /// `locations`: where each version lives ([`crate::inventory`]: the store, GitHub or
    /// both); a version only on GitHub is listed too.
    pub async fn inventory(&self, locations: &[Location]) -> Result<Inventory, ManageError> {
        let holdings = self.holdings().await?;
        let mut names: BTreeSet<Channel> = holdings.channels.keys().cloned().collect();
        for name in self
            .store
            .list(&format!("{RELEASES_PREFIX}/latest"))
            .await?
        {
            names.extend(channel_of_file(&name));
        }
        for name in self.store.list(POLICY_PREFIX).await? {
            if let Some(stem) = name.strip_suffix(".json") {
                names.extend(Channel::parse(stem).ok());
            }
        }
        let mut channels = Vec::new();
        for channel in names {
            let stored = self.policy(&channel).await?;
            let versions = holdings.of(&channel);
            let served = self.served(&channel).await?;
            let newest_served = served.values().filter_map(|v| parse_version(v)).max();
            let mut servable = versions
                .keys()
                .filter(|v| !stored.policy.is_yanked(v))
                .filter(|v| newest_served.as_ref().is_none_or(|n| *v <= n))
                .rev();
            let current = servable.next().map(Version::to_string);
            let previous = servable.next().map(Version::to_string);
            channels.push(ChannelStatus {
                channel: channel.to_string(),
                serves: served,
                current,
                previous,
                versions: versions.keys().map(Version::to_string).collect(),
                policy: stored.policy.to_json(),
                policy_etag: stored.etag,
            });
        }
        let place = |version: &Version| {
            locations
                .iter()
                .find(|l| &l.version == version)
                .map_or(Place::Store, |l| l.place)
        };
        let mut versions: Vec<VersionStatus> = holdings
            .files
            .iter()
            .map(|(version, files)| VersionStatus {
                version: version.clone(),
                channels: holdings
                    .channels
                    .iter()
                    .filter(|(_, versions)| versions.contains_key(version))
                    .map(|(channel, _)| channel.to_string())
                    .collect(),
                files: files_by_platform(files),
                place: place(version),
            })
            .collect();
        // Only on GitHub: served only while GitHub answers (`mirror` copies it).
        versions.extend(
            locations
                .iter()
                .filter(|l| l.place == Place::GitHub)
                .map(|l| VersionStatus {
                    version: l.version.clone(),
                    channels: vec![l.channel.to_string()],
                    files: BTreeMap::new(),
                    place: Place::GitHub,
                }),
        );
        versions.sort_by(|a, b| b.version.cmp(&a.version));
        Ok(Inventory { channels, versions })
    }
}

/// The kinds of `releases/latest/` file that name the version a channel serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServedKind {
    /// electron-builder's channel file.
    Electron,
    /// Velopack's `releases.{channel}.json`.
    Velopack,
    /// Sparkle's `appcast[-{channel}].xml`.
    Sparkle,
}

fn served_kind(name: &str) -> Option<ServedKind> {
    if ChannelFile::parse(name).is_some() {
        Some(ServedKind::Electron)
    } else if crate::release::velopack::feed_channel(name).is_some() {
        Some(ServedKind::Velopack)
    } else if crate::release::sparkle::channel_of_file(name).is_some() {
        Some(ServedKind::Sparkle)
    } else {
        None
    }
}

/// The releases a served file lists, newest first: a feed's full packages, an appcast's
/// items (a channel file names one).
fn listed_versions(kind: ServedKind, bytes: &[u8]) -> Vec<Version> {
    match kind {
        ServedKind::Electron => yaml_version(bytes).into_iter().collect(),
        ServedKind::Velopack => crate::release::velopack::VelopackFeed::parse(bytes)
            .map(|feed| feed.full_versions())
            .unwrap_or_default(),
        // URLs do not matter here: only the items' versions are read.
        ServedKind::Sparkle => crate::release::sparkle::Appcast::parse(bytes, "")
            .map(|appcast| appcast.versions())
            .unwrap_or_default(),
    }
}

/// The version a served file offers: its newest.
fn served_version(kind: ServedKind, bytes: &[u8]) -> Option<Version> {
    listed_versions(kind, bytes).into_iter().max()
}

/// A version's files by platform (`darwin`, `win32`, `linux`), installers and update
/// archives only; everything else (channel files, blockmaps, signatures) under `other`.
fn files_by_platform(files: &[String]) -> BTreeMap<&'static str, Vec<String>> {
    let mut by = BTreeMap::new();
    for name in files {
        let platform = Format::from_file_name(name)
            .and_then(|format| platform_of_file(name, format))
            .map_or("other", |p| p.as_str());
        by.entry(platform)
            .or_insert_with(Vec::new)
            .push(name.clone());
    }
    by
}

/// The `version` of a channel file.
fn yaml_version(bytes: &[u8]) -> Option<Version> {
    let doc: serde_norway::Value = serde_norway::from_slice(bytes).ok()?;
    match doc.get("version")? {
        serde_norway::Value::String(s) => parse_version(s),
        other => parse_version(&serde_norway::to_string(other).ok()?),
    }
}

/// One channel in [`Inventory`].
#[derive(Debug, Clone, Serialize)]
pub struct ChannelStatus {
    /// The channel.
    pub channel: String,
    /// `releases/latest/` channel file → the version it serves.
    pub serves: BTreeMap<String, String>,
    /// The newest version not yanked, at or below what is served.
    pub current: Option<String>,
    /// The one before it (offered to clients a rollout leaves out).
    pub previous: Option<String>,
    /// Every version with channel files for this channel, oldest first.
    pub versions: Vec<String>,
    /// The policy document.
    pub policy: serde_json::Value,
    /// Its ETag (for `If-Match`), when there is one.
    pub policy_etag: Option<String>,
}

/// One version in [`Inventory`].
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    /// The version.
    #[serde(serialize_with = "as_text")]
    pub version: Version,
    /// The channels it has channel files for (a GitHub-only version: its GitHub channel).
    pub channels: Vec<String>,
    /// Its files in the store, by platform.
    pub files: BTreeMap<&'static str, Vec<String>>,
    /// Where it lives: `store`, `github` or `both` (as `release-edge status` says).
    pub place: Place,
}

fn as_text<S: serde::Serializer>(version: &Version, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(version)
}

/// What the store holds.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// Every channel.
    pub channels: Vec<ChannelStatus>,
    /// Every version, newest first.
    pub versions: Vec<VersionStatus>,
}

/// The checks a new policy must pass against the store's versions of the channel
/// (`versions`: version → its channel files). Only what the change adds is checked, so a
/// document that was valid stays editable after a version is deleted from the store.
fn check(
    channel: &Channel,
    before: &ChannelPolicy,
    after: &ChannelPolicy,
    versions: &BTreeMap<Version, BTreeSet<String>>,
) -> Result<(), ManageError> {
    let unknown = |version: &Version| ManageError::UnknownVersion {
        version: version.clone(),
        channel: channel.clone(),
    };
    for version in after.yanked.keys().chain(after.notes.keys()) {
        let new = !before.yanked.contains_key(version) && !before.notes.contains_key(version);
        if new && !versions.contains_key(version) {
            return Err(unknown(version));
        }
    }
    // Every channel file (platform) that had a version to serve keeps one.
    let files: BTreeSet<&String> = versions.values().flatten().collect();
    for file in files {
        let with_file = || versions.iter().filter(|(_, f)| f.contains(file));
        let servable = |p: &ChannelPolicy| with_file().any(|(v, _)| !p.is_yanked(v));
        if servable(before) && !servable(after) {
            return Err(ManageError::LastServable {
                channel: channel.clone(),
                file: file.clone(),
                versions: with_file()
                    .map(|(v, _)| format!("{v} yanked"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    if let Some(minimum) = &after.minimum_version
        && before.minimum_version.as_ref() != Some(minimum)
    {
        let newest = versions.keys().filter(|v| !after.is_yanked(v)).max();
        if newest.is_none_or(|n| n.cmp_precedence(minimum) == std::cmp::Ordering::Less) {
            return Err(ManageError::MinimumTooHigh {
                channel: channel.clone(),
                minimum: minimum.clone(),
                newest: newest.map_or("none".into(), Version::to_string),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn holdings(entries: &[(&str, &[&str])]) -> BTreeMap<Version, BTreeSet<String>> {
        entries
            .iter()
            .map(|(version, files)| (v(version), files.iter().map(|f| f.to_string()).collect()))
            .collect()
    }

    #[test]
    fn checks_refuse_what_cannot_be_served() {
        let latest = Channel::latest();
        let versions = holdings(&[
            ("1.0.0", &["latest.yml", "latest-mac.yml"]),
            (
                "1.1.0",
                &["latest.yml", "latest-mac.yml", "latest-linux.yml"],
            ),
        ]);
        let none = ChannelPolicy::default();
        let yank = |list: &[&str]| ChannelPolicy {
            yanked: list.iter().map(|s| (v(s), "broken".to_owned())).collect(),
            ..ChannelPolicy::default()
        };
        assert!(
            check(&latest, &none, &yank(&["1.1.0"]), &versions).is_err_and(|e| matches!(
                e,
                ManageError::LastServable { ref file, .. } if file == "latest-linux.yml"
            ))
        );
        let mac_only = holdings(&[
            ("1.0.0", &["latest-mac.yml"]),
            ("1.1.0", &["latest-mac.yml"]),
        ]);
        check(&latest, &none, &yank(&["1.1.0"]), &mac_only).unwrap();
        let err = check(
            &latest,
            &yank(&["1.1.0"]),
            &yank(&["1.0.0", "1.1.0"]),
            &mac_only,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("latest-mac.yml") && err.contains("1.0.0 yanked"),
            "{err}"
        );
        let err = check(&latest, &none, &yank(&["2.0.0"]), &versions)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("version 2.0.0 has no channel files for `latest`"),
            "{err}"
        );
        // Already in the document before: not checked again.
        check(&latest, &yank(&["2.0.0"]), &yank(&["2.0.0"]), &versions).unwrap();
        let high = ChannelPolicy {
            minimum_version: Some(v("1.2.0")),
            ..ChannelPolicy::default()
        };
        let err = check(&latest, &none, &high, &versions)
            .unwrap_err()
            .to_string();
        assert!(err.contains("newest: 1.1.0"), "{err}");
        let fine = ChannelPolicy {
            minimum_version: Some(v("1.1.0")),
            ..ChannelPolicy::default()
        };
        check(&latest, &none, &fine, &versions).unwrap();
    }

    #[test]
    fn files_are_grouped_by_platform() {
        let files: Vec<String> = [
            "App-1.0.0.dmg",
            "App-1.0.0-mac.zip",
            "App Setup 1.0.0.exe",
            "App-1.0.0.AppImage",
            "latest.yml",
            "App-1.0.0.dmg.blockmap",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let by = files_by_platform(&files);
        assert_eq!(by["darwin"], ["App-1.0.0.dmg", "App-1.0.0-mac.zip"]);
        assert_eq!(by["win32"], ["App Setup 1.0.0.exe"]);
        assert_eq!(by["linux"], ["App-1.0.0.AppImage"]);
        assert_eq!(by["other"], ["latest.yml", "App-1.0.0.dmg.blockmap"]);
    }
}
