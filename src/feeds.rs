//! What each updater protocol and each download link gets, from the cached manifests:
//! the services behind `/update/...` and `/latest` (SPEC §2.2, §2.3).

use std::cmp::Ordering;
use std::sync::Arc;

use http::HeaderValue;
use serde::Serialize;

use crate::cache::{ChannelManifest, Manifest};
use crate::error::AppError;
use crate::origin::Found;
use crate::policy::{self, Answer};
use crate::release::channel::Channel;
use crate::release::electron::{ChannelFile, ElectronManifest, JsonAnswer};
use crate::release::platform::{Arch, Format, Platform, packager_format};
use crate::release::policy::Which;
use crate::release::sparkle::{self, Appcast};
use crate::release::squirrel::SquirrelReleases;
use crate::release::tauri::TauriManifest;
use crate::release::velopack::{self, VelopackFeed};
use crate::release::{Available, ReleaseFile, choose_file, rollout};
use crate::response::feed::FeedBody;
use crate::state::App;
use crate::store::ObjectKey;

/// An update check, as the client described itself.
#[derive(Debug, Clone)]
pub struct UpdateCheck {
    /// Client platform.
    pub platform: Platform,
    /// Client arch.
    pub arch: Arch,
    /// The version the client runs.
    pub version: semver::Version,
    /// The channel it follows.
    pub channel: Channel,
    /// Its rollout identity (SPEC §2.3 order); `None` when nothing identified it.
    pub client_id: Option<String>,
}

/// The JSON body of Squirrel.Mac and Tauri v2 (SPEC §2.3). No `name`: Tauri reads it as a
/// second spelling of `version` and rejects a body with both.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpdateJson {
    /// The new version.
    pub version: String,
    /// Release notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// RFC 3339 publication date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pub_date: Option<String>,
    /// The update artifact.
    pub url: String,
    /// Its minisign signature, when the store has a `.sig` for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// cargo-packager's artifact kind: `app`, `appimage`, `nsis`, `wix`.
    pub format: &'static str,
    /// The client runs a version below the channel's `minimum_version` (SPEC §2.5): the
    /// app decides what "required" means (Tauri exposes the body as `rawJson`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The channel's `minimum_version`, sent with `required`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_version: Option<String>,
}

/// The JSON body of an update answer, with its ETag.
pub fn json_body(update: &UpdateJson) -> Result<FeedBody, AppError> {
    serde_json::to_vec(update)
        .map(|bytes| FeedBody::new(bytes.into()))
        .map_err(|e| AppError::Internal(format!("cannot encode update JSON: {e}")))
}

/// An answer of the JSON protocol without a policy: `body` is the update, or `None` (`204`).
fn json_answer(update: Option<&UpdateJson>, per_client: bool) -> Result<Answer, AppError> {
    Ok(Answer {
        body: update.map(json_body).transpose()?,
        update: update.is_some(),
        per_client,
        required: false,
    })
}

/// Whether an answer can do without a manifest (SPEC §3: a fallback never makes an answer
/// worse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A probe among candidates (the Tauri manifest before the channel file, the
    /// `-linux-{arch}` file before `-linux`, a `.sig`): when the store has none and GitHub
    /// cannot say, the lookup moves on.
    Optional,
    /// The answer depends on it: when the store has none and GitHub cannot say, that
    /// failure (naming GitHub) is the answer.
    Required,
}

/// The manifest at `key`, by `need`. Fails only when no origin could answer (for an
/// optional one) or when the one that might have it failed (for a required one).
async fn manifest(app: &App, key: &ObjectKey, need: Need) -> Result<Option<Manifest>, AppError> {
    match app.manifests.get(key).await? {
        Found::Yes(manifest, _) => Ok(Some(manifest)),
        Found::No => Ok(None),
        Found::Unconfirmed(_) if need == Need::Optional => Ok(None),
        Found::Unconfirmed(err) => Err(err.into()),
    }
}

