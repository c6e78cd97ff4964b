//! `release-edge publish` and `release-edge rollback`: filling the store safely (SPEC §4).
//!
//! Publish checks everything before it writes anything: every file a channel file lists
//! must be in the folder with the size and sha512 the channel file says, and no artifact may
//! already be in the store with other bytes. Then it writes in the order that keeps every
//! served answer valid: artifacts to `releases/v{X}/`, that version's channel files beside
//! them, and last the channel files under `releases/latest/`. Each write is atomic, so a
//! publish killed at any point leaves the release served before intact.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, ensure};
use base64::Engine;
use bytes::Bytes;
use serde_norway::Value;

use crate::release::MAX_MANIFEST_BYTES;
use crate::release::channel::Channel;
use crate::release::electron::ChannelFile;
use crate::release::parse_version;
use crate::store::Store;
use crate::writer::{self, channel_key, version_key};

pub use crate::writer::Artifact;

/// A channel file of the folder, checked.
#[derive(Debug, Clone)]
pub struct LocalManifest {
    /// `latest-mac.yml`, ...
    pub file_name: String,
    /// Its bytes, as electron-builder wrote them.
    pub bytes: Bytes,
    /// Parsed.
    pub doc: Value,
}

/// Everything a publish will write, checked against the folder.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The version.
    pub version: semver::Version,
    /// The channel.
    pub channel: Channel,
    /// Artifacts, blockmaps and signatures.
    pub artifacts: Vec<Artifact>,
    /// The channel's files (`{channel}*.yml`).
    pub manifests: Vec<LocalManifest>,
}

fn sha512_file(path: &Path) -> anyhow::Result<([u8; 64], u64)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    crate::store::sha512_file(file).with_context(|| format!("reading {}", path.display()))
}

/// Reads and checks an electron-builder output folder for `version` on `channel`.
pub fn plan(dir: &Path, version: &str, channel: &str) -> anyhow::Result<Plan> {
    let channel = Channel::parse(channel)?;
    let version =
        parse_version(version).with_context(|| format!("`{version}` is not a semver version"))?;
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();

    let mut manifests = Vec::new();
    let mut artifacts: BTreeMap<String, Artifact> = BTreeMap::new();
    for name in &names {
        let Some(file) = ChannelFile::parse(name) else {
            continue;
        };
        if file.channel != channel {
            continue;
        }
        let bytes = Bytes::from(std::fs::read(dir.join(name))?);
        let doc: Value = serde_norway::from_slice(&bytes)
            .with_context(|| format!("{name} is not valid YAML"))?;
        let said = doc
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_default();
        ensure!(
            parse_version(said).as_ref() == Some(&version),
            "{name} is for version `{said}`, not {version}"
        );
        let files = doc
            .get("files")
            .and_then(Value::as_sequence)
            .with_context(|| format!("{name} lists no files"))?;
        for entry in files {
            let url = entry
                .get("url")
                .and_then(Value::as_str)
                .with_context(|| format!("{name}: a file without url"))?;
            ensure!(
                !url.contains('/') && !url.contains('\\') && !url.starts_with('.'),
                "{name}: `{url}` is not a plain file name"
            );
            let path = dir.join(url);
            ensure!(
                path.is_file(),
                "{name} lists {url}, which is not in {}",
                dir.display()
            );
            let (sha512, size) = sha512_file(&path)?;
            if let Some(want) = entry.get("size").and_then(Value::as_u64) {
                ensure!(want == size, "{url} is {size} bytes, {name} says {want}");
            }
            if let Some(want) = entry.get("sha512").and_then(Value::as_str) {
                let have = base64::engine::general_purpose::STANDARD.encode(sha512);
                ensure!(
                    want == have,
                    "{url}: sha512 {have} differs from {name}'s {want}"
                );
            }
            artifacts.insert(
                url.to_owned(),
                Artifact {
                    name: url.to_owned(),
                    path,
                    size,
                    sha512,
                },
            );
            for companion in [format!("{url}.blockmap"), format!("{url}.sig")] {
                let path = dir.join(&companion);
                if path.is_file() {
                    let (sha512, size) = sha512_file(&path)?;
                    artifacts.insert(
                        companion.clone(),
                        Artifact {
                            name: companion,
                            path,
                            size,
                            sha512,
                        },
                    );
                }
            }
        }
        manifests.push(LocalManifest {
            file_name: name.clone(),
            bytes,
            doc,
        });
    }
    ensure!(
        !manifests.is_empty(),
        "no channel file for `{channel}` in {} (expected {channel}.yml, {channel}-mac.yml, {channel}-linux.yml, ...)",
        dir.display()
    );
    Ok(Plan {
        version,
        channel,
        artifacts: artifacts.into_values().collect(),
        manifests,
    })
}

