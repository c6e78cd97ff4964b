//! GitHub's release objects (the fields we read of the REST API's "List releases" answer)
//! and how releases map onto release-edge's layout: channels and keys.

use serde::{Deserialize, Serialize};

use crate::release::channel::Channel;
use crate::release::electron::ChannelFile;
use crate::release::{channel_of, parse_version};
use crate::store::ObjectKey;

/// A release, as `GET /repos/{owner}/{repo}/releases` lists it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Release {
    /// Release id.
    pub id: u64,
    /// The tag (`v1.2.0`, `1.2.0-beta.1`).
    pub tag_name: String,
    /// Unpublished: never served.
    #[serde(default)]
    pub draft: bool,
    /// Marked as a pre-release on GitHub.
    #[serde(default)]
    pub prerelease: bool,
    /// Its uploaded files.
    #[serde(default)]
    pub assets: Vec<Asset>,
}

/// A release asset.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Asset {
    /// Asset id: a re-upload under the same name gets a new one.
    pub id: u64,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// `uploaded` once complete; `starter` while an upload is in progress.
    #[serde(default)]
    pub state: Option<String>,
    /// The API URL of the asset (`.../releases/assets/{id}`): with
    /// `Accept: application/octet-stream` it redirects to the bytes, token accepted.
    pub url: String,
    /// The public download URL (`https://github.com/{owner}/{repo}/releases/download/...`).
    pub browser_download_url: String,
    /// Last change, RFC 3339.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// `sha256:{hex}` of the bytes, computed by GitHub at upload (assets uploaded before
    /// June 2025 have none).
    #[serde(default)]
    pub digest: Option<String>,
}

impl Asset {
    /// True once the upload is complete (a half-uploaded asset is not served).
    pub fn is_complete(&self) -> bool {
        self.state.as_deref().is_none_or(|s| s == "uploaded")
    }
}

/// A non-draft release whose tag is a version, with the channel it feeds.
#[derive(Debug, Clone)]
pub struct ChannelRelease {
    /// The version its tag names.
    pub version: semver::Version,
    /// `latest` for a published release; a pre-release feeds the channel of its semver
    /// pre-release tag (`1.2.0-beta.1` → `beta`), `beta` when its version has none.
    pub channel: Channel,
    /// The release.
    pub release: Release,
}

/// The servable releases, newest version first: drafts and tags that are not versions
/// are left out.
pub fn servable(releases: Vec<Release>) -> Vec<ChannelRelease> {
    let mut out: Vec<ChannelRelease> = releases
        .into_iter()
        .filter(|r| !r.draft)
        .filter_map(|release| {
            let version = parse_version(&release.tag_name)?;
            let channel = match channel_of(&version) {
                _ if !release.prerelease => Channel::latest(),
                c if c.is_latest() => Channel::parse("beta").ok()?,
                c => c,
            };
            Some(ChannelRelease {
                version,
                channel,
                release,
            })
        })
        .collect();
    out.sort_by(|a, b| b.version.cmp_precedence(&a.version));
    out
}

/// What a store key names, in GitHub's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitHubKey {
    /// `releases/latest/{file}`: the manifest `file` of the newest release of `channel`.
    Channel {
        /// The channel the file belongs to.
        channel: Channel,
        /// The file name asked for.
        file: String,
        /// The same file under the `latest` channel's name (`latest-mac.yml` for
        /// `beta-mac.yml`): what a pre-release built without channel detection carries.
        latest_name: Option<String>,
    },
    /// `releases/v{version}/{file}`: an asset of the release tagged with `version`.
    Versioned {
        /// The version.
        version: semver::Version,
        /// The asset name.
        file: String,
    },
}