/// The electron-builder channel file `file`, from `releases/latest/`.
pub async fn channel_file(
    app: &App,
    file: &ChannelFile,
    need: Need,
) -> Result<Option<Arc<ElectronManifest>>, AppError> {
    Ok(
        match manifest(app, &app.keys.channel_file(file), need).await? {
            Some(Manifest::Electron(release)) => Some(release),
            _ => None,
        },
    )
}

/// The channel file for a client, falling back from `-linux-{arch}` to `-linux` (whose
/// file names then say the arch).
pub async fn client_channel_file(
    app: &App,
    channel: &Channel,
    platform: Platform,
    arch: Option<Arch>,
    need: Need,
) -> Result<Option<Arc<ElectronManifest>>, AppError> {
    Ok(resolve_channel_file(app, channel, platform, arch, need)
        .await?
        .map(|(_, found)| found))
}

/// As [`client_channel_file`], with the channel file that was found.
pub async fn resolve_channel_file(
    app: &App,
    channel: &Channel,
    platform: Platform,
    arch: Option<Arch>,
    need: Need,
) -> Result<Option<(ChannelFile, Arc<ElectronManifest>)>, AppError> {
    let file = ChannelFile::for_client(channel, platform, arch);
    if file.arch.is_none() {
        return Ok(channel_file(app, &file, need).await?.map(|m| (file, m)));
    }
    if let Some(found) = channel_file(app, &file, Need::Optional).await? {
        return Ok(Some((file, found)));
    }
    let file = ChannelFile::for_client(channel, platform, None);
    Ok(channel_file(app, &file, need).await?.map(|m| (file, m)))
}

/// The Squirrel.Windows `RELEASES` of a channel: `RELEASES` for `latest`,
/// `RELEASES-{channel}` for the others.
pub async fn squirrel_releases(
    app: &App,
    channel: &Channel,
) -> Result<Option<Arc<SquirrelReleases>>, AppError> {
    let key = app.keys.of_channel(channel, ChannelManifest::Squirrel);
    Ok(match manifest(app, &key, Need::Required).await? {
        Some(Manifest::Squirrel(releases)) => Some(releases),
        _ => None,
    })
}

/// Velopack's feed `releases/latest/releases.{velopack_channel}.json`, by `need`
/// ([`Need::Optional`]: a probe among candidates).
pub async fn velopack_feed(
    app: &App,
    velopack_channel: &str,
    need: Need,
) -> Result<Option<Arc<VelopackFeed>>, AppError> {
    // The name is composed from a request's Velopack channel: its characters are checked,
    // not its shape.
    let name = format!("releases.{velopack_channel}.json");
    let key = ObjectKey::from_trusted(format!("releases/latest/{name}"))
        .map_err(|e| AppError::Internal(format!("bad manifest key {name}: {e}")))?;
    Ok(match manifest(app, &key, need).await? {
        Some(Manifest::Velopack(feed)) => Some(feed),
        _ => None,
    })
}

/// Where Velopack's client downloads a package it found in a feed: it asks for
/// `{base URL}/{FileName}`, answered with a redirect to this URL,
/// `{public_url}/releases/v{version}/{FileName}` (the one place its URL is written).
/// `velopack_channels`: the feeds to look in, first to last (a package name says its channel
/// only for some channels). With the URL, the Velopack channel whose feed lists it; `None`
/// when none of them does.
pub async fn velopack_package_url(
    app: &App,
    velopack_channels: &[String],
    file_name: &str,
) -> Result<Option<(String, String)>, AppError> {
    for channel in velopack_channels {
        if let Some(feed) = velopack_feed(app, channel, Need::Optional).await?
            && let Some(version) = feed.package_version(file_name)
        {
            let url = crate::release::absolute_artifact_url(
                &app.config.public_url,
                &version.to_string(),
                file_name,
            );
            return Ok(Some((url, channel.clone())));
        }
    }
    Ok(None)
}

