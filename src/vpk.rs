//! `release-edge publish` of a `vpk pack` output folder (Velopack, SPEC §2.6), with the
//! checks and order of an electron-builder publish (`src/writer.rs`).
//!
//! The folder holds `releases.{channel}.json` (the feed: every package `vpk` found in the
//! folder, each with `Size`, `SHA1` and `SHA256`), the packages (`*-full.nupkg`,
//! `*-delta.nupkg`), the installers (`*-Setup.exe`, `*-Setup.pkg`, `*.AppImage`,
//! `*-Portable.zip`, `*.msi`), `assets.{channel}.json` and the legacy `RELEASES`. Before
//! anything is written: every package of the version that the feed lists must be in the
//! folder with the feed's size and hashes, no artifact may be in the store with other bytes,
//! and the channel must not move backwards. Then: the version's packages and installers to
//! `releases/v{X}/`; the feed (merged with the one the store serves, as `vpk upload` merges
//! with the remote feed, so the channel's history and delta chains survive a CI job that
//! packed only the new version) and the other manifests beside them; last, the feed to
//! `releases/latest/`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::publish::Summary;
use crate::release::MAX_MANIFEST_BYTES;
use crate::release::channel::Channel;
use crate::release::parse_version;
use crate::release::velopack::{feed_channel, release_channel};
use crate::store::Store;
use crate::writer::{self, Artifact, channel_key, version_key};

/// Names of the installers `vpk pack` writes beside the packages.
const INSTALLER_SUFFIXES: &[&str] = &[
    "-Setup.exe",
    "-Setup.pkg",
    ".AppImage",
    "-Portable.zip",
    ".msi",
];

/// One Velopack feed of the folder, checked.
#[derive(Debug, Clone)]
pub struct FeedPlan {
    /// `releases.{channel}.json`.
    pub file_name: String,
    /// The feed's assets, as `vpk` wrote them.
    pub assets: Vec<Value>,
    /// Other manifests of the channel to keep beside the version (`assets.{channel}.json`,
    /// `RELEASES`): name and bytes.
    pub companions: Vec<(String, Bytes)>,
}

/// Everything a Velopack publish writes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The version.
    pub version: semver::Version,
    /// Packages and installers.
    pub artifacts: Vec<Artifact>,
    /// The feeds.
    pub feeds: Vec<FeedPlan>,
}

/// Whether `dir` is a `vpk pack` output folder for `channel`: it holds a
/// `releases.{velopack channel}.json` whose channel belongs to `channel` (`win` → `latest`).
pub fn is_vpk_folder(dir: &Path, channel: &Channel) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_str()
                .and_then(feed_channel)
                .is_some_and(|vch| &release_channel(vch) == channel)
        })
    })
}

/// A field of an asset, case-insensitively (as Velopack reads them).
fn field<'a>(asset: &'a Value, name: &str) -> Option<&'a Value> {
    asset
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

fn text<'a>(asset: &'a Value, name: &str) -> Option<&'a str> {
    field(asset, name).and_then(Value::as_str)
}

/// The version of an asset.
fn asset_version(asset: &Value) -> Option<semver::Version> {
    text(asset, "Version").and_then(parse_version)
}

/// Size, SHA-1, SHA-256 and SHA-512 of a file, in one read.
fn hashes(path: &Path) -> anyhow::Result<(u64, String, String, [u8; 64])> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (mut sha1, mut sha256, mut sha512) = (Sha1::new(), Sha256::new(), Sha512::new());
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        sha1.update(&buffer[..n]);
        sha256.update(&buffer[..n]);
        sha512.update(&buffer[..n]);
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok((
        size,
        hex(&sha1.finalize()),
        hex(&sha256.finalize()),
        sha512.finalize().into(),
    ))
}

/// A plain file name (no directory parts).
fn plain(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.')
}

