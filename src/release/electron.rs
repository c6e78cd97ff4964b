//! electron-builder channel files (`latest.yml`, `beta-mac.yml`, `latest-linux-arm64.yml`):
//! naming, parsing into the release model, and rendering with absolute URLs.

use std::sync::Mutex;

use bytes::Bytes;
use serde_norway::{Mapping, Value};

use super::channel::Channel;
use super::platform::{Arch, Format, Platform};
use super::{ReleaseFile, absolute_artifact_url, parse_version};

/// A channel file name: `{channel}{suffix}.yml` (SPEC §1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelFile {
    /// `latest`, `beta`, `alpha`, ...
    pub channel: Channel,
    /// Whose updater reads it.
    pub platform: Platform,
    /// Linux files other than x64 name their arch (`-linux-arm64`); others hold every arch.
    pub arch: Option<Arch>,
}

impl ChannelFile {
    /// The channel file an updater on `platform`/`arch` reads for `channel`.
    pub fn for_client(channel: &Channel, platform: Platform, arch: Option<Arch>) -> Self {
        let arch = match (platform, arch) {
            (Platform::Linux, Some(a)) if a != Arch::X64 && a != Arch::Universal => Some(a),
            _ => None,
        };
        Self {
            channel: channel.clone(),
            platform,
            arch,
        }
    }

    /// Parses a file name such as `beta-linux-arm64.yml`.
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".yml")?;
        let (channel, platform, arch) = if let Some(channel) = stem.strip_suffix("-mac") {
            (channel, Platform::Mac, None)
        } else if let Some(channel) = stem.strip_suffix("-linux") {
            (channel, Platform::Linux, None)
        } else if let Some((channel, arch)) = stem.rsplit_once("-linux-") {
            (channel, Platform::Linux, Some(Arch::parse(arch)?))
        } else {
            (stem, Platform::Windows, None)
        };
        Some(Self {
            channel: Channel::parse(channel).ok()?,
            platform,
            arch,
        })
    }

    /// The file name.
    pub fn file_name(&self) -> String {
        let suffix = match (self.platform, self.arch) {
            (Platform::Windows, _) => String::new(),
            (Platform::Mac, _) => "-mac".into(),
            (Platform::Linux, None) => "-linux".into(),
            (Platform::Linux, Some(arch)) => format!("-linux-{}", arch.as_str()),
        };
        format!("{}{suffix}.yml", self.channel)
    }

    /// The arch of a file listed in this channel file whose name names none.
    fn default_arch(&self) -> Arch {
        self.arch.unwrap_or(self.platform.default_arch())
    }
}

/// Why a channel file was not usable (it then counts as missing, SPEC §2).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML, or not a mapping.
    #[error("not a YAML mapping: {0}")]
    Yaml(String),
    /// `version` missing or not semver.
    #[error("no valid semver `version`")]
    Version,
    /// `files` missing or empty.
    #[error("no `files` listed")]
    Files,
}

/// A parsed channel file, with its rendering for updaters precomputed.
#[derive(Debug, Clone)]
pub struct ElectronManifest {
    /// The release it describes.
    pub version: semver::Version,
    /// `releaseDate`, as written (ISO 8601 / RFC 3339).
    pub release_date: Option<String>,
    /// `releaseNotes` (a list of per-version notes is joined).
    pub notes: Option<String>,
    /// `stagingPercentage`, when the release is rolled out to part of the users.
    pub staging_percentage: Option<f64>,
    /// Every file listed.
    pub files: Vec<ReleaseFile>,
    /// The channel file with every `url`/`path` absolute, as served to electron-updater.
    pub rendered: Bytes,
    /// Strong ETag of `rendered`, computed once.
    pub etag: String,
    /// The JSON protocol's answers made from this release, kept with it.
    pub json: JsonAnswers,
}

/// The JSON protocol's update answers (SPEC §2.3) made from one release, one per platform,
/// arch and signature: a check without a release policy hands out a body made before
/// instead of encoding it again. The body is a function of exactly these (and the release),
/// so a kept one is never stale; a clone of the release starts without any.
#[derive(Default)]
pub struct JsonAnswers(Mutex<Vec<JsonAnswer>>);

