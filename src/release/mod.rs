//! The release model: what the channel files in the store say about each channel's current
//! release, and the protocol logic built on it (installer choice, update answers, staged
//! rollouts). Nothing here knows about HTTP servers.

pub mod channel;
pub mod electron;
pub mod platform;
pub mod policy;
pub mod rollout;
pub mod sparkle;
pub mod squirrel;
pub mod tauri;
pub mod velopack;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Serialize;

use channel::Channel;
use platform::{Arch, Format, Platform};

/// Characters escaped in a path segment of the URLs we write (RFC 3986 `pchar` minus
/// sub-delims that proxies mangle); electron-updater encodes the same way.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

/// Largest manifest read into memory; a bigger object is not a manifest.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The strong ETag of a body: 128 bits of its BLAKE3.
pub fn body_etag(body: &[u8]) -> String {
    let hash = blake3::hash(body);
    format!("\"{}\"", &hash.to_hex().as_str()[..32])
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseFile {
    /// The file name as the manifest lists it.
    pub name: String,
    /// Absolute download URL (`{public_url}/releases/v{version}/{name}`, or the manifest's own
    /// absolute URL).
    pub url: String,
    /// Whose file it is.
    pub platform: Platform,
    /// Its arch: named in the file name, or the channel file's default.
    pub arch: Arch,
    /// True when the file name itself names the arch.
    pub arch_named: bool,
    /// Installer / archive format; `None` for anything else.
    pub format: Option<Format>,
    /// Size in bytes, when listed.
    pub size: Option<u64>,
    /// Base64 SHA-512, when listed.
    pub sha512: Option<String>,
}

/// Parses a client or manifest version: semver, with an optional leading `v` (Tauri).
pub fn parse_version(text: &str) -> Option<semver::Version> {
    let text = text.trim();
    let text = text.strip_prefix('v').unwrap_or(text);
    semver::Version::parse(text).ok()
}

/// `{public_url}/releases/v{version}/{name}`, the name percent-encoded; a name that is
/// already an absolute URL is kept as it is.
pub fn absolute_artifact_url(public_url: &str, version: &str, name: &str) -> String {
    if name.starts_with("https://") || name.starts_with("http://") {
        return name.to_owned();
    }
    format!(
        "{public_url}/releases/v{}/{}",
        utf8_percent_encode(version, SEGMENT),
        utf8_percent_encode(name, SEGMENT)
    )
}

/// The channel a version belongs to: the letters that start its first pre-release
/// identifier (`1.2.0-beta.1` → `beta`, `2.0.0-RC1` → `rc`), else `latest`.
pub fn channel_of(version: &semver::Version) -> Channel {
    let pre = version.pre.as_str();
    let ident = pre.split('.').next().unwrap_or(pre);
    let ident: String = ident
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    Channel::parse(&ident).unwrap_or_else(|_| Channel::latest())
}

/// The labels of `release_edge_downloads_total` for an artifact key
/// (`releases/v{version}/{file}`): channel, version, platform, arch. `None` for anything
/// that is not an installer or update archive (manifests, blockmaps, signatures).
pub fn download_labels(key: &str) -> Option<[String; 4]> {
    let mut segments = key.split('/');
    let (Some("releases"), Some(dir), Some(name), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return None;
    };
    let format = Format::from_file_name(name)?;
    let platform = platform::platform_of_file(name, format)?;
    let version = parse_version(dir.strip_prefix('v')?)?;
    let arch = Arch::from_file_name(name).unwrap_or(platform.default_arch());
    Some([
        channel_of(&version).to_string(),
        version.to_string(),
        platform.as_str().to_owned(),
        arch.as_str().to_owned(),
    ])
}

/// A file a visitor could get instead, for the 404 of `/latest`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Available {
    /// `darwin`, `win32`, `linux`.
    pub platform: &'static str,
    /// electron-builder's arch name.
    pub arch: &'static str,
    /// Format name as `?format=` takes it.
    pub format: &'static str,
    /// The file name.
    pub file: String,
}

impl From<&ReleaseFile> for Available {
    fn from(file: &ReleaseFile) -> Self {
        Self {
            platform: file.platform.as_str(),
            arch: file.arch.as_str(),
            format: file.format.map_or("other", Format::as_str),
            file: file.name.clone(),
        }
    }
}

