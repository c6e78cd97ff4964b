//! The release policy as the feeds apply it (SPEC §2.5): for each channel file the feeds
//! serve, a *view* of the channel under its policy — the current release (newest not
//! yanked), the release before it, and every answer body that does not depend on the client
//! — computed once per version of the manifest, the policy and the store's listing, and
//! read from memory by every update check after that.
//!
//! Per request this costs: the policy from the manifest cache (one lookup, like the
//! manifest's), the view from a map (pointer comparisons), and the decision
//! ([`ChannelPolicy::decide`]: a BLAKE3 of the client id only while a rollout is below
//! 100%). Nothing reads an origin that the manifest cache and the listing do not already
//! hold: the previous releases' channel files are immutable objects in that cache, and the
//! listing of `releases/v*/` is refreshed behind the answers (`versions.rs`). A view is
//! rebuilt when one of its inputs changes (a new policy, a publish, a new listing).
//!
//! Every protocol answers from a view: YAML ([`ElectronView::yaml`]), Squirrel.Windows
//! ([`SquirrelView::answer`]), `/latest` ([`ElectronView::latest`]), and the JSON protocol
//! (`feeds`, from [`ElectronView::decide`] and [`TauriView::decide`], its bodies kept in
//! the view's cells); Velopack and Sparkle feeds take the same [`ChannelPolicy::decide`] and
//! [`policy::candidates`]. This module sits below `feeds`: it knows the cache and the
//! release model, not the protocols' JSON.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, OnceLock, RwLock};

use semver::Version;
use serde_norway::Value;

use crate::cache::{ChannelManifest, Manifest};
use crate::error::AppError;
use crate::origin::Found;
use crate::release::channel::Channel;
use crate::release::electron::{ChannelFile, ElectronManifest};
use crate::release::platform::{Arch, Format, Platform};
use crate::release::policy::{self, ChannelPolicy, Decision, Which};
use crate::release::sparkle::{Appcast, AppcastItem, ItemChange};
use crate::release::squirrel::SquirrelReleases;
use crate::release::tauri::TauriManifest;
use crate::release::velopack::{self, VelopackFeed};
use crate::release::{ReleaseFile, choose_file};
use crate::response::feed::FeedBody;
use crate::state::App;
use crate::store::ObjectKey;
use crate::versions::Listing;

/// How many versions a view walks back to find the current and previous release (each a
/// cached lookup of that version's channel file).
const WALK_LIMIT: usize = 64;

/// The channel's policy, from the manifest cache; `None` when there is none, it changes
/// nothing, or it cannot be read (the store failing with nothing cached: the feeds then
/// answer as without a policy, as they answer from GitHub when the store fails).
pub async fn of_channel(app: &App, channel: &Channel) -> Option<Arc<ChannelPolicy>> {
    let key = app.keys.of_channel(channel, ChannelManifest::Policy);
    match app.manifests.get(&key).await {
        Ok(Found::Yes(Manifest::Policy(policy), _)) if !policy.is_inert() => Some(policy),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(channel = %channel, error = %err, "cannot read the channel's policy; answering without it");
            None
        }
    }
}

/// What a feed answers one client under a policy.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The body; `None` for the JSON protocol's `204` (up to date).
    pub body: Option<FeedBody>,
    /// True when the release offered is newer than the client's (for the update-check
    /// metric).
    pub update: bool,
    /// The answer depends on the client's rollout bucket: `Cache-Control: private`.
    pub per_client: bool,
    /// The client is below `minimum_version` and is offered an update: `X-Update-Required`.
    pub required: bool,
}

/// What a view is built from; a view is reused while these are the same.
struct Inputs<M> {
    latest: Arc<M>,
    policy: Arc<ChannelPolicy>,
    /// The store's listing, for the feeds that walk back through `releases/v*/`.
    listing: Option<Arc<Listing>>,
}

impl<M> Clone for Inputs<M> {
    fn clone(&self) -> Self {
        Self {
            latest: Arc::clone(&self.latest),
            policy: Arc::clone(&self.policy),
            listing: self.listing.clone(),
        }
    }
}

impl<M> Inputs<M> {
    /// The versions of the listing (none without one).
    fn versions(&self) -> &[Version] {
        self.listing.as_deref().map_or(&[], Listing::versions)
    }
}

/// Manifests whose content can be compared without comparing bytes.
trait SameContent {
    fn same_content(&self, other: &Self) -> bool;
}

