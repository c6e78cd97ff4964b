//! What each updater protocol and each download link gets, from the cached manifests:
//! the services behind `/update/...` and `/latest` (SPEC §2.2, §2.3).

use std::cmp::Ordering;
use std::sync::Arc;

use serde::Serialize;

use crate::cache::Manifest;
use crate::error::AppError;
use crate::origin::Found;
use crate::release::channel::Channel;
use crate::release::electron::{ChannelFile, ElectronManifest};
use crate::release::platform::{Arch, Format, Platform, packager_format};
use crate::release::squirrel::SquirrelReleases;
use crate::release::tauri::TauriManifest;
use crate::release::{Available, ReleaseFile, choose_file, rollout};
use crate::state::App;
use crate::store::ObjectKey;

/// Where the channel files currently served live (SPEC §1).
const LATEST_DIR: &str = "releases/latest";

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
}

/// The answer of the JSON protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonAnswer {
    /// `200` with the update.
    Update(UpdateJson),
    /// `204`: up to date (or not in this release's rollout yet).
    UpToDate,
}

/// The answer and whether it depended on the client's rollout bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The answer.
    pub answer: JsonAnswer,
    /// True when a staged rollout decided it (the answer is per client).
    pub per_client: bool,
}

fn latest_key(name: &str) -> Result<ObjectKey, AppError> {
    ObjectKey::from_trusted(format!("{LATEST_DIR}/{name}"))
        .map_err(|e| AppError::Internal(format!("bad manifest key {name}: {e}")))
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
        match manifest(app, &latest_key(&file.file_name())?, need).await? {
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
    let file = ChannelFile::for_client(channel, platform, arch);
    if file.arch.is_none() {
        return channel_file(app, &file, need).await;
    }
    if let Some(found) = channel_file(app, &file, Need::Optional).await? {
        return Ok(Some(found));
    }
    channel_file(app, &ChannelFile::for_client(channel, platform, None), need).await
}

/// The Squirrel.Windows `RELEASES` of a channel: `RELEASES` for `latest`,
/// `RELEASES-{channel}` for the others.
pub async fn squirrel_releases(
    app: &App,
    channel: &Channel,
) -> Result<Option<Arc<SquirrelReleases>>, AppError> {
    let name = if channel.is_latest() {
        "RELEASES".to_owned()
    } else {
        format!("RELEASES-{channel}")
    };
    Ok(
        match manifest(app, &latest_key(&name)?, Need::Required).await? {
            Some(Manifest::Squirrel(releases)) => Some(releases),
            _ => None,
        },
    )
}

/// True when `release` is newer than `client` (semver precedence: build metadata does not
/// count, a pre-release is older than its release).
pub fn is_newer(release: &semver::Version, client: &semver::Version) -> bool {
    release.cmp_precedence(client) == Ordering::Greater
}

/// The JSON protocol: Tauri's static manifest when it has an entry for the client, else the
/// electron-builder channel file's update artifact (SPEC §2.3).
pub async fn json_update(app: &App, check: &UpdateCheck) -> Result<Decided, AppError> {
    let tauri_key = latest_key(&format!("{}.json", check.channel))?;
    if let Some(Manifest::Tauri(tauri)) = manifest(app, &tauri_key, Need::Optional).await?
        && let Some(answer) = tauri_answer(&tauri, check)
    {
        return Ok(Decided {
            answer,
            per_client: false,
        });
    }

    let found = client_channel_file(
        app,
        &check.channel,
        check.platform,
        Some(check.arch),
        Need::Required,
    )
    .await?;
    let Some(release) = found else {
        return Err(AppError::NoRelease {
            message: format!(
                "no release for {}/{} in channel {}",
                check.platform, check.arch, check.channel
            ),
            available: Vec::new(),
        });
    };
    if !is_newer(&release.version, &check.version) {
        return Ok(Decided {
            answer: JsonAnswer::UpToDate,
            per_client: false,
        });
    }
    let format = check.platform.update_format();
    let Some(file) = choose_file(&release.files, format, Some(check.arch)) else {
        return Err(AppError::NoRelease {
            message: format!(
                "release {} has no {format} for {}/{}",
                release.version, check.platform, check.arch
            ),
            available: release.files.iter().map(Available::from).collect(),
        });
    };
    let mut per_client = false;
    if let Some(percentage) = release.staging_percentage.filter(|p| *p < 100.0) {
        per_client = true;
        let id = check.client_id.as_deref().unwrap_or("");
        if !rollout::in_rollout(id, &release.version.to_string(), percentage) {
            return Ok(Decided {
                answer: JsonAnswer::UpToDate,
                per_client,
            });
        }
    }
    let signature = signature_of(app, &release.version, file).await?;
    Ok(Decided {
        answer: JsonAnswer::Update(UpdateJson {
            version: release.version.to_string(),
            notes: release.notes.clone(),
            pub_date: release.release_date.clone(),
            url: file.url.clone(),
            signature,
            format: packager_format(&file.name, check.platform),
        }),
        per_client,
    })
}

fn tauri_answer(tauri: &TauriManifest, check: &UpdateCheck) -> Option<JsonAnswer> {
    let entry = tauri.entry(check.platform, check.arch)?;
    if !is_newer(&tauri.version, &check.version) {
        return Some(JsonAnswer::UpToDate);
    }
    let name = entry.url.rsplit('/').next().unwrap_or(&entry.url);
    Some(JsonAnswer::Update(UpdateJson {
        version: tauri.version.to_string(),
        notes: tauri.notes.clone(),
        pub_date: tauri.pub_date.clone(),
        url: entry.url.clone(),
        signature: Some(entry.signature.clone()),
        format: packager_format(name, check.platform),
    }))
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

/// The installer for a visitor of `/latest` (SPEC §2.2).
pub async fn latest_installer(
    app: &App,
    channel: &Channel,
    platform: Platform,
    arch: Option<Arch>,
    format: Format,
) -> Result<ReleaseFile, AppError> {
    let found = client_channel_file(app, channel, platform, arch, Need::Required).await?;
    if let Some(release) = found
        && let Some(file) = choose_file(&release.files, format, arch)
    {
        return Ok(file.clone());
    }
    let arch_text = arch.map_or("any arch", Arch::as_str);
    Err(AppError::NoRelease {
        message: format!("no {format} for {platform}/{arch_text} in channel {channel}"),
        available: available_installers(app, channel).await?,
    })
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
