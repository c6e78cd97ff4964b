//! Squirrel.Windows `RELEASES` files: `SHA1 name size` per line.

use super::absolute_artifact_url;

/// A parsed `RELEASES`, rendered with absolute package URLs.
#[derive(Debug, Clone)]
pub struct SquirrelReleases {
    /// The newest full package's version, for the update-check metric.
    pub newest: Option<semver::Version>,
    /// The file with every package name turned into `{public_url}/releases/v{version}/{name}`.
    pub rendered: bytes::Bytes,
    /// Strong ETag of `rendered`, computed once.
    pub etag: String,
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
        let mut entries = 0;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [sha1, name, size] = fields[..] else {
                return None;
            };
            if sha1.len() != 40 || size.parse::<u64>().is_err() {
                return None;
            }
            let url = match package_version(name) {
                Some(version) => {
                    if name.ends_with("-full.nupkg") && newest.as_ref().is_none_or(|n| &version > n)
                    {
                        newest = Some(version.clone());
                    }
                    absolute_artifact_url(public_url, &version.to_string(), name)
                }
                None => name.to_owned(),
            };
            rendered.push_str(&format!("{sha1} {url} {size}\n"));
            entries += 1;
        }
        (entries > 0).then(|| Self {
            newest,
            etag: super::body_etag(rendered.as_bytes()),
            rendered: bytes::Bytes::from(rendered),
        })
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
}