impl SameContent for ElectronManifest {
    fn same_content(&self, other: &Self) -> bool {
        self.etag == other.etag
    }
}

impl SameContent for TauriManifest {
    fn same_content(&self, other: &Self) -> bool {
        self == other
    }
}

impl SameContent for SquirrelReleases {
    fn same_content(&self, other: &Self) -> bool {
        self.etag == other.etag
    }
}

impl SameContent for VelopackFeed {
    fn same_content(&self, other: &Self) -> bool {
        self.etag == other.etag
    }
}

impl SameContent for Appcast {
    fn same_content(&self, other: &Self) -> bool {
        self.etag == other.etag
    }
}

/// Manifests of one release.
trait Released {
    fn version(&self) -> &Version;
}

impl Released for ElectronManifest {
    fn version(&self) -> &Version {
        &self.version
    }
}

impl Released for TauriManifest {
    fn version(&self) -> &Version {
        &self.version
    }
}

/// The channel's current release and the one before it: the first two of the policy's
/// [`policy::candidates`] whose own manifest `lookup` finds (`releases/v{version}/...`,
/// through the manifest cache), the manifest `releases/latest/` serves standing for its own
/// version.
async fn current_and_previous<M, F, Fut>(
    inputs: &Inputs<M>,
    lookup: F,
) -> Result<(Option<Arc<M>>, Option<Arc<M>>), AppError>
where
    M: Released,
    F: Fn(&Version) -> Fut,
    Fut: Future<Output = Result<Option<Arc<M>>, AppError>>,
{
    let latest = inputs.latest.version();
    let mut found = Vec::with_capacity(2);
    for version in policy::candidates(&inputs.policy, latest, inputs.versions(), WALK_LIMIT) {
        let manifest = if &version == latest {
            Some(Arc::clone(&inputs.latest))
        } else {
            lookup(&version).await?
        };
        // A file that says another version than its folder is not that version's.
        if let Some(manifest) = manifest.filter(|m| m.version() == &version) {
            found.push(manifest);
            if found.len() == 2 {
                break;
            }
        }
    }
    let mut found = found.into_iter();
    Ok((found.next(), found.next()))
}

/// How a view's inputs compare with the request's.
enum Freshness {
    /// The very same objects: the view answers.
    Same,
    /// New objects with the same content (a revalidated manifest, a new listing of the same
    /// versions): the view answers, and is kept with the new inputs.
    Equal,
    /// Something changed: the view is rebuilt.
    Changed,
}

impl<M: SameContent> Inputs<M> {
    fn compare(&self, now: &Inputs<M>) -> Freshness {
        let same_listing = match (&self.listing, &now.listing) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if Arc::ptr_eq(&self.latest, &now.latest)
            && Arc::ptr_eq(&self.policy, &now.policy)
            && same_listing
        {
            Freshness::Same
        } else if self.latest.same_content(&now.latest)
            && self.policy == now.policy
            && self.versions() == now.versions()
        {
            Freshness::Equal
        } else {
            Freshness::Changed
        }
    }
}

/// A view: its inputs and what was computed from them (shared by the views of equal
/// inputs).
struct View<M, B> {
    inputs: Inputs<M>,
    built: Arc<B>,
}

/// The views of one kind of feed file, by file.
struct Views<K, M, B> {
    map: RwLock<HashMap<K, Arc<View<M, B>>>>,
}

impl<K: Hash + Eq + Clone, M: SameContent, B> Views<K, M, B> {
    fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The view of `key` for `inputs`: the one held when it is still right, else `build`'s
    /// (kept for the next request). Concurrent rebuilds of one key are harmless: the last
    /// one is kept.
    async fn get<F, Fut>(&self, key: &K, inputs: Inputs<M>, build: F) -> Result<Arc<B>, AppError>
    where
        F: FnOnce(Inputs<M>) -> Fut,
        Fut: Future<Output = Result<B, AppError>>,
    {
        let held = self.map.read().ok().and_then(|map| map.get(key).cloned());
        if let Some(held) = held {
            match held.inputs.compare(&inputs) {
                Freshness::Same => return Ok(Arc::clone(&held.built)),
                Freshness::Equal => {
                    let built = Arc::clone(&held.built);
                    self.keep(
                        key,
                        View {
                            inputs,
                            built: Arc::clone(&built),
                        },
                    );
                    return Ok(built);
                }
                Freshness::Changed => {}
            }
        }
        let built = Arc::new(build(inputs.clone()).await?);
        self.keep(
            key,
            View {
                inputs,
                built: Arc::clone(&built),
            },
        );
        Ok(built)
    }

