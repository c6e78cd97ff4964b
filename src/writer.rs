//! Ordered, checked, atomic writes of a release into the store: the machinery `publish`
//! and `mirror` share (and `rollback`'s channel-file writes).
//!
//! The order keeps every served answer valid: first the artifacts (nothing points at them
//! yet), then the version's manifests beside them under `releases/v{X}/`, last the channel
//! files under `releases/latest/`. Every write is atomic (the store's `put_file` and
//! `put_bytes`: a temporary file and a rename, or an S3 upload that is invisible until
//! complete). An artifact already in the store is compared by SHA-512: the same bytes are
//! skipped, other bytes are refused (a published artifact never changes). A manifest whose
//! bytes are already there is not written again. So a command run twice writes nothing the
//! second time, and one killed at any point leaves what was served intact.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_norway::Value;

use crate::release::squirrel::SquirrelReleases;
use crate::release::{MAX_MANIFEST_BYTES, parse_version};
use crate::store::{ObjectKey, Store};

/// A local file to upload under `releases/v{X}/`, its size and SHA-512 known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// File name, the same locally and under `releases/v{X}/`.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-512.
    pub sha512: [u8; 64],
}

/// `releases/v{version}/{name}`.
pub fn version_key(version: &semver::Version, name: &str) -> anyhow::Result<ObjectKey> {
    key(format!("releases/v{version}/{name}"))
}

/// `releases/latest/{name}`.
pub fn channel_key(name: &str) -> anyhow::Result<ObjectKey> {
    key(format!("releases/latest/{name}"))
}

fn key(path: String) -> anyhow::Result<ObjectKey> {
    ObjectKey::from_trusted(path.clone()).map_err(|e| anyhow::anyhow!("bad key {path}: {e}"))
}

/// The artifacts of one version, checked against the store: what must be uploaded, and
/// what is there already with the same bytes.
#[derive(Debug)]
pub struct Uploads {
    pending: Vec<(ObjectKey, Artifact)>,
    /// Names already in the store with the same bytes.
    pub unchanged: Vec<String>,
}

impl Uploads {
    /// The bytes still to upload.
    pub fn bytes(&self) -> u64 {
        self.pending.iter().map(|(_, a)| a.size).sum()
    }
}

/// Checks `artifacts` of `version` against the store before anything is written: each is
/// absent (to upload), there with the same SHA-512 (skipped), or there with other bytes
/// (refused: a published artifact never changes).
pub async fn check_artifacts(
    store: &Store,
    version: &semver::Version,
    artifacts: &[Artifact],
) -> anyhow::Result<Uploads> {
    let mut uploads = Uploads {
        pending: Vec::new(),
        unchanged: Vec::new(),
    };
    for artifact in artifacts {
        let key = version_key(version, &artifact.name)?;
        match store.sha512(&key).await? {
            None => uploads.pending.push((key, artifact.clone())),
            Some(existing) if existing == artifact.sha512 => {
                uploads.unchanged.push(artifact.name.clone())
            }
            Some(_) => bail!(
                "refusing to overwrite {key} with different bytes: a published artifact never changes (publish a new version)"
            ),
        }
    }
    Ok(uploads)
}

/// Uploads what [`check_artifacts`] found missing, in order, with a progress bar on a
/// terminal (a line per file otherwise). Returns the names uploaded.
pub async fn upload(store: &Store, uploads: Uploads) -> anyhow::Result<Vec<String>> {
    let bar = progress_bar(uploads.bytes());
    let mut base = 0u64;
    let mut uploaded = Vec::new();
    for (key, artifact) in uploads.pending {
        let progress: crate::store::Progress = {
            let bar = bar.clone();
            Arc::new(move |done| bar.set_position(base + done))
        };
        bar.set_message(artifact.name.clone());
        store
            .put_file(&key, &artifact.path, Some(artifact.sha512), progress)
            .await
            .with_context(|| format!("uploading {key}"))?;
        base += artifact.size;
        if bar.is_hidden() {
            eprintln!("uploaded {key} ({} bytes)", artifact.size);
        }
        uploaded.push(artifact.name);
    }
    bar.finish_and_clear();
    Ok(uploaded)
}