/// Sparkle's appcast of `channel` (`releases/latest/appcast.xml`, `appcast-{channel}.xml`).
pub async fn sparkle_appcast(
    app: &App,
    channel: &Channel,
) -> Result<Option<Arc<Appcast>>, AppError> {
    let key = app.keys.of_channel(channel, ChannelManifest::Sparkle);
    Ok(match manifest(app, &key, Need::Required).await? {
        Some(Manifest::Sparkle(appcast)) => Some(appcast),
        _ => None,
    })
}

/// A Velopack feed for a client on `client` (`None`: not known), under the policy of the
/// release-edge channel the Velopack channel belongs to (`win` → `latest`, SPEC §2.6);
/// `id`: its rollout identity (Velopack's `stagingId` first). Without a policy, the feed as
/// stored, URLs absolute.
pub async fn velopack_update(
    app: &App,
    velopack_channel: &str,
    client: Option<&semver::Version>,
    id: impl FnOnce() -> Option<String>,
) -> Result<Answer, AppError> {
    let Some(feed) = velopack_feed(app, velopack_channel, Need::Required).await? else {
        return Err(AppError::NoRelease {
            message: format!("no releases.{velopack_channel}.json in the store"),
            available: Vec::new(),
        });
    };
    let channel = velopack::release_channel(velopack_channel);
    if let Some(policy) = policy::of_channel(app, &channel).await {
        let view = app
            .policies
            .velopack(velopack_channel, feed, policy)
            .await?;
        return Ok(view.answer(client, id));
    }
    Ok(Answer {
        update: match (client, &feed.newest) {
            (Some(client), Some(newest)) => is_newer(newest, client),
            _ => false,
        },
        body: Some(FeedBody {
            bytes: feed.rendered.clone(),
            etag: feed.etag.clone(),
        }),
        per_client: false,
        required: false,
    })
}

/// A Sparkle appcast for a client on `client` (`None` on the static feed URL), under the
/// channel's policy. A signed appcast is always the stored bytes.
pub async fn sparkle_update(
    app: &App,
    channel: &Channel,
    client: Option<&semver::Version>,
    id: impl FnOnce() -> Option<String>,
) -> Result<Answer, AppError> {
    let Some(appcast) = sparkle_appcast(app, channel).await? else {
        return Err(AppError::NoRelease {
            message: format!("no {} in the store", sparkle::file_name(channel)),
            available: Vec::new(),
        });
    };
    let policy = policy::of_channel(app, channel).await;
    if !appcast.signed
        && let Some(policy) = &policy
    {
        let view = app
            .policies
            .sparkle(channel, appcast, Arc::clone(policy))
            .await?;
        return Ok(view.answer(client, id));
    }
    let update = match (client, &appcast.newest) {
        (Some(client), Some(newest)) => is_newer(newest, client),
        _ => false,
    };
    // A signed appcast cannot say so; the header still can.
    let required = update && policy.is_some_and(|p| client.is_some_and(|c| p.requires_update(c)));
    Ok(Answer {
        update,
        body: Some(FeedBody {
            bytes: appcast.rendered.clone(),
            etag: appcast.etag.clone(),
        }),
        per_client: false,
        required,
    })
}

/// True when `release` is newer than `client` (semver precedence: build metadata does not
/// count, a pre-release is older than its release).
pub fn is_newer(release: &semver::Version, client: &semver::Version) -> bool {
    release.cmp_precedence(client) == Ordering::Greater
}