impl GitHubKey {
    /// Maps a store key; `None` for a key GitHub cannot hold.
    pub fn of(key: &ObjectKey) -> Option<Self> {
        let rest = key.as_str().strip_prefix("releases/")?;
        let (dir, file) = rest.split_once('/')?;
        if file.contains('/') {
            return None;
        }
        if dir == "latest" {
            let (channel, latest_name) = channel_of_file(file)?;
            return Some(GitHubKey::Channel {
                channel,
                file: file.to_owned(),
                latest_name,
            });
        }
        let version = parse_version(dir.strip_prefix('v')?)?;
        Some(GitHubKey::Versioned {
            version,
            file: file.to_owned(),
        })
    }
}

/// The channel of a channel-level manifest name, and its `latest` spelling.
pub fn channel_of_file(file: &str) -> Option<(Channel, Option<String>)> {
    if let Some(parsed) = ChannelFile::parse(file) {
        let latest = (!parsed.channel.is_latest()).then(|| {
            ChannelFile {
                channel: Channel::latest(),
                ..parsed.clone()
            }
            .file_name()
        });
        return Some((parsed.channel, latest));
    }
    if let Some(channel) = file.strip_suffix(".json").map(Channel::parse) {
        let channel = channel.ok()?;
        let latest = (!channel.is_latest()).then(|| "latest.json".to_owned());
        return Some((channel, latest));
    }
    if file == "RELEASES" {
        return Some((Channel::latest(), None));
    }
    if let Some(channel) = file.strip_prefix("RELEASES-") {
        return Some((Channel::parse(channel).ok()?, Some("RELEASES".into())));
    }
    None
}

/// The asset a key names in `releases` (newest first, from [`servable`]).
///
/// A channel file comes from the newest release that carries it among the channel's own
/// releases and the stable ones (electron-builder's rule: a beta user also gets a newer
/// stable release); within a release of another channel its `latest` spelling counts too.
pub fn find_asset<'a>(releases: &'a [ChannelRelease], key: &GitHubKey) -> Option<&'a Asset> {
    find_release_asset(releases, key).map(|(_, asset)| asset)
}

/// As [`find_asset`], with the release the asset belongs to.
pub fn find_release_asset<'a>(
    releases: &'a [ChannelRelease],
    key: &GitHubKey,
) -> Option<(&'a ChannelRelease, &'a Asset)> {
    let named = |release: &'a ChannelRelease, name: &str| {
        release
            .release
            .assets
            .iter()
            .find(|a| a.name == name && a.is_complete())
            .map(|asset| (release, asset))
    };
    match key {
        GitHubKey::Channel {
            channel,
            file,
            latest_name,
        } => releases
            .iter()
            .filter(|r| r.channel == *channel || r.channel.is_latest())
            .find_map(|r| {
                named(r, file)
                    .or_else(|| latest_name.as_deref().and_then(|latest| named(r, latest)))
            }),
        GitHubKey::Versioned { version, file } => releases
            .iter()
            .find(|r| r.version == *version)
            .and_then(|r| named(r, file)),
    }
}