    fn keep(&self, key: &K, view: View<M, B>) {
        if let Ok(mut map) = self.map.write() {
            map.insert(key.clone(), Arc::new(view));
        }
    }
}

/// Every view, and the first listing the views wait for once after a start.
pub struct Policies {
    electron: Views<ChannelFile, ElectronManifest, ElectronView>,
    tauri: Views<Channel, TauriManifest, TauriView>,
    squirrel: Views<Channel, SquirrelReleases, SquirrelView>,
    /// By Velopack channel (`win`, `beta`, ...): its feed file.
    velopack: Views<String, VelopackFeed, VelopackView>,
    sparkle: Views<Channel, Appcast, SparkleView>,
    first_listing: tokio::sync::OnceCell<()>,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            electron: Views::new(),
            tauri: Views::new(),
            squirrel: Views::new(),
            velopack: Views::new(),
            sparkle: Views::new(),
            first_listing: tokio::sync::OnceCell::new(),
        }
    }
}

impl Policies {
    /// The store's listing, waiting (once per process) for the first one: a view built on
    /// the empty listing of a fresh start would not know the channel's previous releases.
    async fn listing(&self, app: &App) -> Arc<Listing> {
        let listing = app.known_versions.current();
        if listing.listed_at().is_some() {
            return listing;
        }
        self.first_listing
            .get_or_init(|| async {
                // A failure is logged inside; the background listing tries again.
                let _ = app.known_versions.refresh().await;
            })
            .await;
        app.known_versions.current()
    }

    /// The view of the electron-builder channel file `file`, whose `releases/latest/` copy
    /// is `latest`, under `policy`.
    pub async fn electron(
        &self,
        app: &App,
        file: &ChannelFile,
        latest: Arc<ElectronManifest>,
        policy: Arc<ChannelPolicy>,
    ) -> Result<Arc<ElectronView>, AppError> {
        let inputs = Inputs {
            latest,
            listing: Some(self.listing(app).await),
            policy,
        };
        self.electron
            .get(file, inputs, |inputs| {
                ElectronView::build(app, file, inputs)
            })
            .await
    }

    /// The view of the Tauri manifest `{channel}.json`.
    pub async fn tauri(
        &self,
        app: &App,
        channel: &Channel,
        latest: Arc<TauriManifest>,
        policy: Arc<ChannelPolicy>,
    ) -> Result<Arc<TauriView>, AppError> {
        let inputs = Inputs {
            latest,
            listing: Some(self.listing(app).await),
            policy,
        };
        self.tauri
            .get(channel, inputs, |inputs| {
                TauriView::build(app, channel, inputs)
            })
            .await
    }

    /// The view of the channel's Squirrel.Windows `RELEASES` (which lists the channel's
    /// history itself: no listing needed).
    pub async fn squirrel(
        &self,
        channel: &Channel,
        latest: Arc<SquirrelReleases>,
        policy: Arc<ChannelPolicy>,
    ) -> Result<Arc<SquirrelView>, AppError> {
        let inputs = Inputs {
            latest,
            listing: None,
            policy,
        };
        self.squirrel
            .get(channel, inputs, |inputs| async move {
                Ok(SquirrelView::build(&inputs))
            })
            .await
    }

    /// The view of the Velopack feed `releases.{velopack_channel}.json` (which lists the
    /// channel's history itself: no listing needed).
    pub async fn velopack(
        &self,
        velopack_channel: &str,
        latest: Arc<VelopackFeed>,
        policy: Arc<ChannelPolicy>,
    ) -> Result<Arc<VelopackView>, AppError> {
        let inputs = Inputs {
            latest,
            listing: None,
            policy,
        };
        self.velopack
            .get(&velopack_channel.to_owned(), inputs, |inputs| async move {
                Ok(VelopackView::build(&inputs))
            })
            .await
    }

    /// The view of the channel's Sparkle appcast (its items are the channel's history).
    pub async fn sparkle(
        &self,
        channel: &Channel,
        latest: Arc<Appcast>,
        policy: Arc<ChannelPolicy>,
    ) -> Result<Arc<SparkleView>, AppError> {
        let inputs = Inputs {
            latest,
            listing: None,
            policy,
        };
        self.sparkle
            .get(channel, inputs, |inputs| async move {
                Ok(SparkleView::build(&inputs))
            })
            .await
    }
}