/// Picks the file of `format` for `arch` among `files` (all of one platform).
///
/// With an arch: the file built for it, else a universal build (macOS). Without one (a
/// browser on a Mac cannot tell Apple Silicon from Intel): the universal build, else the
/// platform's default arch (x64).
pub fn choose_file(
    files: &[ReleaseFile],
    format: Format,
    arch: Option<Arch>,
) -> Option<&ReleaseFile> {
    let of_format = || files.iter().filter(move |f| f.format == Some(format));
    let with_arch = |wanted: Arch| of_format().find(|f| f.arch == wanted);
    match arch {
        Some(Arch::Universal) => with_arch(Arch::Universal),
        Some(wanted) => with_arch(wanted).or_else(|| with_arch(Arch::Universal)),
        None => with_arch(Arch::Universal).or_else(|| with_arch(Arch::X64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, platform: Platform) -> ReleaseFile {
        ReleaseFile {
            name: name.into(),
            url: format!("http://x/{name}"),
            platform,
            arch: Arch::from_file_name(name).unwrap_or(Arch::X64),
            arch_named: Arch::from_file_name(name).is_some(),
            format: Format::from_file_name(name),
            size: None,
            sha512: None,
        }
    }

    #[test]
    fn urls_are_absolute_and_encoded() {
        assert_eq!(
            absolute_artifact_url("https://dl.example.com", "1.0.0", "App Setup 1.0.0.exe"),
            "https://dl.example.com/releases/v1.0.0/App%20Setup%201.0.0.exe"
        );
        assert_eq!(
            absolute_artifact_url("http://x", "1.0.0", "Ünï#1.dmg"),
            "http://x/releases/v1.0.0/%C3%9Cn%C3%AF%231.dmg"
        );
        assert_eq!(
            absolute_artifact_url("http://x", "1.0.0", "https://cdn.example.com/a.dmg"),
            "https://cdn.example.com/a.dmg"
        );
    }

    #[test]
    fn versions_and_channels() {
        assert_eq!(parse_version("v1.2.3"), Some(semver::Version::new(1, 2, 3)));
        assert_eq!(parse_version("1.2"), None);
        let v = |s: &str| parse_version(s).unwrap();
        assert_eq!(channel_of(&v("1.2.0")), "latest");
        assert_eq!(channel_of(&v("1.2.0-beta.1")), "beta");
        assert_eq!(channel_of(&v("1.2.0-Alpha")), "alpha");
        assert_eq!(channel_of(&v("1.2.0-1")), "latest");
        assert_eq!(channel_of(&v("1.2.0+build.5")), "latest");
    }

    #[test]
    fn download_labels_of_keys() {
        assert_eq!(
            download_labels("releases/v1.2.0-beta.1/App-1.2.0-beta.1-arm64.dmg"),
            Some([
                "beta".into(),
                "1.2.0-beta.1".into(),
                "darwin".into(),
                "arm64".into()
            ])
        );
        assert_eq!(
            download_labels("releases/v1.0.0/App Setup 1.0.0.exe"),
            Some([
                "latest".into(),
                "1.0.0".into(),
                "win32".into(),
                "x64".into()
            ])
        );
        assert_eq!(download_labels("releases/v1.0.0/latest.yml"), None);
        assert_eq!(download_labels("releases/v1.0.0/App.exe.blockmap"), None);
        assert_eq!(download_labels("releases/latest/App.exe"), None);
        assert_eq!(download_labels("releases/vendor/App.exe"), None);
    }

    #[test]
    fn installer_choice() {
        let mac = [
            file("App-1.0.0-arm64.dmg", Platform::Mac),
            file("App-1.0.0.dmg", Platform::Mac),
            file("App-1.0.0-arm64-mac.zip", Platform::Mac),
        ];
        let pick = |files: &[ReleaseFile], format, arch| {
            choose_file(files, format, arch).map(|f| f.name.clone())
        };
        assert_eq!(
            pick(&mac, Format::Dmg, Some(Arch::Arm64)).unwrap(),
            "App-1.0.0-arm64.dmg"
        );
        assert_eq!(
            pick(&mac, Format::Dmg, Some(Arch::X64)).unwrap(),
            "App-1.0.0.dmg"
        );
        assert_eq!(pick(&mac, Format::Dmg, None).unwrap(), "App-1.0.0.dmg");
        assert_eq!(pick(&mac, Format::Zip, Some(Arch::X64)), None);
        assert_eq!(pick(&mac, Format::Pkg, None), None);

        let universal = [
            file("App-1.0.0-universal.dmg", Platform::Mac),
            file("App-1.0.0-arm64.dmg", Platform::Mac),
        ];
        assert_eq!(
            pick(&universal, Format::Dmg, None).unwrap(),
            "App-1.0.0-universal.dmg"
        );
        assert_eq!(
            pick(&universal, Format::Dmg, Some(Arch::X64)).unwrap(),
            "App-1.0.0-universal.dmg"
        );
        assert_eq!(
            pick(&universal, Format::Dmg, Some(Arch::Arm64)).unwrap(),
            "App-1.0.0-arm64.dmg"
        );

        let linux = [
            file("App-1.0.0.AppImage", Platform::Linux),
            file("app_1.0.0_amd64.deb", Platform::Linux),
        ];
        assert_eq!(
            pick(&linux, Format::Deb, None).unwrap(),
            "app_1.0.0_amd64.deb"
        );
        assert_eq!(pick(&linux, Format::AppImage, Some(Arch::Arm64)), None);
    }
}