/// The JSON protocol: Tauri's static manifest when it has an entry for the client, else the
/// electron-builder channel file's update artifact (SPEC §2.3), under the channel's release
/// policy when it has one (SPEC §2.5). `body: None` is the `204`.
pub async fn json_update(app: &App, check: &UpdateCheck) -> Result<Answer, AppError> {
    let policy = policy::of_channel(app, &check.channel).await;
    let tauri_key = app.keys.of_channel(&check.channel, ChannelManifest::Tauri);
    if let Some(Manifest::Tauri(tauri)) = manifest(app, &tauri_key, Need::Optional).await? {
        match &policy {
            Some(policy) => {
                let view = app
                    .policies
                    .tauri(app, &check.channel, tauri, Arc::clone(policy))
                    .await?;
                if view.serves(check.platform, check.arch) {
                    return Ok(tauri_policy_answer(&view, check));
                }
            }
            None => {
                if let Some(answer) = tauri_answer(&tauri, check) {
                    return json_answer(answer.as_ref(), false);
                }
            }
        }
    }

    let found = resolve_channel_file(
        app,
        &check.channel,
        check.platform,
        Some(check.arch),
        Need::Required,
    )
    .await?;
    let Some((file, release)) = found else {
        return Err(AppError::NoRelease {
            message: format!(
                "no release for {}/{} in channel {}",
                check.platform, check.arch, check.channel
            ),
            available: Vec::new(),
        });
    };
    if let Some(policy) = policy {
        let view = app.policies.electron(app, &file, release, policy).await?;
        return electron_policy_answer(app, &view, check).await;
    }
    if !is_newer(&release.version, &check.version) {
        return json_answer(None, false);
    }
    let mut per_client = false;
    if let Some(percentage) = release.staging_percentage.filter(|p| *p < 100.0) {
        per_client = true;
        let id = check.client_id.as_deref().unwrap_or("");
        if !rollout::in_rollout(id, &release.version.to_string(), percentage) {
            return json_answer(None, per_client);
        }
    }
    Ok(Answer {
        body: Some(electron_json_body(app, &release, check).await?),
        update: true,
        per_client,
        required: false,
    })
}

/// The JSON protocol's body for `check` from `release` without a policy: the one made before
/// for the same platform, arch and signature (kept with the release), else made and kept.
async fn electron_json_body(
    app: &App,
    release: &ElectronManifest,
    check: &UpdateCheck,
) -> Result<FeedBody, AppError> {
    let (platform, arch) = (check.platform, check.arch);
    let Some(file) = choose_file(&release.files, platform.update_format(), Some(arch)) else {
        return Err(no_update_artifact(release, check));
    };
    // Read on every check (a cached lookup): a signature published or confirmed later gives
    // another body, never a stale one.
    let signature = signature_of(app, &release.version, file).await?;
    if let Some((bytes, etag)) = release.json.find(platform, arch, signature.as_deref()) {
        return Ok(FeedBody { bytes, etag });
    }
    let update = update_json(
        release,
        file,
        platform,
        release.notes.clone(),
        signature.clone(),
        None,
    );
    let body = json_body(&update)?;
    release.json.keep(JsonAnswer {
        platform,
        arch,
        signature,
        bytes: body.bytes.clone(),
        etag: body.etag.clone(),
    });
    Ok(body)
}

/// The update a client on `platform`/`arch` gets from `release`: its update artifact
/// (SPEC §2.3) with its signature; `None` when the release has none for that arch.
/// `minimum`: the client is below the channel's `minimum_version`, which is sent with
/// `required: true`.
pub async fn electron_update_json(
    app: &App,
    release: &ElectronManifest,
    platform: Platform,
    arch: Arch,
    notes: Option<String>,
    minimum: Option<&semver::Version>,
) -> Result<Option<UpdateJson>, AppError> {
    let Some(file) = choose_file(&release.files, platform.update_format(), Some(arch)) else {
        return Ok(None);
    };
    let signature = signature_of(app, &release.version, file).await?;
    Ok(Some(update_json(
        release, file, platform, notes, signature, minimum,
    )))
}

/// The update `release` offers in `file` (its update artifact for the client's platform).
fn update_json(
    release: &ElectronManifest,
    file: &ReleaseFile,
    platform: Platform,
    notes: Option<String>,
    signature: Option<String>,
    minimum: Option<&semver::Version>,
) -> UpdateJson {
    UpdateJson {
        version: release.version.to_string(),
        notes,
        pub_date: release.release_date.clone(),
        url: file.url.clone(),
        signature,
        format: packager_format(&file.name, platform),
        required: minimum.is_some(),
        minimum_version: minimum.map(semver::Version::to_string),
    }
}