/// The client id, computed only when the decision needs it (a rollout below 100%).
fn needs_id(policy: &ChannelPolicy) -> bool {
    !policy.rollout.halted && policy.rollout.percentage < 100
}

/// The decision for a client of a channel whose current release (if any) is `current`.
fn decide(
    policy: &ChannelPolicy,
    current: Option<(&Version, &str)>,
    has_previous: bool,
    client: Option<&Version>,
    id: impl FnOnce() -> Option<String>,
) -> Decision {
    let Some((version, label)) = current else {
        // Every version yanked (or none found): nothing to offer.
        return Decision {
            offer: None,
            per_client: false,
            required: false,
        };
    };
    let id = if needs_id(policy) { id() } else { None };
    policy.decide(
        version,
        label,
        has_previous,
        client,
        id.as_deref().unwrap_or(""),
    )
}

/// A release a view can offer, with its YAML answers.
pub struct OfferedElectron {
    /// The release.
    pub release: Arc<ElectronManifest>,
    /// The version as text: the rollout bucket's input.
    pub label: String,
    /// The release notes to send (the policy's override, else the manifest's).
    pub notes: Option<String>,
    yaml: FeedBody,
    yaml_required: FeedBody,
}

/// Slots of precomputed JSON answers: arch × current/previous × required.
const JSON_SLOTS: usize = 5 * 2 * 2;

fn arch_index(arch: Arch) -> usize {
    match arch {
        Arch::X64 => 0,
        Arch::Arm64 => 1,
        Arch::Ia32 => 2,
        Arch::Armv7l => 3,
        Arch::Universal => 4,
    }
}

fn slot(arch: Arch, which: Which, required: bool) -> usize {
    arch_index(arch) * 4 + usize::from(which == Which::Previous) * 2 + usize::from(required)
}

/// An electron-builder channel file under a policy.
pub struct ElectronView {
    policy: Arc<ChannelPolicy>,
    current: Option<OfferedElectron>,
    previous: Option<OfferedElectron>,
    /// The YAML that offers nothing: `stagingPercentage: 0`, which electron-updater reads as
    /// "not for this client" before it compares versions (so not even a client that allows
    /// downgrades takes it).
    nothing: FeedBody,
    /// JSON answers, made on first use (the `.sig` lookup is async) and kept: `None` when
    /// the release has no update artifact for that arch.
    json: [tokio::sync::OnceCell<Option<FeedBody>>; JSON_SLOTS],
}

/// A YAML body from an edit of `release`'s rendered channel file.
fn edited(
    release: &ElectronManifest,
    remove: &[&str],
    set: &[(&str, Value)],
) -> Result<FeedBody, AppError> {
    if remove.is_empty() && set.is_empty() {
        return Ok(FeedBody {
            bytes: release.rendered.clone(),
            etag: release.etag.clone(),
        });
    }
    release
        .edited(remove, set)
        .map(FeedBody::new)
        .map_err(|e| AppError::Internal(format!("cannot edit the channel file: {e}")))
}

impl OfferedElectron {
    fn new(
        release: Arc<ElectronManifest>,
        policy: &ChannelPolicy,
        which: Which,
    ) -> Result<Self, AppError> {
        // When the server decides the rollout, the client must not decide again with its
        // own formula; a previous release's leftover percentage must not hold it back.
        let remove: &[&str] = if which == Which::Previous || policy.is_staged() {
            &["stagingPercentage"]
        } else {
            &[]
        };
        let notes = policy.notes_for(&release.version);
        let mut set: Vec<(&str, Value)> = Vec::new();
        if let Some(notes) = notes {
            set.push(("releaseNotes", Value::from(notes)));
        }
        let yaml = edited(&release, remove, &set)?;
        let yaml_required = match &policy.minimum_version {
            Some(minimum) => {
                set.push(("updateRequired", Value::from(true)));
                set.push(("minimumVersion", Value::from(minimum.to_string())));
                edited(&release, remove, &set)?
            }
            None => yaml.clone(),
        };
        Ok(Self {
            label: release.version.to_string(),
            notes: notes.map(str::to_owned).or_else(|| release.notes.clone()),
            release,
            yaml,
            yaml_required,
        })
    }
}

