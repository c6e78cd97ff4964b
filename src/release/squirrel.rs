//! Squirrel.Windows `RELEASES` files: `SHA1 name size` per line.

use super::absolute_artifact_url;

/// A parsed `RELEASES`, rendered with absolute package URLs.
#[derive(Debug, Clone)]
pub struct SquirrelReleases {
    /// The newest full package's version, for the update-check metric.
    pub newest: Option<semver::Version>,
    /// Every line, rendered, in the file's order (what a release policy filters).
    pub entries: Vec<SquirrelEntry>,
    /// The file with every package name turned into `{public_url}/releases/v{version}/{name}`.
    pub rendered: bytes::Bytes,
    /// Strong ETag of `rendered`, computed once.
    pub etag: String,
}

/// One package line of a `RELEASES` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquirrelEntry {
    /// The package's version, when its name has one.
    pub version: Option<semver::Version>,
    /// A delta package (`-delta.nupkg`): it upgrades the version before it.
    pub delta: bool,
    /// The rendered line, with its newline.
    pub line: String,
}

/// The version in a package name: `MyApp-1.2.0-full.nupkg` → `1.2.0`,
/// `MyApp-1.2.0-beta.1-delta.nupkg` → `1.2.0-beta.1`.
pub fn package_version(name: &str) -> Option<semver::Version> {
    let stem = name.strip_suffix(".nupkg")?;
    let stem = stem
        .strip_suffix("-full")
        .or_else(|| stem.strip_suffix("-delta"))
        .unwrap_or(stem);
    // The version starts after a `-` followed by a digit: the first such place that
    // parses as semver (`My-App-2-1.2.0` is version 1.2.0 of `My-App-2`).
    stem.char_indices()
        .filter(|&(i, c)| c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .find_map(|(i, _)| semver::Version::parse(&stem[i + 1..]).ok())
}

impl SquirrelReleases {
    /// Parses and renders; `None` when no line is a valid entry.
    pub fn parse(bytes: &[u8], public_url: &str) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rendered = String::with_capacity(text.len() * 2);
        let mut newest: Option<semver::Version> = None;
        let mut entries = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [sha1, name, size] = fields[..] else {
                return None;
            };
            if sha1.len() != 40 || size.parse::<u64>().is_err() {
                return None;
            }
            let version = package_version(name);
            let url = match &version {
                Some(version) => {
                    if name.ends_with("-full.nupkg") && newest.as_ref().is_none_or(|n| version > n)
                    {
                        newest = Some(version.clone());
                    }
                    absolute_artifact_url(public_url, &version.to_string(), name)
                }
                None => name.to_owned(),
            };
            let line = format!("{sha1} {url} {size}\n");
            rendered.push_str(&line);
            entries.push(SquirrelEntry {
                version,
                delta: name.ends_with("-delta.nupkg"),
                line,
            });
        }
        (!entries.is_empty()).then(|| Self {
            newest,
            entries,
            etag: super::body_etag(rendered.as_bytes()),
            rendered: bytes::Bytes::from(rendered),
        })
    }
}

impl SquirrelReleases {
    /// The versions of the full packages, newest first.
    pub fn full_versions(&self) -> Vec<&semver::Version> {
        let mut versions: Vec<&semver::Version> = self
            .entries
            .iter()
            .filter(|e| !e.delta)
            .filter_map(|e| e.version.as_ref())
            .collect();
        versions.sort_by(|a, b| b.cmp(a));
        versions.dedup();
        versions
    }

