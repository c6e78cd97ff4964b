//! Velopack feeds (`releases.{channel}.json`, as `vpk pack` writes them): the packages of a
//! channel's whole history, each `Full` or `Delta`, rendered with absolute download URLs.
//!
//! ```json
//! {"Assets": [{"PackageId": "App", "Version": "1.1.0", "Type": "Delta",
//!              "FileName": "App-1.1.0-delta.nupkg", "SHA1": "...", "SHA256": "...",
//!              "Size": 6030, "NotesMarkdown": "...", "NotesHtml": "..."}]}
//! ```
//!
//! Velopack's client reads the keys case-insensitively, takes the newest `Full` as the
//! update, and when it has a local base package and a `Delta` of that newest version, applies
//! every `Delta` above its own version in order (its `UpdateManager`): a chain with a gap
//! rebuilds the wrong package, so a filtered feed drops the deltas above a gap and the
//! client takes the full package instead.
//!
//! `FileName`s stay plain names: Velopack's Rust `UpdateManager` (and the C++, Node and
//! Python libraries built on it) saves each package as `{packages dir}/{FileName}`, so an
//! absolute URL there fails the download ("No such file or directory", seen with velopack
//! 1.2.161). The client downloads `{base URL}/{FileName}`, and release-edge answers that
//! with a redirect to `/releases/v{Version}/{FileName}` ([`VelopackFeed::package_version`]).

use std::collections::HashMap;

use bytes::Bytes;
use semver::Version;
use serde_json::{Map, Value};

use super::channel::Channel;
use super::{body_etag, parse_version};

/// The operating-system words of Velopack channel names: `vpk pack`'s default channel is the
/// OS's short name (`win`, `osx`, `linux`), sometimes with an arch (`win-arm64`).
const OS_WORDS: &[&str] = &["win", "osx", "linux"];
/// Arch words that may follow an OS word in a Velopack channel name.
const ARCH_WORDS: &[&str] = &["x64", "x86", "arm64"];

/// Longest Velopack channel name accepted in a URL or file name.
const MAX_CHANNEL_LEN: usize = 64;

/// The Velopack channel of a feed file name, `releases.{channel}.json`: letters, digits,
/// `.`, `_` and `-` (Velopack's channels are free-form; `vpk` names files after them).
pub fn feed_channel(file_name: &str) -> Option<&str> {
    let channel = file_name.strip_prefix("releases.")?.strip_suffix(".json")?;
    valid_channel(channel).then_some(channel)
}

/// True for a Velopack channel name release-edge accepts.
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The release-edge channel (whose policy applies) of a Velopack channel: its name without
/// the OS and arch words, `latest` when nothing is left. `win`, `osx`, `linux`,
/// `win-arm64` → `latest`; `beta`, `win-beta`, `beta-osx` → `beta`.
pub fn release_channel(velopack_channel: &str) -> Channel {
    let lower = velopack_channel.to_ascii_lowercase();
    let rest: Vec<&str> = lower
        .split(['-', '_', '.'])
        .filter(|word| !word.is_empty() && !OS_WORDS.contains(word) && !ARCH_WORDS.contains(word))
        .collect();
    if rest.is_empty() {
        return Channel::latest();
    }
    Channel::parse(&rest.join("-")).unwrap_or_else(|_| Channel::latest())
}

/// The Velopack channels whose feeds may list the package `file_name`, first to last: the
/// channel its name carries (`App-1.2.0-beta-full.nupkg` → `beta`; `vpk` names packages
/// `{id}-{version}[-{channel}]-{full|delta}.nupkg`), then `others` (the base URL's name, the
/// client's OS's default channel).
pub fn package_channels(file_name: &str, others: &[&str]) -> Vec<String> {
    let mut channels = Vec::new();
    let stem = file_name
        .strip_suffix("-full.nupkg")
        .or_else(|| file_name.strip_suffix("-delta.nupkg"));
    if let Some((_, last)) = stem.and_then(|s| s.rsplit_once('-'))
        && valid_channel(last)
        && !last.starts_with(|c: char| c.is_ascii_digit())
        // `beta.1` in `App-1.2.0-beta.1-full.nupkg` is the version's pre-release.
        && !last.contains('.')
    {
        channels.push(last.to_owned());
    }
    for other in others {
        if valid_channel(other) && !channels.iter().any(|c| c == other) {
            channels.push((*other).to_owned());
        }
    }
    channels
}

/// The default Velopack channel of a platform (`vpk pack` without `--channel`).
pub fn default_channel(platform: super::platform::Platform) -> &'static str {
    match platform {
        super::platform::Platform::Windows => "win",
        super::platform::Platform::Mac => "osx",
        super::platform::Platform::Linux => "linux",
    }
}