impl ElectronView {
    async fn build(
        app: &App,
        file: &ChannelFile,
        inputs: Inputs<ElectronManifest>,
    ) -> Result<Self, AppError> {
        let name = file.file_name();
        let (current, previous) = current_and_previous(&inputs, |version| {
            let key = format!("releases/v{version}/{name}");
            async move {
                Ok(match optional(app, &ObjectKey::from_trusted(key)?).await? {
                    Some(Manifest::Electron(release)) => Some(release),
                    _ => None,
                })
            }
        })
        .await?;
        let Inputs { latest, policy, .. } = inputs;
        let current = current
            .map(|r| OfferedElectron::new(r, &policy, Which::Current))
            .transpose()?;
        let previous = previous
            .map(|r| OfferedElectron::new(r, &policy, Which::Previous))
            .transpose()?;
        let nothing = edited(
            &latest,
            &["stagingPercentage"],
            &[("stagingPercentage", Value::from(0))],
        )?;
        Ok(Self {
            policy,
            current,
            previous,
            nothing,
            json: std::array::from_fn(|_| tokio::sync::OnceCell::new()),
        })
    }

    /// The release `which` names, when the view has it.
    pub fn offered(&self, which: Option<Which>) -> Option<&OfferedElectron> {
        match which? {
            Which::Current => self.current.as_ref(),
            Which::Previous => self.previous.as_ref(),
        }
    }

    /// The policy the view applies.
    pub fn policy(&self) -> &ChannelPolicy {
        &self.policy
    }

    /// What a client on `client` (`None`: a new user) is offered; `id` gives its rollout
    /// identity, asked for only while a rollout is below 100%.
    pub fn decide(
        &self,
        client: Option<&Version>,
        id: impl FnOnce() -> Option<String>,
    ) -> Decision {
        decide(
            &self.policy,
            self.current
                .as_ref()
                .map(|c| (&c.release.version, c.label.as_str())),
            self.previous.is_some(),
            client,
            id,
        )
    }

    /// electron-updater's channel file for a client on `client`. Never empty (SPEC §2.3):
    /// the release offered when it is this client's or newer, else the file that offers
    /// nothing.
    pub fn yaml(&self, client: &Version, id: impl FnOnce() -> Option<String>) -> Answer {
        let decision = self.decide(Some(client), id);
        let (body, update) = match self.offered(decision.offer) {
            Some(offered) if !is_newer(client, &offered.release.version) => {
                let update = is_newer(&offered.release.version, client);
                let body = if decision.required && update {
                    &offered.yaml_required
                } else {
                    &offered.yaml
                };
                (body.clone(), update)
            }
            _ => (self.nothing.clone(), false),
        };
        Answer {
            body: Some(body),
            update,
            required: decision.required && update,
            per_client: decision.per_client,
        }
    }

    /// The cell that holds the JSON answer offering `which` to a client on `arch`
    /// (`required`: with the fields that say the update is required), filled by the JSON
    /// protocol on first use: `None` when the release has no update artifact for `arch`.
    pub fn json_cell(
        &self,
        arch: Arch,
        which: Which,
        required: bool,
    ) -> &tokio::sync::OnceCell<Option<FeedBody>> {
        &self.json[slot(arch, which, required)]
    }

    /// The installer for a visitor of `/latest` (a new user: no client version), and
    /// whether the rollout decided it (then not cacheable by a shared cache).
    pub fn latest(
        &self,
        format: Format,
        arch: Option<Arch>,
        id: impl FnOnce() -> Option<String>,
    ) -> (Option<&ReleaseFile>, bool) {
        let decision = self.decide(None, id);
        let file = self
            .offered(decision.offer)
            .and_then(|o| choose_file(&o.release.files, format, arch));
        (file, decision.per_client)
    }
}

/// A manifest a view may do without: absent when no origin has it, or when the store has
/// none and GitHub cannot say (SPEC §3: a fallback never makes an answer worse).
async fn optional(app: &App, key: &ObjectKey) -> Result<Option<Manifest>, AppError> {
    Ok(match app.manifests.get(key).await? {
        Found::Yes(manifest, _) => Some(manifest),
        Found::No | Found::Unconfirmed(_) => None,
    })
}

/// True when `release` is newer than `client` (semver precedence).
fn is_newer(release: &Version, client: &Version) -> bool {
    release.cmp_precedence(client) == std::cmp::Ordering::Greater
}

/// Slots of Tauri answers: platform × arch × current/previous × required.
const TAURI_SLOTS: usize = 3 * JSON_SLOTS;

fn platform_index(platform: Platform) -> usize {
    match platform {
        Platform::Mac => 0,
        Platform::Windows => 1,
        Platform::Linux => 2,
    }
}