/// Reads and checks a `vpk pack` output folder for `version` on `channel`.
pub fn plan(dir: &Path, version: &semver::Version, channel: &Channel) -> anyhow::Result<Plan> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut artifacts = Vec::new();
    let mut feeds = Vec::new();
    for name in &names {
        let Some(vch) = feed_channel(name) else {
            continue;
        };
        if &release_channel(vch) != channel {
            continue;
        }
        let doc: Value = serde_json::from_slice(&std::fs::read(dir.join(name))?)
            .with_context(|| format!("{name} is not valid JSON"))?;
        let assets = field(&doc, "Assets")
            .and_then(Value::as_array)
            .with_context(|| format!("{name} has no Assets list"))?
            .clone();
        let mine: Vec<&Value> = assets
            .iter()
            .filter(|a| asset_version(a).as_ref() == Some(version))
            .collect();
        ensure!(
            mine.iter()
                .any(|a| text(a, "Type").is_some_and(|t| t.eq_ignore_ascii_case("full"))),
            "{name} lists no full package of version {version}"
        );
        for asset in mine {
            let file = text(asset, "FileName")
                .with_context(|| format!("{name}: an asset without FileName"))?;
            ensure!(plain(file), "{name}: `{file}` is not a plain file name");
            let path = dir.join(file);
            ensure!(
                path.is_file(),
                "{name} lists {file}, which is not in {}",
                dir.display()
            );
            let (size, sha1, sha256, sha512) = hashes(&path)?;
            if let Some(want) = field(asset, "Size").and_then(Value::as_u64) {
                ensure!(want == size, "{file} is {size} bytes, {name} says {want}");
            }
            for (key, have) in [("SHA1", &sha1), ("SHA256", &sha256)] {
                if let Some(want) = text(asset, key).filter(|w| !w.is_empty()) {
                    ensure!(
                        want.eq_ignore_ascii_case(have),
                        "{file}: {key} {have} differs from {name}'s {want}"
                    );
                }
            }
            artifacts.push(Artifact {
                name: file.to_owned(),
                path,
                size,
                sha512,
            });
        }
        let mut companions = Vec::new();
        for companion in [
            format!("assets.{vch}.json"),
            "RELEASES".into(),
            format!("RELEASES-{vch}"),
        ] {
            let path = dir.join(&companion);
            if path.is_file() {
                companions.push((companion, Bytes::from(std::fs::read(path)?)));
            }
        }
        feeds.push(FeedPlan {
            file_name: name.clone(),
            assets,
            companions,
        });
    }
    ensure!(
        !feeds.is_empty(),
        "no Velopack feed for `{channel}` in {} (expected releases.{{channel}}.json)",
        dir.display()
    );
    for name in &names {
        if INSTALLER_SUFFIXES.iter().any(|s| name.ends_with(s))
            && !artifacts.iter().any(|a| &a.name == name)
        {
            let path = dir.join(name);
            let (size, _, _, sha512) = hashes(&path)?;
            artifacts.push(Artifact {
                name: name.clone(),
                path,
                size,
                sha512,
            });
        }
    }
    Ok(Plan {
        version: version.clone(),
        artifacts,
        feeds,
    })
}

/// The new feed's assets, then the served feed's that the new one does not name (by
/// `FileName`), newest version first: what `vpk upload` does with the remote feed.
pub fn merge(new: &[Value], served: &[Value]) -> Vec<Value> {
    let name = |a: &Value| text(a, "FileName").map(str::to_ascii_lowercase);
    let mut merged: Vec<Value> = new.to_vec();
    merged.extend(
        served
            .iter()
            .filter(|old| !new.iter().any(|n| name(n) == name(old)))
            .cloned(),
    );
    merged.sort_by_key(|a| std::cmp::Reverse(asset_version(a)));
    merged
}