/// The Velopack channel of an installer list, `assets.{channel}.json` (`vpk pack` writes it
/// beside the feed; `publish` keeps it in the version's folder).
pub fn assets_channel(file_name: &str) -> Option<&str> {
    let channel = file_name.strip_prefix("assets.")?.strip_suffix(".json")?;
    valid_channel(channel).then_some(channel)
}

/// The Velopack feeds (by channel) that may serve release-edge's `channel` to `platform`,
/// first to last: `vpk pack`'s default channel (`win`, `osx`, `linux`) for `latest`;
/// `{os}-{channel}` then `{channel}` for another.
pub fn feed_channels(channel: &Channel, platform: super::platform::Platform) -> Vec<String> {
    let os = default_channel(platform);
    if channel.is_latest() {
        vec![os.to_owned()]
    } else {
        vec![format!("{os}-{channel}"), channel.to_string()]
    }
}

/// The installers of one version, from its `assets.{channel}.json` (`[{"RelativeFileName",
/// "Type"}]`, `Type` `Installer` or `Portable`): the files `/latest` may send a visitor to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VelopackInstallers {
    /// The installers' file names, as listed (plain names only).
    pub files: Vec<String>,
}

impl VelopackInstallers {
    /// Parses an installer list; `None` when it is not one (not a JSON list).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let doc: Value = serde_json::from_slice(bytes).ok()?;
        let files = doc
            .as_array()?
            .iter()
            .filter_map(Value::as_object)
            .filter(|asset| {
                text_field(asset, "Type").is_some_and(|t| {
                    t.eq_ignore_ascii_case("Installer") || t.eq_ignore_ascii_case("Portable")
                })
            })
            .filter_map(|asset| text_field(asset, "RelativeFileName"))
            .filter(|name| {
                !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.')
            })
            .collect();
        Some(Self { files })
    }
}

/// One package of a feed.
#[derive(Debug, Clone, PartialEq)]
pub struct VelopackAsset {
    /// Its version; `None` when `Version` is not semver (kept as it is, outside the policy).
    pub version: Option<Version>,
    /// A `Delta` package (it upgrades the version before it); else `Full`.
    pub delta: bool,
    /// `FileName` as the feed gives it.
    pub file_name: String,
    /// `Size`.
    pub size: Option<u64>,
    /// `SHA1`, hex.
    pub sha1: Option<String>,
    /// `SHA256`, hex.
    pub sha256: Option<String>,
    /// The asset's JSON object, as given.
    rendered: Value,
}

/// A parsed `releases.{channel}.json`.
#[derive(Debug, Clone)]
pub struct VelopackFeed {
    /// Every asset, in the feed's order.
    pub assets: Vec<VelopackAsset>,
    /// The newest full package's version.
    pub newest: Option<Version>,
    /// The feed as served (every asset, re-encoded).
    pub rendered: Bytes,
    /// Strong ETag of `rendered`.
    pub etag: String,
    /// `FileName` → the version whose folder holds it (`releases/v{version}/`).
    versions_by_file: HashMap<String, Version>,
}

/// A field of a JSON object by name, case-insensitively (as Velopack's client reads them).
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