/// Merges a second arch's channel file into the one already published for the version:
/// the existing fields stay, `files` gains the new entries (a file listed by both takes the
/// new entry).
pub fn merge(existing: &Value, new: &Value) -> Value {
    let mut merged = existing.clone();
    let new_files: Vec<Value> = new
        .get("files")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let url_of = |v: &Value| v.get("url").and_then(Value::as_str).map(str::to_owned);
    let new_urls: Vec<String> = new_files.iter().filter_map(url_of).collect();
    let mut files: Vec<Value> = existing
        .get("files")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| url_of(f).is_none_or(|u| !new_urls.contains(&u)))
        .collect();
    files.extend(new_files);
    if let Some(map) = merged.as_mapping_mut() {
        map.insert(Value::from("files"), Value::Sequence(files));
    }
    merged
}

/// Serializes a merged channel file, quoting `releaseDate` as electron-builder does (js-yaml
/// would read an unquoted timestamp as a Date).
fn render(doc: &Value) -> anyhow::Result<Bytes> {
    let text = serde_norway::to_string(doc)?;
    let text = text
        .lines()
        .map(|line| match line.strip_prefix("releaseDate: ") {
            Some(date) if !date.starts_with(['\'', '"']) => format!("releaseDate: '{date}'"),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Bytes::from(text + "\n"))
}

/// What a publish did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Artifacts written.
    pub uploaded: Vec<String>,
    /// Artifacts already in the store with the same bytes.
    pub unchanged: Vec<String>,
    /// Channel files written under `releases/v{X}/`, merged with another arch's when present.
    pub version_manifests: Vec<String>,
    /// Channel files written under `releases/latest/`.
    pub channel_manifests: Vec<String>,
}

/// Whether `dir` holds an electron-builder channel file of `channel`.
fn has_channel_file(dir: &Path, channel: &Channel) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_str()
                .and_then(ChannelFile::parse)
                .is_some_and(|f| &f.channel == channel)
        })
    })
}

/// Publishes the folder `dir` as `version` on `channel`: an electron-builder output folder,
/// or a `vpk pack` one (`crate::vpk`).
pub async fn publish(
    store: &Store,
    dir: &Path,
    version: &str,
    channel: &str,
) -> anyhow::Result<Summary> {
    // A `vpk pack` folder (Velopack) has its own feed and checks, and the same order.
    let parsed_channel = Channel::parse(channel)?;
    if crate::vpk::is_vpk_folder(dir, &parsed_channel) && !has_channel_file(dir, &parsed_channel) {
        let version = parse_version(version)
            .with_context(|| format!("`{version}` is not a semver version"))?;
        return crate::vpk::publish(store, dir, &version, &parsed_channel).await;
    }
    let dir = dir.to_path_buf();
    let (version_text, channel_text) = (version.to_owned(), channel.to_owned());
    let plan =
        tokio::task::spawn_blocking(move || plan(&dir, &version_text, &channel_text)).await??;
    let version = &plan.version;
    let mut summary = Summary::default();

    // 1. Check before writing anything: same-named artifacts must hold the same bytes, and
    //    the channel must not move backwards (that is what `rollback` is for).
    let uploads = writer::check_artifacts(store, version, &plan.artifacts).await?;
    summary.unchanged.clone_from(&uploads.unchanged);
    for manifest in &plan.manifests {
        if let Some((_, Some(served))) = writer::served(store, &manifest.file_name).await? {
            ensure!(
                served.cmp_precedence(version) != std::cmp::Ordering::Greater,
                "releases/latest/{} serves {served}, newer than {version}; use `release-edge rollback` to serve an older version",
                manifest.file_name
            );
        }
    }

    // 2. Artifacts first: nothing points at them yet.
    summary.uploaded = writer::upload(store, uploads).await?;

    // 3. The version's channel files, merged with another arch's; 4. then the channel's.
    let mut rendered = Vec::new();
    for manifest in &plan.manifests {
        let version_key = version_key(version, &manifest.file_name)?;
        let bytes = match store.get_bytes(&version_key, MAX_MANIFEST_BYTES).await? {
            Some(existing) if existing != manifest.bytes => {
                let existing: Value = serde_norway::from_slice(&existing)
                    .with_context(|| format!("{version_key} in the store is not valid YAML"))?;
                render(&merge(&existing, &manifest.doc))?
            }
            _ => manifest.bytes.clone(),
        };
        writer::put_manifest(store, &version_key, bytes.clone()).await?;
        summary.version_manifests.push(version_key.to_string());
        rendered.push((manifest.file_name.clone(), bytes));
    }
    for (file_name, bytes) in rendered {
        let latest = channel_key(&file_name)?;
        writer::put_manifest(store, &latest, bytes).await?;
        summary.channel_manifests.push(latest.to_string());
    }
    Ok(summary)
}