/// A Tauri static manifest (`{channel}.json`) under a policy.
pub struct TauriView {
    policy: Arc<ChannelPolicy>,
    /// The current and previous releases, with their versions as text.
    current: Option<(Arc<TauriManifest>, String)>,
    previous: Option<Arc<TauriManifest>>,
    /// JSON answers, made on first use: `None` when the manifest has no entry for the
    /// platform and arch.
    json: [OnceLock<Option<FeedBody>>; TAURI_SLOTS],
}

impl TauriView {
    async fn build(
        app: &App,
        channel: &Channel,
        inputs: Inputs<TauriManifest>,
    ) -> Result<Self, AppError> {
        let name = format!("{channel}.json");
        let (current, previous) = current_and_previous(&inputs, |version| {
            let key = format!("releases/v{version}/{name}");
            async move {
                Ok(match optional(app, &ObjectKey::from_trusted(key)?).await? {
                    Some(Manifest::Tauri(manifest)) => Some(manifest),
                    _ => None,
                })
            }
        })
        .await?;
        Ok(Self {
            policy: inputs.policy,
            current: current.map(|m| {
                let label = m.version.to_string();
                (m, label)
            }),
            previous,
            json: std::array::from_fn(|_| OnceLock::new()),
        })
    }

    /// The policy the view applies.
    pub fn policy(&self) -> &ChannelPolicy {
        &self.policy
    }

    /// Whether the current or the previous release has an entry for `platform`/`arch`
    /// (otherwise the electron-builder files answer, as without a policy).
    pub fn serves(&self, platform: Platform, arch: Arch) -> bool {
        let has_entry = |m: &TauriManifest| m.entry(platform, arch).is_some();
        self.current.as_ref().is_some_and(|(m, _)| has_entry(m))
            || self.previous.as_ref().is_some_and(|m| has_entry(m))
    }

    /// What a client on `client` is offered, and the manifest of that release.
    pub fn decide(
        &self,
        client: &Version,
        id: impl FnOnce() -> Option<String>,
    ) -> (Decision, Option<&Arc<TauriManifest>>) {
        let current = self.current.as_ref();
        let decision = decide(
            &self.policy,
            current.map(|(m, label)| (&m.version, label.as_str())),
            self.previous.is_some(),
            Some(client),
            id,
        );
        let manifest = match decision.offer {
            Some(Which::Current) => current.map(|(m, _)| m),
            Some(Which::Previous) => self.previous.as_ref(),
            None => None,
        };
        (decision, manifest)
    }

    /// The cell of the JSON answer offering `which` to `platform`/`arch` (`required`: with
    /// the required-update fields): `None` when that release has no entry for it.
    pub fn json_cell(
        &self,
        platform: Platform,
        arch: Arch,
        which: Which,
        required: bool,
    ) -> &OnceLock<Option<FeedBody>> {
        &self.json[platform_index(platform) * JSON_SLOTS + slot(arch, which, required)]
    }
}

/// A Squirrel.Windows `RELEASES` under a policy: the packages up to the release offered,
/// yanked versions (and the deltas above them) left out.
pub struct SquirrelView {
    policy: Arc<ChannelPolicy>,
    current: Option<(Version, String)>,
    previous: Option<Version>,
    /// Up to the current release.
    up_to_current: FeedBody,
    /// Below the current release (for clients the rollout leaves out, or a halt).
    below_current: FeedBody,
}

impl SquirrelView {
    fn build(inputs: &Inputs<SquirrelReleases>) -> Self {
        let policy = &inputs.policy;
        let releases = &inputs.latest;
        let servable: Vec<&Version> = releases
            .full_versions()
            .into_iter()
            .filter(|v| !policy.is_yanked(v))
            .collect();
        let current = servable.first().map(|v| (*v).clone());
        let keep = |v: &Version| !policy.is_yanked(v);
        let (up_to_current, below_current) = match (&current, servable.get(1)) {
            (Some(current), previous) => (
                releases.filtered(current, keep),
                match previous {
                    Some(previous) => releases.filtered(previous, keep),
                    None => releases.filtered(current, |v| keep(v) && v < current),
                },
            ),
            (None, _) => {
                let empty = bytes::Bytes::new();
                (empty.clone(), empty)
            }
        };
        Self {
            policy: Arc::clone(policy),
            previous: servable.get(1).map(|v| (*v).clone()),
            current: current.map(|v| {
                let label = v.to_string();
                (v, label)
            }),
            up_to_current: FeedBody::new(up_to_current),
            below_current: FeedBody::new(below_current),
        }
    }