/// A published release with `assets` (name, size), for the tests of the modules that read
/// releases.
#[cfg(test)]
pub(crate) fn test_release(tag: &str, prerelease: bool, assets: &[(&str, u64)]) -> Release {
    Release {
        id: 1,
        tag_name: tag.into(),
        draft: false,
        prerelease,
        assets: assets
            .iter()
            .enumerate()
            .map(|(i, (name, size))| Asset {
                id: i as u64,
                name: (*name).into(),
                size: *size,
                state: Some("uploaded".into()),
                url: format!("https://api.example/assets/{tag}/{name}"),
                browser_download_url: format!("https://example/{tag}/{name}"),
                updated_at: None,
                digest: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(tag: &str, prerelease: bool, draft: bool, assets: &[&str]) -> Release {
        let sized: Vec<(&str, u64)> = assets.iter().map(|name| (*name, 1)).collect();
        Release {
            draft,
            ..test_release(tag, prerelease, &sized)
        }
    }

    fn key(k: &str) -> GitHubKey {
        GitHubKey::of(&ObjectKey::from_trusted(k).unwrap()).unwrap()
    }

    fn found(releases: &[ChannelRelease], k: &str) -> Option<String> {
        find_asset(releases, &key(k)).map(|a| a.url.clone())
    }

    #[test]
    fn channels_from_flags_and_tags() {
        let list = servable(vec![
            release("v1.0.0", false, false, &[]),
            release("v1.1.0-beta.2", true, false, &[]),
            release("1.1.0-alpha.1", true, false, &[]),
            release("v1.2.0", true, false, &[]),
            release("v2.0.0", false, true, &[]),
            release("nightly", false, false, &[]),
        ]);
        let got: Vec<(String, String)> = list
            .iter()
            .map(|r| (r.version.to_string(), r.channel.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("1.2.0".to_owned(), "beta".to_owned()),
                ("1.1.0-beta.2".into(), "beta".into()),
                ("1.1.0-alpha.1".into(), "alpha".into()),
                ("1.0.0".into(), "latest".into()),
            ]
        );
    }

    #[test]
    fn keys_map_to_assets() {
        let list = servable(vec![
            release("v1.0.0", false, false, &["latest-mac.yml", "App-1.0.0.zip"]),
            release(
                "v1.1.0-beta.1",
                true,
                false,
                &["beta-mac.yml", "latest.yml"],
            ),
            release("v0.9.0", false, false, &["latest-linux.yml", "latest.yml"]),
        ]);
        let url = |tag: &str, name: &str| Some(format!("https://api.example/assets/{tag}/{name}"));
        // latest: stable releases only, the newest that has the file.
        assert_eq!(
            found(&list, "releases/latest/latest-mac.yml"),
            url("v1.0.0", "latest-mac.yml")
        );
        assert_eq!(
            found(&list, "releases/latest/latest-linux.yml"),
            url("v0.9.0", "latest-linux.yml")
        );
        assert_eq!(
            found(&list, "releases/latest/latest.yml"),
            url("v0.9.0", "latest.yml")
        );
        // beta: the beta release first, then stable; a beta release's latest.yml counts.
        assert_eq!(
            found(&list, "releases/latest/beta-mac.yml"),
            url("v1.1.0-beta.1", "beta-mac.yml")
        );
        assert_eq!(
            found(&list, "releases/latest/beta.yml"),
            url("v1.1.0-beta.1", "latest.yml")
        );
        assert_eq!(
            found(&list, "releases/latest/beta-linux.yml"),
            url("v0.9.0", "latest-linux.yml")
        );
        // versioned assets by exact version, tag with or without `v`.
        assert_eq!(
            found(&list, "releases/v1.0.0/App-1.0.0.zip"),
            url("v1.0.0", "App-1.0.0.zip")
        );
        assert_eq!(found(&list, "releases/v1.0.0/Other.zip"), None);
        assert_eq!(found(&list, "releases/v3.0.0/App-1.0.0.zip"), None);
        assert_eq!(
            found(&list, "releases/latest/alpha.yml"),
            url("v0.9.0", "latest.yml")
        );
    }

    #[test]
    fn keys_github_cannot_hold() {
        for k in [
            "releases/latest/notes.txt",
            "releases/nightly/App.zip",
            "releases/v1.0.0/a/b",
        ] {
            assert_eq!(
                GitHubKey::of(&ObjectKey::from_trusted(k).unwrap()),
                None,
                "{k}"
            );
        }
        assert_eq!(
            key("releases/latest/RELEASES-beta"),
            GitHubKey::Channel {
                channel: Channel::parse("beta").unwrap(),
                file: "RELEASES-beta".into(),
                latest_name: Some("RELEASES".into())
            }
        );
    }

    #[test]
    fn incomplete_uploads_are_not_served() {
        let mut r = release("v1.0.0", false, false, &["latest.yml"]);
        r.assets[0].state = Some("starter".into());
        assert_eq!(
            found(&servable(vec![r]), "releases/latest/latest.yml"),
            None
        );
    }
}