/// One kept answer: for whom, and its body and strong ETag.
pub struct JsonAnswer {
    /// The client's platform.
    pub platform: Platform,
    /// The client's arch.
    pub arch: Arch,
    /// The update artifact's signature, as sent.
    pub signature: Option<String>,
    /// The encoded answer.
    pub bytes: Bytes,
    /// Its strong ETag.
    pub etag: String,
}

impl JsonAnswers {
    /// Most answers kept per release: a release has a handful of platform and arch pairs.
    const MAX: usize = 32;

    /// The body and ETag of the answer made before for `platform`, `arch` and `signature`.
    pub fn find(
        &self,
        platform: Platform,
        arch: Arch,
        signature: Option<&str>,
    ) -> Option<(Bytes, String)> {
        let kept = self.0.lock().ok()?;
        kept.iter()
            .find(|a| {
                a.platform == platform && a.arch == arch && a.signature.as_deref() == signature
            })
            .map(|a| (a.bytes.clone(), a.etag.clone()))
    }

    /// Keeps `answer` (while fewer than [`Self::MAX`] are).
    pub fn keep(&self, answer: JsonAnswer) {
        if let Ok(mut kept) = self.0.lock()
            && kept.len() < Self::MAX
        {
            kept.push(answer);
        }
    }
}

impl Clone for JsonAnswers {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for JsonAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.0.lock().map_or(0, |kept| kept.len());
        write!(f, "JsonAnswers({kept} kept)")
    }
}

impl ElectronManifest {
    /// Parses `bytes` as the channel file `file`, rendering URLs against `public_url`.
    pub fn parse(
        bytes: &[u8],
        file: &ChannelFile,
        public_url: &str,
    ) -> Result<Self, ManifestError> {
        let mut doc: Value =
            serde_norway::from_slice(bytes).map_err(|e| ManifestError::Yaml(e.to_string()))?;
        let map = doc
            .as_mapping_mut()
            .ok_or_else(|| ManifestError::Yaml("top level is not a mapping".into()))?;
        let version_text = scalar(map.get("version")).ok_or(ManifestError::Version)?;
        let version = parse_version(&version_text).ok_or(ManifestError::Version)?;

        let mut files = Vec::new();
        if let Some(Value::Sequence(entries)) = map.get_mut("files") {
            for entry in entries.iter_mut().filter_map(Value::as_mapping_mut) {
                let Some(url) = scalar(entry.get("url")) else {
                    continue;
                };
                files.push(ReleaseFile {
                    platform: file.platform,
                    arch: Arch::from_file_name(&url).unwrap_or(file.default_arch()),
                    arch_named: Arch::from_file_name(&url).is_some(),
                    format: Format::from_file_name(&url),
                    size: entry.get("size").and_then(Value::as_u64),
                    sha512: scalar(entry.get("sha512")),
                    url: absolute_artifact_url(public_url, &version_text, &url),
                    name: url,
                });
                rewrite(entry, "url", public_url, &version_text);
            }
        }
        if files.is_empty() {
            return Err(ManifestError::Files);
        }
        rewrite(map, "path", public_url, &version_text);

        let notes = match map.get("releaseNotes") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Sequence(items)) => Some(
                items
                    .iter()
                    .filter_map(|i| scalar(i.get("note")))
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            ),
            _ => None,
        };
        let rendered = render(bytes, &doc, public_url, &version_text)?;
        let map = doc.as_mapping().cloned().unwrap_or_default();
        Ok(Self {
            version,
            release_date: scalar(map.get("releaseDate")),
            notes,
            staging_percentage: map.get("stagingPercentage").and_then(Value::as_f64),
            files,
            etag: super::body_etag(&rendered),
            rendered,
            json: JsonAnswers::default(),
        })
    }
}