/// Serves version `to` on `channel` again: copies its channel files from `releases/v{to}/`
/// over `releases/latest/`, one by one, each write atomic.
pub async fn rollback(store: &Store, channel: &str, to: &str) -> anyhow::Result<Vec<String>> {
    let channel = Channel::parse(channel)?;
    let version = parse_version(to).with_context(|| format!("`{to}` is not a semver version"))?;
    let dir = format!("releases/v{version}");
    let names: Vec<String> = store
        .list(&dir)
        .await?
        .into_iter()
        .filter(|name| ChannelFile::parse(name).is_some_and(|f| f.channel == channel))
        .collect();
    ensure!(
        !names.is_empty(),
        "version {version} has no channel files for `{channel}` in the store (looked in {dir}/)"
    );
    let mut written = Vec::new();
    for name in names {
        let from = version_key(&version, &name)?;
        let bytes = store
            .get_bytes(&from, MAX_MANIFEST_BYTES)
            .await?
            .with_context(|| format!("{from} disappeared"))?;
        let to = channel_key(&name)?;
        writer::put_manifest(store, &to, bytes).await?;
        written.push(to.to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha512};

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    fn manifest(version: &str, files: &[(&str, &[u8])]) -> String {
        let mut yaml = format!("version: {version}\nfiles:\n");
        for (name, bytes) in files {
            let sha = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes));
            yaml.push_str(&format!(
                "  - url: {name}\n    sha512: {sha}\n    size: {}\n",
                bytes.len()
            ));
        }
        yaml.push_str(&format!(
            "path: {}\nreleaseDate: '2026-11-01T12:00:00.000Z'\n",
            files[0].0
        ));
        yaml
    }

    #[test]
    fn plan_checks_every_listed_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "App-1.0.0.dmg", b"dmg");
        write(dir.path(), "App-1.0.0.dmg.blockmap", b"map");
        write(
            dir.path(),
            "latest-mac.yml",
            manifest("1.0.0", &[("App-1.0.0.dmg", b"dmg")]).as_bytes(),
        );
        write(dir.path(), "beta-mac.yml", b"not: for this channel");
        write(dir.path(), "builder-debug.yml", b"ignored: true");
        let plan = plan(dir.path(), "1.0.0", "latest").unwrap();
        let names: Vec<_> = plan.artifacts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["App-1.0.0.dmg", "App-1.0.0.dmg.blockmap"]);
        assert_eq!(plan.manifests.len(), 1);

        let err = super::plan(dir.path(), "1.0.1", "latest")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not 1.0.1"), "{err}");
        write(dir.path(), "App-1.0.0.dmg", b"DMG");
        let err = super::plan(dir.path(), "1.0.0", "latest")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sha512"), "{err}");
        std::fs::remove_file(dir.path().join("App-1.0.0.dmg")).unwrap();
        let err = super::plan(dir.path(), "1.0.0", "latest")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in"), "{err}");
        let err = super::plan(dir.path(), "1.0.0", "nightly")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no channel file"), "{err}");
    }

    #[test]
    fn merge_adds_the_second_arch() {
        let x64: Value = serde_norway::from_str(&manifest(
            "1.0.0",
            &[("App-1.0.0-mac.zip", b"x"), ("App-1.0.0.dmg", b"xd")],
        ))
        .unwrap();
        let arm: Value = serde_norway::from_str(&manifest(
            "1.0.0",
            &[
                ("App-1.0.0-arm64-mac.zip", b"a"),
                ("App-1.0.0-arm64.dmg", b"ad"),
            ],
        ))
        .unwrap();
        let merged = merge(&x64, &arm);
        let urls: Vec<_> = merged["files"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| f["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            urls,
            [
                "App-1.0.0-mac.zip",
                "App-1.0.0.dmg",
                "App-1.0.0-arm64-mac.zip",
                "App-1.0.0-arm64.dmg"
            ]
        );
        assert_eq!(merged["path"], "App-1.0.0-mac.zip");
        // Publishing the same arch again replaces its entries instead of duplicating them.
        let again = merge(&merged, &arm);
        assert_eq!(again["files"].as_sequence().unwrap().len(), 4);
        let text = String::from_utf8(render(&again).unwrap().to_vec()).unwrap();
        assert!(
            text.contains("releaseDate: '2026-11-01T12:00:00.000Z'"),
            "{text}"
        );
    }
}