/// The `404` of a release without an update artifact for the client.
pub fn no_update_artifact(release: &ElectronManifest, check: &UpdateCheck) -> AppError {
    let format = check.platform.update_format();
    AppError::NoRelease {
        message: format!(
            "release {} has no {format} for {}/{}",
            release.version, check.platform, check.arch
        ),
        available: release.files.iter().map(Available::from).collect(),
    }
}

/// The JSON protocol from an electron-builder channel file under a policy: the view
/// decides which release, its cell keeps the body.
async fn electron_policy_answer(
    app: &App,
    view: &policy::ElectronView,
    check: &UpdateCheck,
) -> Result<Answer, AppError> {
    let decision = view.decide(Some(&check.version), || check.client_id.clone());
    let up_to_date = |per_client| Answer {
        body: None,
        update: false,
        per_client,
        required: false,
    };
    let (Some(which), Some(offered)) = (decision.offer, view.offered(decision.offer)) else {
        return Ok(up_to_date(decision.per_client));
    };
    if !is_newer(&offered.release.version, &check.version) {
        return Ok(up_to_date(decision.per_client));
    }
    let mut per_client = decision.per_client;
    // Without a staged policy, the manifest's own stagingPercentage decides, as without a
    // policy at all.
    if which == Which::Current
        && !view.policy().is_staged()
        && let Some(percentage) = offered.release.staging_percentage.filter(|p| *p < 100.0)
    {
        per_client = true;
        let id = check.client_id.as_deref().unwrap_or("");
        if !rollout::in_rollout(id, &offered.label, percentage) {
            return Ok(up_to_date(per_client));
        }
    }
    let required = decision.required;
    let body = view
        .json_cell(check.arch, which, required)
        .get_or_try_init(|| async {
            let minimum = view.policy().minimum_version.as_ref().filter(|_| required);
            let update = electron_update_json(
                app,
                &offered.release,
                check.platform,
                check.arch,
                offered.notes.clone(),
                minimum,
            )
            .await?;
            update.as_ref().map(json_body).transpose()
        })
        .await?;
    match body {
        Some(body) => Ok(Answer {
            body: Some(body.clone()),
            update: true,
            per_client,
            required,
        }),
        None => Err(no_update_artifact(&offered.release, check)),
    }
}

/// The JSON protocol from a Tauri static manifest under a policy.
fn tauri_policy_answer(view: &policy::TauriView, check: &UpdateCheck) -> Answer {
    let (decision, manifest) = view.decide(&check.version, || check.client_id.clone());
    let up_to_date = Answer {
        body: None,
        update: false,
        per_client: decision.per_client,
        required: false,
    };
    let (Some(which), Some(manifest)) = (decision.offer, manifest) else {
        return up_to_date;
    };
    if !is_newer(&manifest.version, &check.version) {
        return up_to_date;
    }
    let body = view
        .json_cell(check.platform, check.arch, which, decision.required)
        .get_or_init(|| {
            let mut update = tauri_update(manifest, check)?;
            if let Some(notes) = view.policy().notes_for(&manifest.version) {
                update.notes = Some(notes.to_owned());
            }
            if decision.required {
                update.required = true;
                update.minimum_version = view
                    .policy()
                    .minimum_version
                    .as_ref()
                    .map(semver::Version::to_string);
            }
            json_body(&update).ok()
        });
    match body {
        Some(body) => Answer {
            body: Some(body.clone()),
            update: true,
            per_client: decision.per_client,
            required: decision.required,
        },
        // The release offered has no entry for this client: nothing to offer it.
        None => up_to_date,
    }
}

/// A Tauri manifest's answer for `check`: `None` when it has no entry for the client,
/// `Some(None)` when the client is up to date.
fn tauri_answer(tauri: &TauriManifest, check: &UpdateCheck) -> Option<Option<UpdateJson>> {
    tauri.entry(check.platform, check.arch)?;
    if !is_newer(&tauri.version, &check.version) {
        return Some(None);
    }
    Some(tauri_update(tauri, check))
}