impl ElectronManifest {
    /// The rendered channel file with the top-level fields `remove` dropped and `set`
    /// written (at the end, each replacing the field of that name), for the answers a
    /// release policy changes (SPEC §2.5): `stagingPercentage` when the server decided the
    /// rollout, `releaseNotes` overridden, `updateRequired`. The rest keeps its bytes, as in
    /// [`ElectronManifest::parse`]; the result is parsed back and must be the edited document,
    /// else the document is serialized instead.
    pub fn edited(&self, remove: &[&str], set: &[(&str, Value)]) -> Result<Bytes, ManifestError> {
        let mut expected: Value = serde_norway::from_slice(&self.rendered)
            .map_err(|e| ManifestError::Yaml(e.to_string()))?;
        let map = expected
            .as_mapping_mut()
            .ok_or_else(|| ManifestError::Yaml("top level is not a mapping".into()))?;
        let dropped: Vec<&str> = remove
            .iter()
            .copied()
            .chain(set.iter().map(|(k, _)| *k))
            .collect();
        for key in &dropped {
            map.remove(*key);
        }
        let mut tail = String::new();
        for (key, value) in set {
            map.insert(Value::from(*key), value.clone());
            tail.push_str(&format!("{key}: {}\n", yaml_scalar(value)?));
        }
        if let Ok(text) = std::str::from_utf8(&self.rendered) {
            let mut out = without_top_level(text, &dropped);
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&tail);
            if serde_norway::from_str::<Value>(&out).is_ok_and(|back| back == expected) {
                return Ok(Bytes::from(out));
            }
        }
        serde_norway::to_string(&expected)
            .map(Bytes::from)
            .map_err(|e| ManifestError::Yaml(e.to_string()))
    }
}

/// A scalar written so that YAML reads it back as it is: strings double-quoted with JSON's
/// escapes (a subset of YAML's), numbers and booleans as they are.
fn yaml_scalar(value: &Value) -> Result<String, ManifestError> {
    match value {
        Value::String(s) => {
            serde_json::to_string(s).map_err(|e| ManifestError::Yaml(e.to_string()))
        }
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(ManifestError::Yaml("only scalars are written".into())),
    }
}

/// `text` without the top-level fields named in `keys` (the `key:` line and every line of
/// its value: indented lines, and the column-0 `- ` items of a sequence).
fn without_top_level(text: &str, keys: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        let starts_field = line
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace() && c != '#' && c != '-');
        if starts_field {
            skipping = keys.iter().any(|key| {
                line.strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with(':'))
            });
        }
        if !skipping {
            out.push_str(line);
        }
    }
    out
}

/// The channel file with absolute URLs, as close to the original bytes as possible: only the
/// `url:` and `path:` values change, so quoting (js-yaml turns an unquoted `releaseDate`
/// into a Date), comments and field order survive. The result is parsed back and must equal
/// the rewritten document; otherwise the document is serialized instead.
fn render(
    original: &[u8],
    rewritten: &Value,
    public_url: &str,
    version: &str,
) -> Result<Bytes, ManifestError> {
    if let Ok(text) = std::str::from_utf8(original) {
        let mut out = String::with_capacity(text.len() + 256);
        for line in text.split_inclusive('\n') {
            out.push_str(
                &rewrite_line(line, public_url, version).unwrap_or_else(|| line.to_owned()),
            );
        }
        if serde_norway::from_str::<Value>(&out).is_ok_and(|back| &back == rewritten) {
            return Ok(Bytes::from(out));
        }
        tracing::debug!("channel file layout not recognised; re-serializing it");
    }
    serde_norway::to_string(rewritten)
        .map(Bytes::from)
        .map_err(|e| ManifestError::Yaml(e.to_string()))
}

/// `  - url: App.dmg` → `  - url: "http://.../releases/v1.0.0/App.dmg"`.
fn rewrite_line(line: &str, public_url: &str, version: &str) -> Option<String> {
    let content = line.trim_end_matches(['\r', '\n']);
    let ending = &line[content.len()..];
    let body_at = content.len() - content.trim_start_matches([' ', '-']).len();
    let (prefix, body) = content.split_at(body_at);
    let (key, value) = body.split_once(':')?;
    if key != "url" && key != "path" {
        return None;
    }
    let value = value.trim();
    let value = if (value.starts_with('"') && value.ends_with('"') && value.len() >= 2)
        || (value.starts_with('\'') && value.ends_with('\'') && value.len() >= 2)
    {
        &value[1..value.len() - 1]
    } else {
        value
    };
    if value.is_empty() || value.contains(['"', '\'', '\\', '#']) {
        return None;
    }
    let url = absolute_artifact_url(public_url, version, value);
    Some(format!("{prefix}{key}: \"{url}\"{ending}"))
}

