//! Tauri v2 static update manifests (`{channel}.json`, the `platforms` format).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::platform::{Arch, Platform};
use super::{absolute_artifact_url, parse_version};

/// One platform entry of a Tauri manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TauriEntry {
    /// Absolute URL of the update archive.
    pub url: String,
    /// The minisign signature (the content of the `.sig` file).
    pub signature: String,
}

/// A parsed `{channel}.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct TauriManifest {
    /// The release.
    pub version: semver::Version,
    /// Release notes.
    pub notes: Option<String>,
    /// RFC 3339 publication date.
    pub pub_date: Option<String>,
    /// `{target}-{arch}[-{installer}]` → entry.
    pub platforms: BTreeMap<String, TauriEntry>,
}

#[derive(Deserialize)]
struct Raw {
    version: String,
    notes: Option<String>,
    pub_date: Option<String>,
    platforms: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    url: String,
    signature: String,
}

/// Tauri's `{{target}}` for a platform.
fn target_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Mac => "darwin",
        Platform::Windows => "windows",
        Platform::Linux => "linux",
    }
}

impl TauriManifest {
    /// Parses the JSON; relative URLs become `{public_url}/releases/v{version}/{url}`.
    pub fn parse(bytes: &[u8], public_url: &str) -> Option<Self> {
        let raw: Raw = serde_json::from_slice(bytes).ok()?;
        let version = parse_version(&raw.version)?;
        let version_text = version.to_string();
        let platforms = raw
            .platforms
            .into_iter()
            .map(|(key, entry)| {
                let url = absolute_artifact_url(public_url, &version_text, &entry.url);
                (
                    key,
                    TauriEntry {
                        url,
                        signature: entry.signature,
                    },
                )
            })
            .collect();
        Some(Self {
            version,
            notes: raw.notes,
            pub_date: raw.pub_date,
            platforms,
        })
    }

    /// The entry for `platform`/`arch`: `darwin-aarch64` exactly, else an installer-specific
    /// key (`windows-x86_64-nsis`), preferring the kinds every Tauri-protocol client can
    /// install (AppImage, NSIS, MSI, app) over `deb`/`rpm`.
    pub fn entry(&self, platform: Platform, arch: Arch) -> Option<&TauriEntry> {
        let key = format!("{}-{}", target_name(platform), arch.tauri_name());
        if let Some(entry) = self.platforms.get(&key) {
            return Some(entry);
        }
        ["appimage", "nsis", "msi", "app"]
            .iter()
            .find_map(|kind| self.platforms.get(&format!("{key}-{kind}")))
            .or_else(|| {
                let prefix = format!("{key}-");
                self.platforms
                    .iter()
                    .find(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, v)| v)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
      "version": "v1.1.0",
      "notes": "New things",
      "pub_date": "2026-11-01T12:00:00Z",
      "platforms": {
        "darwin-aarch64": { "signature": "SIG-A", "url": "App_aarch64.app.tar.gz" },
        "linux-x86_64": { "signature": "SIG-L", "url": "https://cdn.example.com/App.AppImage" },
        "windows-x86_64-nsis": { "signature": "SIG-W", "url": "App_1.1.0_x64-setup.exe" }
      }
    }"#;

    #[test]
    fn entries_by_target_and_arch() {
        let m = TauriManifest::parse(JSON.as_bytes(), "http://x").unwrap();
        assert_eq!(m.version, semver::Version::new(1, 1, 0));
        let mac = m.entry(Platform::Mac, Arch::Arm64).unwrap();
        assert_eq!(mac.url, "http://x/releases/v1.1.0/App_aarch64.app.tar.gz");
        assert_eq!(mac.signature, "SIG-A");
        assert_eq!(
            m.entry(Platform::Linux, Arch::X64).unwrap().url,
            "https://cdn.example.com/App.AppImage"
        );
        assert_eq!(
            m.entry(Platform::Windows, Arch::X64).unwrap().signature,
            "SIG-W"
        );
        assert!(m.entry(Platform::Mac, Arch::X64).is_none());
        let both = r#"{"version":"1.0.0","platforms":{
            "linux-x86_64-deb":{"signature":"D","url":"a.deb"},
            "linux-x86_64-appimage":{"signature":"A","url":"a.AppImage.tar.gz"}}}"#;
        let m = TauriManifest::parse(both.as_bytes(), "http://x").unwrap();
        assert_eq!(m.entry(Platform::Linux, Arch::X64).unwrap().signature, "A");
        assert!(TauriManifest::parse(b"{}", "http://x").is_none());
    }
}