    /// The `RELEASES` for a client on `client`. Squirrel.Windows decides itself from the
    /// packages listed, so "nothing" is the list without the current release.
    pub fn answer(&self, client: &Version, id: impl FnOnce() -> Option<String>) -> Answer {
        let decision = decide(
            &self.policy,
            self.current.as_ref().map(|(v, label)| (v, label.as_str())),
            self.previous.is_some(),
            Some(client),
            id,
        );
        let (body, newest) = match decision.offer {
            Some(Which::Current) => (&self.up_to_current, self.current.as_ref().map(|c| &c.0)),
            _ => (&self.below_current, self.previous.as_ref()),
        };
        let update = newest.is_some_and(|v| is_newer(v, client));
        Answer {
            body: Some(body.clone()),
            update,
            per_client: decision.per_client,
            required: decision.required && update,
        }
    }
}

/// The current release and the one before it among a feed's own `versions` (a `RELEASES`-like
/// history: Velopack's full packages, Sparkle's items), under `policy`: the first two of
/// [`policy::candidates`] from the newest.
fn current_and_previous_of(
    policy: &ChannelPolicy,
    versions: &[Version],
) -> (Option<(Version, String)>, Option<Version>) {
    let Some(newest) = versions.iter().max() else {
        return (None, None);
    };
    let mut found = policy::candidates(policy, newest, versions, 2).into_iter();
    let current = found.next().map(|v| {
        let label = v.to_string();
        (v, label)
    });
    (current, found.next())
}

/// A history feed's two bodies under a policy: up to the current release, and below it
/// (for the clients a rollout leaves out, or a halt), with the versions they end at.
struct TwoBodies {
    policy: Arc<ChannelPolicy>,
    current: Option<(Version, String)>,
    previous: Option<Version>,
    up_to_current: FeedBody,
    below_current: FeedBody,
}

impl TwoBodies {
    /// The version a visitor of `/latest` (no version of its own) is offered, and whether a
    /// rollout decided it for that visitor.
    fn offered_to_new_user(&self, id: impl FnOnce() -> Option<String>) -> (Option<Version>, bool) {
        let (_, newest, decision) = self.answer(None, id);
        (newest.cloned(), decision.per_client)
    }

    /// What a client on `client` (`None`: not known, a new user) gets: the body, the
    /// version it ends at, and the decision.
    fn answer(
        &self,
        client: Option<&Version>,
        id: impl FnOnce() -> Option<String>,
    ) -> (&FeedBody, Option<&Version>, Decision) {
        let decision = decide(
            &self.policy,
            self.current.as_ref().map(|(v, label)| (v, label.as_str())),
            self.previous.is_some(),
            client,
            id,
        );
        match decision.offer {
            Some(Which::Current) => (
                &self.up_to_current,
                self.current.as_ref().map(|c| &c.0),
                decision,
            ),
            _ => (&self.below_current, self.previous.as_ref(), decision),
        }
    }
}

/// A Velopack feed under a policy: the packages up to the release offered, yanked versions
/// and the deltas above them left out (Velopack applies every delta above its version: a
/// chain with a gap would rebuild the wrong package; it takes the full package instead).
pub struct VelopackView {
    bodies: TwoBodies,
    /// `{"Assets":[]}`: for a client newer than anything offered (a yanked version's users:
    /// no downgrade, even for a client that allows downgrades).
    nothing: FeedBody,
}

impl VelopackView {
    fn build(inputs: &Inputs<VelopackFeed>) -> Self {
        let policy = &inputs.policy;
        let feed = &inputs.latest;
        let (current, previous) = current_and_previous_of(policy, &feed.full_versions());
        let keep = |v: &Version| !policy.is_yanked(v);
        let (up_to_current, below_current) = match &current {
            Some((current, _)) => (
                feed.filtered(current, keep),
                match &previous {
                    Some(previous) => feed.filtered(previous, keep),
                    None => feed.filtered(current, |v| keep(v) && v < current),
                },
            ),
            None => (velopack::empty_feed(), velopack::empty_feed()),
        };
        Self {
            bodies: TwoBodies {
                policy: Arc::clone(policy),
                current,
                previous,
                up_to_current: FeedBody::new(up_to_current),
                below_current: FeedBody::new(below_current),
            },
            nothing: FeedBody::new(velopack::empty_feed()),
        }
    }

    /// The version whose installer `/latest` gives a visitor (`id`: its rollout identity),
    /// and whether a rollout decided it for that visitor.
    pub fn latest(&self, id: impl FnOnce() -> Option<String>) -> (Option<Version>, bool) {
        self.bodies.offered_to_new_user(id)
    }