/// Writes a manifest atomically unless the store holds these very bytes. Returns whether
/// it wrote.
pub async fn put_manifest(store: &Store, key: &ObjectKey, bytes: Bytes) -> anyhow::Result<bool> {
    if store.get_bytes(key, MAX_MANIFEST_BYTES).await?.as_ref() == Some(&bytes) {
        return Ok(false);
    }
    store
        .put_bytes(key, bytes)
        .await
        .with_context(|| format!("writing {key}"))?;
    Ok(true)
}

/// What the store serves now at `releases/latest/{name}`: its bytes and the version they
/// are for (`None` when they do not say, or do not parse).
pub async fn served(
    store: &Store,
    name: &str,
) -> anyhow::Result<Option<(Bytes, Option<semver::Version>)>> {
    let key = channel_key(name)?;
    Ok(store
        .get_bytes(&key, MAX_MANIFEST_BYTES)
        .await?
        .map(|bytes| {
            let version = served_version(name, &bytes);
            (bytes, version)
        }))
}

/// The version a channel-level manifest serves: `version` of an electron-builder channel
/// file or a Tauri manifest, the newest full package of a Squirrel `RELEASES`, the newest
/// asset of a Velopack `releases.{channel}.json`.
pub fn served_version(name: &str, bytes: &[u8]) -> Option<semver::Version> {
    if name.ends_with(".yml") {
        let doc: Value = serde_norway::from_slice(bytes).ok()?;
        return parse_version(doc.get("version")?.as_str()?);
    }
    if name == "RELEASES" || name.starts_with("RELEASES-") {
        return SquirrelReleases::parse(bytes, "")?.newest;
    }
    if name.ends_with(".json") {
        let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        if let Some(version) = doc.get("version").and_then(serde_json::Value::as_str) {
            return parse_version(version);
        }
        // Velopack: `{"Assets": [{"Version": "1.2.0", ...}, ...]}`.
        return doc
            .get("Assets")?
            .as_array()?
            .iter()
            .filter_map(|a| parse_version(a.get("Version")?.as_str()?))
            .max_by(|a, b| a.cmp_precedence(b));
    }
    None
}

/// A byte-count progress bar on a terminal; hidden (callers print lines) otherwise.
pub fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_versions_of_every_kind_of_channel_file() {
        let v =
            |name: &str, body: &str| served_version(name, body.as_bytes()).map(|v| v.to_string());
        assert_eq!(
            v("latest-mac.yml", "version: 1.2.0\nfiles: []\n").as_deref(),
            Some("1.2.0")
        );
        assert_eq!(
            v("beta.yml", "version: v1.3.0-beta.1\n").as_deref(),
            Some("1.3.0-beta.1")
        );
        assert_eq!(
            v("latest.json", r#"{"version":"v2.0.0","platforms":{}}"#).as_deref(),
            Some("2.0.0")
        );
        assert_eq!(
            v(
                "releases.beta.json",
                r#"{"Assets":[{"Version":"1.0.0","FileName":"a"},{"Version":"1.1.0-beta.2","FileName":"b"}]}"#
            )
            .as_deref(),
            Some("1.1.0-beta.2")
        );
        assert_eq!(
            v(
                "RELEASES",
                "E3F67244E4166A65310C816221A12685C83F8E6F App-1.0.0-full.nupkg 10\n\
                 85F4D657F8424DD437D1B33CC4511EA7AD86B1A7 App-1.1.0-full.nupkg 12\n"
            )
            .as_deref(),
            Some("1.1.0")
        );
        assert_eq!(v("latest.yml", "not: [valid"), None);
        assert_eq!(v("notes.txt", "version: 1.0.0"), None);
    }
}