/// The update a Tauri manifest's entry for the client describes.
fn tauri_update(tauri: &TauriManifest, check: &UpdateCheck) -> Option<UpdateJson> {
    let entry = tauri.entry(check.platform, check.arch)?;
    let name = entry.url.rsplit('/').next().unwrap_or(&entry.url);
    Some(UpdateJson {
        version: tauri.version.to_string(),
        notes: tauri.notes.clone(),
        pub_date: tauri.pub_date.clone(),
        url: entry.url.clone(),
        signature: Some(entry.signature.clone()),
        format: packager_format(name, check.platform),
        required: false,
        minimum_version: None,
    })
}

/// The content of `releases/v{version}/{file}.sig`, when there is one.
async fn signature_of(
    app: &App,
    version: &semver::Version,
    file: &ReleaseFile,
) -> Result<Option<String>, AppError> {
    let Ok(key) = ObjectKey::from_trusted(format!("releases/v{version}/{}.sig", file.name)) else {
        return Ok(None);
    };
    Ok(match manifest(app, &key, Need::Optional).await? {
        Some(Manifest::Signature(s)) if !s.is_empty() => Some(s.to_string()),
        _ => None,
    })
}

/// Where the installer for a visitor of `/latest` is (SPEC §2.2), as a `Location`, under the
/// channel's policy (a halted or staged release is not every new user's, a yanked one
/// nobody's). The flag: a rollout decided it for this visitor (`id` gives its identity), so
/// no shared cache may keep the answer.
pub async fn latest_installer(
    app: &App,
    channel: &Channel,
    platform: Platform,
    arch: Option<Arch>,
    format: Format,
    id: impl Fn() -> Option<String>,
) -> Result<(HeaderValue, bool), AppError> {
    let found = match resolve_channel_file(app, channel, platform, arch, Need::Required).await {
        Ok(found) => found,
        // The channel file's origin failed: a Velopack or Sparkle release may still answer.
        Err(err) => match updater_installer(app, channel, platform, arch, format, &id).await? {
            Some(found) => return Ok(found),
            None => return Err(err),
        },
    };
    let mut per_client = false;
    if let Some((file, release)) = found {
        let chosen = match policy::of_channel(app, channel).await {
            Some(policy) => {
                let view = app.policies.electron(app, &file, release, policy).await?;
                let (chosen, decided) = view.latest(format, arch, &id);
                per_client = decided;
                chosen.map(|file| location(&file.url))
            }
            None => choose_file(&release.files, format, arch).map(|file| location(&file.url)),
        };
        if let Some(location) = chosen {
            return Ok((location?, per_client));
        }
    }
    if let Some(found) = updater_installer(app, channel, platform, arch, format, &id).await? {
        return Ok(found);
    }
    let arch_text = arch.map_or("any arch", Arch::as_str);
    Err(AppError::NoRelease {
        message: format!("no {format} for {platform}/{arch_text} in channel {channel}"),
        available: available_installers(app, channel).await?,
    })
}