    /// The file with only the packages up to `newest` that `keep` accepts, and with no delta
    /// package above a version `keep` refuses: Squirrel.Windows applies every delta newer
    /// than the installed version in order, so a chain with a gap would be applied to the
    /// wrong base (it then takes the full package instead). Lines without a version stay.
    pub fn filtered(
        &self,
        newest: &semver::Version,
        keep: impl Fn(&semver::Version) -> bool,
    ) -> bytes::Bytes {
        let gap = self
            .entries
            .iter()
            .filter_map(|e| e.version.as_ref())
            .filter(|v| !keep(v))
            .min();
        let mut out = String::new();
        for entry in &self.entries {
            let wanted = match &entry.version {
                None => true,
                Some(v) => {
                    v <= newest && keep(v) && !(entry.delta && gap.is_some_and(|gap| v > gap))
                }
            };
            if wanted {
                out.push_str(&entry.line);
            }
        }
        bytes::Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_versions() {
        let v = |s: &str| package_version(s).map(|v| v.to_string());
        assert_eq!(v("MyApp-1.2.0-full.nupkg").as_deref(), Some("1.2.0"));
        assert_eq!(v("My-App-2-1.2.0-delta.nupkg").as_deref(), Some("1.2.0"));
        assert_eq!(
            v("MyApp-1.2.0-beta.1-full.nupkg").as_deref(),
            Some("1.2.0-beta.1")
        );
        assert_eq!(v("MyApp.nupkg"), None);
    }

    #[test]
    fn renders_absolute_urls() {
        let file = "\u{feff}E3F67244E4166A65310C816221A12685C83F8E6F MyApp-1.0.0-full.nupkg 600725\n\
                    0D777EA94C612E8BF1EA7379164CAEFBA6E24463 MyApp-1.1.0-delta.nupkg 6030\n\
                    85F4D657F8424DD437D1B33CC4511EA7AD86B1A7 MyApp-1.1.0-full.nupkg 600752\n";
        let r = SquirrelReleases::parse(file.as_bytes(), "https://dl.example.com").unwrap();
        assert_eq!(r.newest, Some(semver::Version::new(1, 1, 0)));
        assert_eq!(
            r.rendered,
            "E3F67244E4166A65310C816221A12685C83F8E6F https://dl.example.com/releases/v1.0.0/MyApp-1.0.0-full.nupkg 600725\n\
             0D777EA94C612E8BF1EA7379164CAEFBA6E24463 https://dl.example.com/releases/v1.1.0/MyApp-1.1.0-delta.nupkg 6030\n\
             85F4D657F8424DD437D1B33CC4511EA7AD86B1A7 https://dl.example.com/releases/v1.1.0/MyApp-1.1.0-full.nupkg 600752\n"
        );
        assert!(SquirrelReleases::parse(b"garbage line", "http://x").is_none());
        assert!(SquirrelReleases::parse(b"", "http://x").is_none());
    }

    #[test]
    fn filtering_drops_versions_and_deltas_above_a_gap() {
        let file = "\
            1111111111111111111111111111111111111111 App-1.0.0-full.nupkg 10\n\
            2222222222222222222222222222222222222222 App-1.1.0-delta.nupkg 2\n\
            3333333333333333333333333333333333333333 App-1.1.0-full.nupkg 11\n\
            4444444444444444444444444444444444444444 App-1.2.0-delta.nupkg 2\n\
            5555555555555555555555555555555555555555 App-1.2.0-full.nupkg 12\n\
            6666666666666666666666666666666666666666 App-1.3.0-delta.nupkg 2\n\
            7777777777777777777777777777777777777777 App-1.3.0-full.nupkg 13\n";
        let r = SquirrelReleases::parse(file.as_bytes(), "http://x").unwrap();
        let v = |s: &str| semver::Version::parse(s).unwrap();
        let names = |body: bytes::Bytes| {
            String::from_utf8(body.to_vec())
                .unwrap()
                .lines()
                .map(|l| {
                    l.split(' ')
                        .nth(1)
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_owned()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            r.full_versions(),
            [&v("1.3.0"), &v("1.2.0"), &v("1.1.0"), &v("1.0.0")]
        );
        // Up to 1.2.0 (the release before a halted 1.3.0): nothing newer.
        assert_eq!(
            names(r.filtered(&v("1.2.0"), |_| true)),
            [
                "App-1.0.0-full.nupkg",
                "App-1.1.0-delta.nupkg",
                "App-1.1.0-full.nupkg",
                "App-1.2.0-delta.nupkg",
                "App-1.2.0-full.nupkg"
            ]
        );
        // 1.2.0 yanked: its packages go, and so does the 1.3.0 delta built on it.
        assert_eq!(
            names(r.filtered(&v("1.3.0"), |v| v.to_string() != "1.2.0")),
            [
                "App-1.0.0-full.nupkg",
                "App-1.1.0-delta.nupkg",
                "App-1.1.0-full.nupkg",
                "App-1.3.0-full.nupkg"
            ]
        );
    }
}