    /// The feed for a client on `client` (`None`: its version is not known).
    pub fn answer(&self, client: Option<&Version>, id: impl FnOnce() -> Option<String>) -> Answer {
        let (body, newest, decision) = self.bodies.answer(client, id);
        let body = match (client, newest) {
            (Some(client), Some(newest)) if is_newer(client, newest) => &self.nothing,
            _ => body,
        };
        let update = match (client, newest) {
            (Some(client), Some(newest)) => is_newer(newest, client),
            _ => false,
        };
        Answer {
            body: Some(body.clone()),
            update,
            per_client: decision.per_client,
            required: decision.required && update,
        }
    }
}

/// A Sparkle appcast under a policy: the items up to the release offered, yanked ones left
/// out, `sparkle:criticalUpdate` on the items at or above `minimum_version` (Sparkle then
/// marks the update critical for apps below it), the policy's notes in place of the items'.
/// A signed appcast is never edited (the view holds it as it is).
pub struct SparkleView {
    bodies: TwoBodies,
}

impl SparkleView {
    fn build(inputs: &Inputs<Appcast>) -> Self {
        let policy = &inputs.policy;
        let appcast = &inputs.latest;
        let (current, previous) = current_and_previous_of(policy, &appcast.versions());
        let critical = policy
            .minimum_version
            .as_ref()
            .and_then(|minimum| Some((minimum, appcast.critical_build(minimum)?)));
        let change = |item: &AppcastItem| ItemChange {
            critical_below: critical.as_ref().and_then(|(minimum, build)| {
                item.version
                    .as_ref()
                    .filter(|v| v.cmp_precedence(minimum) != std::cmp::Ordering::Less)
                    .map(|_| build.as_str())
            }),
            notes: item.version.as_ref().and_then(|v| policy.notes_for(v)),
        };
        let up_to = |newest: Option<&Version>, below: bool| {
            appcast.render(
                |item| match (&item.version, newest) {
                    (None, _) => true,
                    (Some(v), Some(newest)) => {
                        !policy.is_yanked(v) && if below { v < newest } else { v <= newest }
                    }
                    (Some(_), None) => false,
                },
                change,
            )
        };
        let current_version = current.as_ref().map(|c| &c.0);
        let up_to_current = up_to(current_version, false);
        let below_current = match &previous {
            Some(previous) => up_to(Some(previous), false),
            None => up_to(current_version, true),
        };
        Self {
            bodies: TwoBodies {
                policy: Arc::clone(policy),
                current,
                previous,
                up_to_current: FeedBody::new(up_to_current),
                below_current: FeedBody::new(below_current),
            },
        }
    }

    /// The version whose `.dmg` `/latest` gives a visitor (`id`: its rollout identity), and
    /// whether a rollout decided it for that visitor.
    pub fn latest(&self, id: impl FnOnce() -> Option<String>) -> (Option<Version>, bool) {
        self.bodies.offered_to_new_user(id)
    }

    /// The appcast for a client on `client` (`None` on the static feed URL: Sparkle sends no
    /// version, and never downgrades).
    pub fn answer(&self, client: Option<&Version>, id: impl FnOnce() -> Option<String>) -> Answer {
        let (body, newest, decision) = self.bodies.answer(client, id);
        let update = match (client, newest) {
            (Some(client), Some(newest)) => is_newer(newest, client),
            _ => false,
        };
        Answer {
            body: Some(body.clone()),
            update,
            per_client: decision.per_client,
            required: decision.required && update,
        }
    }
}

/// Sets `release_edge_channel_rollout_percentage` and `release_edge_channel_halted` for the
/// channels the store holds, from the policies the manifest cache holds (no origin read at
/// scrape time: a policy not cached yet is loaded in the background for the next scrape).
pub async fn update_gauges(app: &crate::state::AppState) {
    let listing = app.known_versions.current();
    for channel in listing.channels().filter_map(|c| Channel::parse(c).ok()) {
        let key = ObjectKey::policy(&channel);
        let rollout = match app.manifests.peek(&key).await {
            Some(Found::Yes(Manifest::Policy(policy), _)) => policy.rollout,
            Some(_) => policy::Rollout::default(),
            None => {
                let state = app.clone();
                tokio::spawn(async move {
                    let _ = state.manifests.get(&key).await;
                });
                continue;
            }
        };
        app.metrics.set_rollout(channel.as_str(), rollout);
    }
}