/// Publishes the `vpk pack` folder `dir` as `version` on `channel`.
pub async fn publish(
    store: &Store,
    dir: &Path,
    version: &semver::Version,
    channel: &Channel,
) -> anyhow::Result<Summary> {
    let (dir, v, c) = (dir.to_path_buf(), version.clone(), channel.clone());
    let plan = tokio::task::spawn_blocking(move || plan(&dir, &v, &c)).await??;
    let mut summary = Summary::default();

    // 1. Check before writing: same-named artifacts hold the same bytes; the channel does
    //    not move backwards.
    let uploads = writer::check_artifacts(store, version, &plan.artifacts).await?;
    summary.unchanged.clone_from(&uploads.unchanged);
    let mut feeds = Vec::new();
    for feed in &plan.feeds {
        let served = match writer::served(store, &feed.file_name).await? {
            Some((bytes, served_version)) => {
                if let Some(served) = served_version {
                    ensure!(
                        served.cmp_precedence(version) != std::cmp::Ordering::Greater,
                        "releases/latest/{} serves {served}, newer than {version}; use `release-edge rollback` to serve an older version",
                        feed.file_name
                    );
                }
                let doc: Value = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "releases/latest/{} in the store is not valid JSON",
                        feed.file_name
                    )
                })?;
                field(&doc, "Assets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        let merged = serde_json::json!({ "Assets": merge(&feed.assets, &served) });
        let mut bytes = serde_json::to_vec_pretty(&merged)?;
        bytes.push(b'\n');
        ensure!(
            bytes.len() as u64 <= MAX_MANIFEST_BYTES,
            "the merged {} is over {MAX_MANIFEST_BYTES} bytes",
            feed.file_name
        );
        feeds.push((feed, Bytes::from(bytes)));
    }

    // 2. Packages and installers first: nothing points at them yet.
    summary.uploaded = writer::upload(store, uploads).await?;

    // 3. The version's manifests beside them; 4. last, the channel's feeds.
    for (feed, bytes) in &feeds {
        let key = version_key(version, &feed.file_name)?;
        writer::put_manifest(store, &key, bytes.clone()).await?;
        summary.version_manifests.push(key.to_string());
        for (name, companion) in &feed.companions {
            let key = version_key(version, name)?;
            writer::put_manifest(store, &key, companion.clone()).await?;
            summary.version_manifests.push(key.to_string());
        }
    }
    for (feed, bytes) in feeds {
        let key = channel_key(&feed.file_name)?;
        writer::put_manifest(store, &key, bytes).await?;
        summary.channel_manifests.push(key.to_string());
    }
    if summary.channel_manifests.is_empty() {
        bail!("nothing to publish");
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    fn asset(version: &str, kind: &str, file: &str, bytes: &[u8]) -> Value {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
        serde_json::json!({
            "PackageId": "App", "Version": version, "Type": kind, "FileName": file,
            "SHA1": hex(&Sha1::digest(bytes)), "SHA256": hex(&Sha256::digest(bytes)),
            "Size": bytes.len(), "NotesMarkdown": "", "NotesHtml": ""
        })
    }

    #[test]
    fn plan_checks_sizes_and_hashes_of_the_version_s_packages() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "App-1.1.0-full.nupkg", b"full-1.1");
        write(d, "App-1.1.0-delta.nupkg", b"delta-1.1");
        write(d, "App-win-Setup.exe", b"setup");
        write(d, "App-win-Portable.zip", b"portable");
        write(d, "RELEASES", b"legacy");
        write(d, "notes.txt", b"not uploaded");
        let feed = serde_json::json!({"Assets": [
            asset("1.1.0", "Full", "App-1.1.0-full.nupkg", b"full-1.1"),
            asset("1.1.0", "Delta", "App-1.1.0-delta.nupkg", b"delta-1.1"),
            // An older package vpk found in the folder: not this version's, not checked.
            asset("1.0.0", "Full", "App-1.0.0-full.nupkg", b"gone"),
        ]});
        write(d, "releases.win.json", feed.to_string().as_bytes());
        let v = semver::Version::new(1, 1, 0);
        let latest = Channel::latest();
        assert!(is_vpk_folder(d, &latest));
        assert!(!is_vpk_folder(d, &Channel::parse("beta").unwrap()));
        let p = plan(d, &v, &latest).unwrap();
        let names: Vec<_> = p.artifacts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "App-1.1.0-full.nupkg",
                "App-1.1.0-delta.nupkg",
                "App-win-Portable.zip",
                "App-win-Setup.exe"
            ]
        );
        assert_eq!(p.feeds[0].companions[0].0, "RELEASES");

        write(d, "App-1.1.0-delta.nupkg", b"delta-1.1!");
        let err = plan(d, &v, &latest).unwrap_err().to_string();
        assert!(
            err.contains("is 10 bytes, releases.win.json says 9"),
            "{err}"
        );
        write(d, "App-1.1.0-delta.nupkg", b"delta-1.X");
        let err = plan(d, &v, &latest).unwrap_err().to_string();
        assert!(err.contains("SHA1"), "{err}");
        std::fs::remove_file(d.join("App-1.1.0-delta.nupkg")).unwrap();
        let err = plan(d, &v, &latest).unwrap_err().to_string();
        assert!(err.contains("which is not in"), "{err}");
        let err = plan(d, &semver::Version::new(2, 0, 0), &latest)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no full package of version 2.0.0"), "{err}");
    }

    #[test]
    fn merge_keeps_the_served_history() {
        let new = [
            asset("1.1.0", "Full", "A-1.1.0-full.nupkg", b"x"),
            asset("1.1.0", "Delta", "A-1.1.0-delta.nupkg", b"y"),
        ];
        let served = [
            asset("1.0.0", "Full", "A-1.0.0-full.nupkg", b"z"),
            asset("1.1.0", "Full", "a-1.1.0-FULL.nupkg", b"old"),
        ];
        let merged = merge(&new, &served);
        let names: Vec<_> = merged
            .iter()
            .map(|a| text(a, "FileName").unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "A-1.1.0-full.nupkg",
                "A-1.1.0-delta.nupkg",
                "A-1.0.0-full.nupkg"
            ]
        );
    }
}