fn text_field(object: &Map<String, Value>, name: &str) -> Option<String> {
    field(object, name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The feed body of `assets` (the rendered form of each).
fn feed_bytes<'a>(assets: impl Iterator<Item = &'a VelopackAsset>) -> Bytes {
    let list: Vec<&Value> = assets.map(|a| &a.rendered).collect();
    let body = serde_json::json!({ "Assets": list });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// `{"Assets":[]}`: what a client is told when nothing is offered to it (Velopack reads it
/// as "the remote feed is empty": no update, no error).
pub fn empty_feed() -> Bytes {
    feed_bytes(std::iter::empty())
}

impl VelopackFeed {
    /// Parses a feed. `None` when it is not a feed (no `Assets` list, or an asset without
    /// `FileName`).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let doc: Value = serde_json::from_slice(bytes).ok()?;
        let list = field(doc.as_object()?, "Assets")?.as_array()?;
        let mut assets = Vec::with_capacity(list.len());
        for item in list {
            let object = item.as_object()?;
            let file_name = text_field(object, "FileName")?;
            let version = text_field(object, "Version").and_then(|v| parse_version(&v));
            let delta = text_field(object, "Type").is_some_and(|t| t.eq_ignore_ascii_case("delta"));
            let rendered = Value::Object(object.clone());
            assets.push(VelopackAsset {
                version,
                delta,
                size: field(object, "Size").and_then(Value::as_u64),
                sha1: text_field(object, "SHA1"),
                sha256: text_field(object, "SHA256"),
                file_name,
                rendered,
            });
        }
        let newest = assets
            .iter()
            .filter(|a| !a.delta)
            .filter_map(|a| a.version.clone())
            .max_by(|a, b| a.cmp_precedence(b));
        let rendered = feed_bytes(assets.iter());
        let versions_by_file = assets
            .iter()
            .filter_map(|a| Some((a.file_name.clone(), a.version.clone()?)))
            .collect();
        Some(Self {
            newest,
            versions_by_file,
            etag: body_etag(&rendered),
            rendered,
            assets,
        })
    }

    /// The version of the package `file_name` (whose folder, `releases/v{version}/`, holds
    /// it), when the feed lists it.
    pub fn package_version(&self, file_name: &str) -> Option<&Version> {
        self.versions_by_file.get(file_name)
    }

    /// The versions of the full packages, newest first.
    pub fn full_versions(&self) -> Vec<Version> {
        let mut versions: Vec<Version> = self
            .assets
            .iter()
            .filter(|a| !a.delta)
            .filter_map(|a| a.version.clone())
            .collect();
        versions.sort_by(|a, b| b.cmp(a));
        versions.dedup();
        versions
    }

    /// The feed with only the packages up to `newest` that `keep` accepts, and no delta above
    /// a version `keep` refuses (the chain would have a gap: the client then takes the full
    /// package). Assets without a semver version stay.
    pub fn filtered(&self, newest: &Version, keep: impl Fn(&Version) -> bool) -> Bytes {
        let gap = self
            .assets
            .iter()
            .filter_map(|a| a.version.as_ref())
            .filter(|v| !keep(v))
            .min();
        feed_bytes(self.assets.iter().filter(|asset| match &asset.version {
            None => true,
            Some(v) => v <= newest && keep(v) && !(asset.delta && gap.is_some_and(|gap| v > gap)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(version: &str, kind: &str, file: &str) -> String {
        format!(
            r#"{{"PackageId":"App","Version":"{version}","Type":"{kind}","FileName":"{file}","SHA1":"{sha1}","SHA256":"{sha256}","Size":10,"NotesMarkdown":"n {version}","NotesHtml":"<p>n</p>"}}"#,
            sha1 = "a".repeat(40),
            sha256 = "b".repeat(64)
        )
    }

    fn feed(entries: &[(&str, &str)]) -> String {
        let assets: Vec<String> = entries
            .iter()
            .map(|(v, kind)| {
                let suffix = if *kind == "Full" { "full" } else { "delta" };
                asset(v, kind, &format!("App-{v}-{suffix}.nupkg"))
            })
            .collect();
        format!(r#"{{"Assets":[{}]}}"#, assets.join(","))
    }

    fn names(body: &Bytes) -> Vec<String> {
        let doc: Value = serde_json::from_slice(body).unwrap();
        doc["Assets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a["FileName"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn installer_lists_and_the_feeds_of_a_channel() {
        assert_eq!(assets_channel("assets.win.json"), Some("win"));
        assert_eq!(assets_channel("releases.win.json"), None);
        let list = br#"[{"RelativeFileName":"App-win-Setup.exe","Type":"Installer"},
                        {"RelativeFileName":"App-win-Portable.zip","Type":"portable"},
                        {"RelativeFileName":"App-1.0.0-win-full.nupkg","Type":"Full"},
                        {"RelativeFileName":"../x.exe","Type":"Installer"},
                        {"Type":"Installer"}]"#;
        assert_eq!(
            VelopackInstallers::parse(list).unwrap().files,
            ["App-win-Setup.exe", "App-win-Portable.zip"]
        );
        assert!(VelopackInstallers::parse(b"{}").is_none());
        use super::super::platform::Platform;
        assert_eq!(feed_channels(&Channel::latest(), Platform::Mac), ["osx"]);
        let beta = Channel::parse("beta").unwrap();
        assert_eq!(
            feed_channels(&beta, Platform::Windows),
            ["win-beta", "beta"]
        );
    }

    #[test]
    fn packages_name_their_channel() {
        assert_eq!(
            package_channels("App-1.2.0-linux-full.nupkg", &["latest", "win"]),
            ["linux", "latest", "win"]
        );
        assert_eq!(package_channels("App-1.2.0-delta.nupkg", &["win"]), ["win"]);
        assert_eq!(
            package_channels("App-1.2.0-beta.1-full.nupkg", &["win"]),
            ["win"]
        );
        assert_eq!(
            package_channels("App-1.2.0-beta-full.nupkg", &["beta"]),
            ["beta"]
        );
        assert_eq!(
            package_channels("App.AppImage", &["linux", "bad/"]),
            ["linux"]
        );
    }

    #[test]
    fn channels() {
        assert_eq!(feed_channel("releases.win.json"), Some("win"));
        assert_eq!(feed_channel("releases.beta-osx.json"), Some("beta-osx"));
        assert_eq!(feed_channel("releases..json"), None);
        assert_eq!(feed_channel("releases.a/b.json"), None);
        assert_eq!(feed_channel("latest.json"), None);
        for (name, channel) in [
            ("win", "latest"),
            ("osx", "latest"),
            ("linux", "latest"),
            ("win-arm64", "latest"),
            ("beta", "beta"),
            ("win-beta", "beta"),
            ("beta-osx", "beta"),
            ("Nightly_2", "nightly-2"),
            ("stable!", "latest"),
        ] {
            assert_eq!(release_channel(name).as_str(), channel, "{name}");
        }
    }

    #[test]
    fn keeps_every_field_and_knows_each_package_s_folder() {
        let text = feed(&[("1.0.0", "Full"), ("1.1.0", "Delta"), ("1.1.0", "Full")]);
        let f = VelopackFeed::parse(text.as_bytes()).unwrap();
        assert_eq!(f.newest, Some(Version::new(1, 1, 0)));
        assert_eq!(
            f.full_versions(),
            [Version::new(1, 1, 0), Version::new(1, 0, 0)]
        );
        let doc: Value = serde_json::from_slice(&f.rendered).unwrap();
        let first = &doc["Assets"][1];
        assert_eq!(first["FileName"], "App-1.1.0-delta.nupkg");
        assert_eq!(
            f.package_version("App-1.1.0-delta.nupkg"),
            Some(&Version::new(1, 1, 0))
        );
        assert_eq!(f.package_version("App-9.9.9-full.nupkg"), None);
        for key in [
            "PackageId",
            "Version",
            "Type",
            "SHA1",
            "SHA256",
            "Size",
            "NotesMarkdown",
            "NotesHtml",
        ] {
            assert!(first.get(key).is_some(), "{key} kept");
        }
        assert_eq!(first["Size"], 10);
        assert_eq!(f.assets[1].sha256.as_deref(), Some("b".repeat(64).as_str()));
        assert!(f.assets[1].delta && !f.assets[0].delta);
        // Keys in another case, an absolute URL, a non-semver version: kept as they are.
        let odd = r#"{"assets":[{"version":"2.0.0","type":"full","filename":"https://cdn.example.com/A.nupkg"},
                                {"Version":"banana","Type":"Full","FileName":"B.nupkg"}]}"#;
        let f = VelopackFeed::parse(odd.as_bytes()).unwrap();
        let doc: Value = serde_json::from_slice(&f.rendered).unwrap();
        assert_eq!(
            doc["Assets"][0]["filename"],
            "https://cdn.example.com/A.nupkg"
        );
        assert_eq!(doc["Assets"][1]["FileName"], "B.nupkg");
        assert_eq!(f.newest, Some(Version::new(2, 0, 0)));
        assert!(VelopackFeed::parse(b"{}").is_none());
        assert!(VelopackFeed::parse(br#"{"Assets":[{"Version":"1.0.0"}]}"#).is_none());
        assert_eq!(names(&empty_feed()), Vec::<String>::new());
    }

    #[test]
    fn filtering_never_leaves_a_broken_delta_chain() {
        let text = feed(&[
            ("1.3.0", "Delta"),
            ("1.3.0", "Full"),
            ("1.2.0", "Delta"),
            ("1.2.0", "Full"),
            ("1.1.0", "Delta"),
            ("1.1.0", "Full"),
            ("1.0.0", "Full"),
        ]);
        let f = VelopackFeed::parse(text.as_bytes()).unwrap();
        let v = |s: &str| Version::parse(s).unwrap();
        // Halted 1.3.0: up to 1.2.0, its chain whole.
        assert_eq!(
            names(&f.filtered(&v("1.2.0"), |_| true)),
            [
                "App-1.2.0-delta.nupkg",
                "App-1.2.0-full.nupkg",
                "App-1.1.0-delta.nupkg",
                "App-1.1.0-full.nupkg",
                "App-1.0.0-full.nupkg"
            ]
        );
        // 1.2.0 yanked: its packages go, and the 1.3.0 delta built on it.
        assert_eq!(
            names(&f.filtered(&v("1.3.0"), |v| v.to_string() != "1.2.0")),
            [
                "App-1.3.0-full.nupkg",
                "App-1.1.0-delta.nupkg",
                "App-1.1.0-full.nupkg",
                "App-1.0.0-full.nupkg"
            ]
        );
    }
}