/// The installer of a channel served by an updater family without electron-builder's
/// channel file (SPEC §2.6), under the channel's policy: a Sparkle appcast's enclosure
/// (`.dmg`, or the `.zip` with `?format=zip`), else a Velopack release's installer from its
/// `assets.{channel}.json` (`-Setup.exe`, `-Setup.pkg`, `.AppImage`, `-Portable.zip`; on
/// macOS the `.pkg` when no `.dmg` was asked for by name). The flag: a rollout decided it.
async fn updater_installer(
    app: &App,
    channel: &Channel,
    platform: Platform,
    arch: Option<Arch>,
    format: Format,
    id: impl Fn() -> Option<String>,
) -> Result<Option<(HeaderValue, bool)>, AppError> {
    let policy = policy::of_channel(app, channel).await;
    let fits = |name: &str, wanted: Format| {
        Format::from_file_name(name) == Some(wanted)
            && Arch::from_file_name(name)
                .is_none_or(|named| arch.is_none_or(|a| a == named || named == Arch::Universal))
    };
    let location = |url: &str| {
        HeaderValue::from_str(url)
            .map_err(|e| AppError::Internal(format!("unencodable download URL: {e}")))
    };
    if platform == Platform::Mac
        && let Some(Manifest::Sparkle(appcast)) = manifest(
            app,
            &app.keys.of_channel(channel, ChannelManifest::Sparkle),
            Need::Optional,
        )
        .await?
    {
        let (version, per_client) = match &policy {
            Some(policy) if !appcast.signed => app
                .policies
                .sparkle(channel, Arc::clone(&appcast), Arc::clone(policy))
                .await?
                .latest(&id),
            _ => (appcast.newest.clone(), false),
        };
        let enclosure = appcast
            .items
            .iter()
            .filter(|item| item.version.is_some() && item.version == version)
            .filter_map(|item| item.enclosure.as_ref())
            .find(|e| fits(&sparkle::url_file_name(&e.url), format));
        if let Some(enclosure) = enclosure {
            return Ok(Some((location(&enclosure.url)?, per_client)));
        }
    }
    let wanted = match (platform, format) {
        (Platform::Mac, Format::Dmg) => [Format::Dmg, Format::Pkg],
        (_, format) => [format, format],
    };
    for velopack_channel in velopack::feed_channels(channel, platform) {
        let Some(feed) = velopack_feed(app, &velopack_channel, Need::Optional).await? else {
            continue;
        };
        let (version, per_client) = match &policy {
            Some(policy) => app
                .policies
                .velopack(&velopack_channel, Arc::clone(&feed), Arc::clone(policy))
                .await?
                .latest(&id),
            None => (feed.newest.clone(), false),
        };
        let Some(version) = version else {
            continue;
        };
        let Ok(key) = ObjectKey::from_trusted(format!(
            "releases/v{version}/assets.{velopack_channel}.json"
        )) else {
            continue;
        };
        let Some(Manifest::VelopackInstallers(installers)) =
            manifest(app, &key, Need::Optional).await?
        else {
            continue;
        };
        for wanted in wanted {
            if let Some(name) = installers.files.iter().find(|name| fits(name, wanted)) {
                let url = crate::release::absolute_artifact_url(
                    &app.config.public_url,
                    &version.to_string(),
                    name,
                );
                return Ok(Some((location(&url)?, per_client)));
            }
        }
    }
    Ok(None)
}

/// A download URL as a `Location` header.
pub fn location(url: &str) -> Result<HeaderValue, AppError> {
    HeaderValue::from_str(url)
        .map_err(|e| AppError::Internal(format!("unencodable download URL: {e}")))
}

/// Every installer of a channel, across platforms, for a 404 that says what there is.
async fn available_installers(app: &App, channel: &Channel) -> Result<Vec<Available>, AppError> {
    let mut available = Vec::new();
    let files = [
        ChannelFile::for_client(channel, Platform::Mac, None),
        ChannelFile::for_client(channel, Platform::Windows, None),
        ChannelFile::for_client(channel, Platform::Linux, None),
        ChannelFile::for_client(channel, Platform::Linux, Some(Arch::Arm64)),
        ChannelFile::for_client(channel, Platform::Linux, Some(Arch::Armv7l)),
    ];
    for file in &files {
        if let Some(release) = channel_file(app, file, Need::Optional).await? {
            available.extend(
                release
                    .files
                    .iter()
                    .filter(|f| f.format.is_some())
                    .map(Available::from),
            );
        }
    }
    Ok(available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        assert!(is_newer(&v("1.1.0"), &v("1.0.0")));
        assert!(!is_newer(&v("1.0.0"), &v("1.0.0")));
        assert!(!is_newer(&v("1.0.0"), &v("1.1.0")));
        assert!(is_newer(&v("1.0.0"), &v("1.0.0-beta.2")));
        assert!(is_newer(&v("1.0.0-beta.10"), &v("1.0.0-beta.2")));
        assert!(!is_newer(&v("1.0.0+build.2"), &v("1.0.0+build.1")));
    }
}