/// A scalar as text (YAML may type `1.0` as a float or a date-like string as a string).
fn scalar(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Makes `map[field]` an absolute URL when it is a relative file name.
fn rewrite(map: &mut Mapping, field: &str, public_url: &str, version: &str) {
    if let Some(Value::String(name)) = map.get_mut(field) {
        *name = absolute_artifact_url(public_url, version, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: &str = "version: 1.2.0
files:
  - url: App-1.2.0-arm64-mac.zip
    sha512: AAAA
    size: 100
    blockMapSize: 7
  - url: App-1.2.0-mac.zip
    sha512: BBBB
    size: 200
  - url: App-1.2.0-universal.dmg
    sha512: CCCC
    size: 300
path: App-1.2.0-arm64-mac.zip
sha512: AAAA
releaseDate: '2026-11-01T12:00:00.000Z'
releaseNotes: Faster.
stagingPercentage: 25
customField: kept
";

    #[test]
    fn channel_file_names() {
        let cases = [
            ("latest.yml", "latest", Platform::Windows, None),
            ("latest-mac.yml", "latest", Platform::Mac, None),
            ("beta-linux.yml", "beta", Platform::Linux, None),
            (
                "latest-linux-arm64.yml",
                "latest",
                Platform::Linux,
                Some(Arch::Arm64),
            ),
            (
                "alpha-linux-armv7l.yml",
                "alpha",
                Platform::Linux,
                Some(Arch::Armv7l),
            ),
            ("next-gen-mac.yml", "next-gen", Platform::Mac, None),
        ];
        for (name, channel, platform, arch) in cases {
            let parsed = ChannelFile::parse(name).unwrap();
            assert_eq!(
                (parsed.channel.as_str(), parsed.platform, parsed.arch),
                (channel, platform, arch),
                "{name}"
            );
            assert_eq!(parsed.file_name(), name);
        }
        for bad in [
            "latest.json",
            "Latest.yml",
            ".yml",
            "latest-linux-sparc.yml",
            "../x.yml",
        ] {
            assert_eq!(ChannelFile::parse(bad), None, "{bad}");
        }
        assert_eq!(
            ChannelFile::for_client(
                &Channel::parse("beta").unwrap(),
                Platform::Linux,
                Some(Arch::Arm64)
            )
            .file_name(),
            "beta-linux-arm64.yml"
        );
        assert_eq!(
            ChannelFile::for_client(&Channel::latest(), Platform::Linux, Some(Arch::X64))
                .file_name(),
            "latest-linux.yml"
        );
        assert_eq!(
            ChannelFile::for_client(&Channel::latest(), Platform::Mac, Some(Arch::Arm64))
                .file_name(),
            "latest-mac.yml"
        );
    }

    #[test]
    fn parses_and_renders_absolute_urls_keeping_everything_else() {
        let file = ChannelFile::parse("latest-mac.yml").unwrap();
        let m = ElectronManifest::parse(MAC.as_bytes(), &file, "https://dl.example.com").unwrap();
        assert_eq!(m.version, semver::Version::new(1, 2, 0));
        assert_eq!(m.release_date.as_deref(), Some("2026-11-01T12:00:00.000Z"));
        assert_eq!(m.notes.as_deref(), Some("Faster."));
        assert_eq!(m.staging_percentage, Some(25.0));
        let arches: Vec<_> = m.files.iter().map(|f| f.arch).collect();
        assert_eq!(arches, [Arch::Arm64, Arch::X64, Arch::Universal]);
        assert_eq!(
            m.files[0].url,
            "https://dl.example.com/releases/v1.2.0/App-1.2.0-arm64-mac.zip"
        );
        let rendered: Value = serde_norway::from_slice(&m.rendered).unwrap();
        let original: Value = serde_norway::from_str(MAC).unwrap();
        assert_eq!(
            rendered["path"],
            "https://dl.example.com/releases/v1.2.0/App-1.2.0-arm64-mac.zip"
        );
        assert_eq!(
            rendered["files"][1]["url"],
            "https://dl.example.com/releases/v1.2.0/App-1.2.0-mac.zip"
        );
        let text = std::str::from_utf8(&m.rendered).unwrap();
        assert!(
            text.contains("releaseDate: '2026-11-01T12:00:00.000Z'"),
            "quoting kept: {text}"
        );
        assert!(
            text.contains(
                "  - url: \"https://dl.example.com/releases/v1.2.0/App-1.2.0-mac.zip\"\n"
            )
        );
        for key in [
            "version",
            "sha512",
            "releaseDate",
            "releaseNotes",
            "stagingPercentage",
            "customField",
        ] {
            assert_eq!(rendered[key], original[key], "{key}");
        }
        for field in ["sha512", "size", "blockMapSize"] {
            assert_eq!(
                rendered["files"][0][field], original["files"][0][field],
                "{field}"
            );
        }
    }

    #[test]
    fn unusual_layouts_are_reserialized_correctly() {
        let yaml = "version: 1.0.0\nfiles: [{url: a.exe, size: 3}]\npath: a.exe # the installer\n";
        let file = ChannelFile::parse("latest.yml").unwrap();
        let m = ElectronManifest::parse(yaml.as_bytes(), &file, "http://x").unwrap();
        let back: Value = serde_norway::from_slice(&m.rendered).unwrap();
        assert_eq!(back["files"][0]["url"], "http://x/releases/v1.0.0/a.exe");
        assert_eq!(back["files"][0]["size"], 3);
        assert_eq!(back["path"], "http://x/releases/v1.0.0/a.exe");
    }

    #[test]
    fn unusable_files_are_errors() {
        let file = ChannelFile::parse("latest.yml").unwrap();
        for bad in [
            "",
            "- a\n- b\n",
            "version: banana\nfiles:\n  - url: a.exe\n",
            "version: 1.0.0\n",
        ] {
            assert!(
                ElectronManifest::parse(bad.as_bytes(), &file, "http://x").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn release_notes_list_is_joined() {
        let yaml = "version: 2.0.0\nfiles:\n  - url: a.exe\nreleaseNotes:\n  - version: 2.0.0\n    note: Two\n  - version: 1.9.0\n    note: One\n";
        let file = ChannelFile::parse("latest.yml").unwrap();
        let m = ElectronManifest::parse(yaml.as_bytes(), &file, "http://x").unwrap();
        assert_eq!(m.notes.as_deref(), Some("Two\n\nOne"));
    }

    #[test]
    fn edits_keep_the_layout_and_drop_whole_fields() {
        let file = ChannelFile::parse("latest-mac.yml").unwrap();
        let yaml = format!("{MAC}releaseNotesList:\n  - kept\n");
        let m = ElectronManifest::parse(yaml.as_bytes(), &file, "https://dl.example.com").unwrap();
        let edited = m
            .edited(
                &["stagingPercentage"],
                &[
                    ("releaseNotes", Value::from("Line one.\n\"Quoted\" – ü")),
                    ("updateRequired", Value::from(true)),
                ],
            )
            .unwrap();
        let text = std::str::from_utf8(&edited).unwrap();
        assert!(
            text.contains("releaseDate: '2026-11-01T12:00:00.000Z'"),
            "{text}"
        );
        assert!(!text.contains("stagingPercentage"), "{text}");
        assert!(text.ends_with("updateRequired: true\n"), "{text}");
        let back: Value = serde_norway::from_str(text).unwrap();
        assert_eq!(back["releaseNotes"], "Line one.\n\"Quoted\" – ü");
        assert_eq!(back["updateRequired"], true);
        assert_eq!(back["releaseNotesList"][0], "kept");
        assert_eq!(back["files"].as_sequence().unwrap().len(), 3);
        // A multi-line value and a zero-indented sequence go whole.
        let yaml = "version: 1.0.0\nfiles:\n- url: a.exe\n  size: 3\nreleaseNotes: |\n  one\n\n  two\npath: a.exe\nstagingPercentage: 10\n";
        let file = ChannelFile::parse("latest.yml").unwrap();
        let m = ElectronManifest::parse(yaml.as_bytes(), &file, "http://x").unwrap();
        let edited = m
            .edited(
                &["files", "stagingPercentage"],
                &[("releaseNotes", Value::from("new"))],
            )
            .unwrap();
        let back: Value = serde_norway::from_slice(&edited).unwrap();
        assert_eq!(back["releaseNotes"], "new");
        assert!(back.get("files").is_none() && back.get("stagingPercentage").is_none());
        assert_eq!(back["path"], "http://x/releases/v1.0.0/a.exe");
    }
}
