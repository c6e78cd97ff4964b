//! Typed object keys: the bucket layout, validation of client-supplied paths, and the
//! Content-Type, Content-Disposition and Cache-Control that each kind of object gets.

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::release::channel::Channel;

/// The hasher of the in-memory maps keyed by [`ObjectKey`] that every request looks up
/// (manifests, opened files, S3 metadata): foldhash, seeded per process, so keys that come
/// from requests cannot be chosen to collide, at a fraction of SipHash's cost per lookup.
pub type KeyHasher = foldhash::fast::RandomState;

/// Top-level prefix of every release object in the store (SPEC §1).
pub const RELEASES_PREFIX: &str = "releases";

/// The folder of the audit trail under [`POLICY_PREFIX`].
pub const AUDIT_DIR: &str = "audit";

/// Top-level prefix of the release policy (SPEC §2.5): `policy/{channel}.json` and the audit
/// trail under `policy/audit/`. Outside `releases/`, so `/releases/*` can never serve it.
pub const POLICY_PREFIX: &str = "policy";

/// Longest key, in bytes after percent-decoding, that a client may ask for.
///
/// S3 caps keys at 1024 bytes; nothing electron-builder produces comes close.
const MAX_KEY_LEN: usize = 1024;

/// Longest single path segment: the common file-name limit of Linux filesystems.
const MAX_SEGMENT_LEN: usize = 255;

/// `Cache-Control` of the immutable artifacts under `releases/v{version}/` (SPEC §2.1).
const CACHE_CONTROL_IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Extensions served as downloads (`Content-Disposition: attachment`): installers and archives.
const ATTACHMENT_EXTENSIONS: &[&str] = &[
    ".dmg",
    ".pkg",
    ".zip",
    ".exe",
    ".msi",
    ".msix",
    ".appx",
    ".nupkg",
    ".appimage",
    ".deb",
    ".rpm",
    ".snap",
    ".flatpak",
    ".tar.gz",
    ".tgz",
    ".tar.xz",
    ".tar.zst",
    ".tar.bz2",
    ".7z",
];

/// Types of the release formats, most of which `mime_guess` does not know or gets wrong.
const CONTENT_TYPES: &[(&str, &str)] = &[
    (".yml", "application/yaml"), // RFC 9512
    (".yaml", "application/yaml"),
    (".json", "application/json"),
    (".exe", "application/vnd.microsoft.portable-executable"),
    (".msi", "application/x-msi"),
    (".dmg", "application/x-apple-diskimage"),
    (".appimage", "application/vnd.appimage"),
    (".deb", "application/vnd.debian.binary-package"),
    (".rpm", "application/x-rpm"),
    (".zip", "application/zip"),
    (".tar.gz", "application/gzip"),
    (".tgz", "application/gzip"),
    (".nupkg", "application/octet-stream"),
    (".blockmap", "application/octet-stream"),
    // minisign signatures (Tauri) are text.
    (".sig", "text/plain; charset=utf-8"),
];

/// Characters escaped in the RFC 8187 `filename*` parameter (everything but `attr-char`).
const RFC8187_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'%')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'{')
    .add(b'}');

/// Why a client-supplied path was refused. Every variant is a `400 invalid_path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing after the route prefix.
    #[error("the path is empty")]
    Empty,
    /// Longer than [`MAX_KEY_LEN`] or a segment longer than [`MAX_SEGMENT_LEN`].
    #[error("the path is too long (at most {MAX_KEY_LEN} bytes, {MAX_SEGMENT_LEN} per segment)")]
    TooLong,
    /// Percent-decoding produced bytes that are not UTF-8.
    #[error("the path is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    /// A `.` or `..` segment, in any encoding.
    #[error("the path contains a `.` or `..` segment")]
    DotSegment,
    /// `a//b`, a leading or a trailing slash.
    #[error("the path contains an empty segment")]
    EmptySegment,
    /// Windows separators never name an object; they only serve traversal.
    #[error("the path contains a backslash")]
    Backslash,
    /// NUL, other C0 controls and DEL.
    #[error("the path contains a control character")]
    ControlCharacter,
    /// `%252e%252e` and friends: still percent-encoded after the one decoding we do.
    #[error("the path is percent-encoded more than once")]
    DoubleEncoded,
}

/// What kind of object a key names; decides caching and the download headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `releases/v{version}/...`: published once, never rewritten.
    Versioned,
    /// `releases/latest/...` and anything else under `releases/` that is not versioned: mutable.
    Mutable,
    /// `policy/...`: the release policy and its audit trail. Read by the feeds and the admin
    /// API; no route serves it.
    Policy,
}

/// A validated key inside the store, relative to its root (or bucket prefix). Cheap to
/// clone: the caches clone keys on every insert.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    key: Arc<str>,
}

impl ObjectKey {
    /// Builds the key for `GET /releases/{raw}` from the still percent-encoded path tail.
    ///
    /// Decodes exactly once (electron-updater encodes spaces and non-ASCII in file names),
    /// then validates, so that no encoding of `..`, `\` or NUL gets through.
    pub fn release_from_url_path(raw: &str) -> Result<Self, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        // Bound the work before decoding: a decoded byte needs at least one raw byte.
        if raw.len() > MAX_KEY_LEN * 3 {
            return Err(KeyError::TooLong);
        }
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| KeyError::NotUtf8)?;
        validate_relative_path(&decoded)?;
        Ok(Self {
            key: format!("{RELEASES_PREFIX}/{decoded}").into(),
        })
    }

    /// Builds a key from a path the server itself composed (never from client input).
    pub fn from_trusted(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        validate_relative_path(&key)?;
        Ok(Self { key: key.into() })
    }

    /// `releases/latest/{name}`: a manifest currently served, for a file name the server
    /// composed from a validated channel name and a fixed suffix (it holds no `/`, `..` or
    /// control character by construction).
    pub fn latest(name: &str) -> Self {
        let key = format!("{RELEASES_PREFIX}/latest/{name}");
        debug_assert!(validate_relative_path(&key).is_ok(), "{key}");
        Self { key: key.into() }
    }

    /// `policy/{channel}.json`: the channel's release policy.
    pub fn policy(channel: &Channel) -> Self {
        Self {
            key: format!("{POLICY_PREFIX}/{channel}.json").into(),
        }
    }

    /// `policy/audit/{name}`: one entry of the audit trail (`name` is composed by the
    /// server: a time, the channel and the action).
    pub fn audit(name: &str) -> Result<Self, KeyError> {
        if name.contains('/') {
            return Err(KeyError::EmptySegment);
        }
        Self::from_trusted(format!("{POLICY_PREFIX}/{AUDIT_DIR}/{name}"))
    }

    /// The key as the store sees it, e.g. `releases/v1.2.0/App-1.2.0.dmg`.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The last path segment.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }

    /// Versioned (immutable) or mutable, from the layout of SPEC §1.
    pub fn kind(&self) -> KeyKind {
        if self
            .key
            .strip_prefix(POLICY_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
        {
            return KeyKind::Policy;
        }
        let mut segments = self.key.split('/');
        let (Some(RELEASES_PREFIX), Some(dir), Some(_)) =
            (segments.next(), segments.next(), segments.next())
        else {
            return KeyKind::Mutable;
        };
        // `v` then a digit: `releases/v1.2.3/`; `releases/vendor/` is not a version.
        let mut chars = dir.chars();
        if chars.next() == Some('v') && chars.next().is_some_and(|c| c.is_ascii_digit()) {
            KeyKind::Versioned
        } else {
            KeyKind::Mutable
        }
    }

    /// `Cache-Control` for this object: immutable artifacts are cached for a year, mutable
    /// manifests get the manifest policy (SPEC §2.3: RFC 5861 directives for the CDN).
    pub fn cache_control(&self, policy: &CachePolicy) -> HeaderValue {
        match self.kind() {
            KeyKind::Versioned => HeaderValue::from_static(CACHE_CONTROL_IMMUTABLE),
            KeyKind::Mutable => policy.shared.clone(),
            KeyKind::Policy => HeaderValue::from_static("no-store"),
        }
    }

    /// `Content-Type` guessed from the file name, for stores that keep none.
    pub fn guessed_content_type(&self) -> HeaderValue {
        let name = self.file_name();
        let lower = name.to_ascii_lowercase();
        if name == "RELEASES" {
            // Squirrel.Windows' package list is plain text.
            return HeaderValue::from_static("text/plain; charset=utf-8");
        }
        if let Some((_, ty)) = CONTENT_TYPES.iter().find(|(ext, _)| lower.ends_with(ext)) {
            return HeaderValue::from_static(ty);
        }
        let ty = mime_guess::from_path(&lower)
            .first_raw()
            .unwrap_or("application/octet-stream");
        HeaderValue::from_static(ty)
    }

    /// `Content-Disposition: attachment` for installers and archives, so that a browser
    /// following a download link saves the file under its real name (RFC 6266, with the
    /// RFC 8187 `filename*` form when the name is not plain ASCII).
    pub fn content_disposition(&self) -> Option<HeaderValue> {
        let name = self.file_name();
        let lower = name.to_ascii_lowercase();
        if !ATTACHMENT_EXTENSIONS.iter().any(|ext| lower.ends_with(ext)) {
            return None;
        }
        let plain = name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ');
        let value = if plain {
            format!("attachment; filename=\"{name}\"")
        } else {
            let fallback: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() && c != '"' && c != '\\' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let encoded = utf8_percent_encode(name, RFC8187_ESCAPE);
            format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
        };
        HeaderValue::from_str(&value).ok()
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

/// The `Cache-Control` values of mutable objects and feed answers, built once from
/// `cache.manifest_max_age` (not formatted again for every request).
#[derive(Debug, Clone)]
pub struct CachePolicy {
    /// Mutable objects and feed answers every client shares: short freshness, then RFC 5861
    /// lets a CDN serve the stale copy while it revalidates, and for a day while the origin
    /// fails.
    pub shared: HeaderValue,
    /// Feed answers a staged rollout decided for one client: no shared cache may keep them.
    pub per_client: HeaderValue,
}

impl CachePolicy {
    /// The policy for a manifest `max-age` in seconds.
    pub fn new(max_age: u64) -> Self {
        let header = |value: String| {
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("no-cache"))
        };
        Self {
            shared: header(format!(
                "public, max-age={max_age}, stale-while-revalidate=60, stale-if-error=86400"
            )),
            per_client: header(format!("private, max-age={max_age}")),
        }
    }
}

/// Checks a decoded, root-relative path: segment by segment, before any store access.
fn validate_relative_path(path: &str) -> Result<(), KeyError> {
    if path.is_empty() {
        return Err(KeyError::Empty);
    }
    if path.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    if path.contains('\\') {
        return Err(KeyError::Backslash);
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(KeyError::ControlCharacter);
    }
    if still_encoded(path) {
        return Err(KeyError::DoubleEncoded);
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(KeyError::EmptySegment),
            "." | ".." => return Err(KeyError::DotSegment),
            s if s.len() > MAX_SEGMENT_LEN => return Err(KeyError::TooLong),
            _ => {}
        }
    }
    Ok(())
}

/// True when the path still holds a percent-escape of a character that matters for
/// traversal (`.`, `/`, `\`, `%`, controls): a second decoding somewhere downstream
/// (a proxy, a store) would turn it into one.
fn still_encoded(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.windows(3).any(|w| {
        if w[0] != b'%' {
            return false;
        }
        let hex = |b: u8| (b as char).to_digit(16);
        match (hex(w[1]), hex(w[2])) {
            (Some(hi), Some(lo)) => {
                let byte = (hi * 16 + lo) as u8;
                matches!(byte, b'.' | b'/' | b'\\' | b'%') || byte < 0x20 || byte == 0x7f
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> Result<ObjectKey, KeyError> {
        ObjectKey::release_from_url_path(raw)
    }

    #[test]
    fn plain_artifact_path_is_accepted() {
        let k = key("v1.2.0/App-1.2.0-arm64.dmg").unwrap();
        assert_eq!(k.as_str(), "releases/v1.2.0/App-1.2.0-arm64.dmg");
        assert_eq!(k.file_name(), "App-1.2.0-arm64.dmg");
        assert_eq!(k.kind(), KeyKind::Versioned);
    }

    #[test]
    fn percent_encoding_is_decoded_once() {
        let k = key("v1.0.0/My%20App%20%C3%A9.exe").unwrap();
        assert_eq!(k.as_str(), "releases/v1.0.0/My App é.exe");
    }

    #[test]
    fn traversal_is_refused_in_every_encoding() {
        let cases = [
            ("../secret", KeyError::DotSegment),
            ("v1/../../etc/passwd", KeyError::DotSegment),
            ("%2e%2e/etc/passwd", KeyError::DotSegment),
            ("%2E%2E%2Fetc", KeyError::DotSegment),
            ("v1/%2e", KeyError::DotSegment),
            ("./x", KeyError::DotSegment),
            ("%252e%252e/etc", KeyError::DoubleEncoded),
            ("v1%255cx", KeyError::DoubleEncoded),
            ("v1\\..\\x", KeyError::Backslash),
            ("v1%5c..%5cx", KeyError::Backslash),
            ("v1/a%00.exe", KeyError::ControlCharacter),
            ("v1/a%0a.exe", KeyError::ControlCharacter),
            ("v1/a%7f", KeyError::ControlCharacter),
            ("v1//a", KeyError::EmptySegment),
            ("/etc/passwd", KeyError::EmptySegment),
            ("v1/", KeyError::EmptySegment),
            ("", KeyError::Empty),
            ("%ff%fe", KeyError::NotUtf8),
        ];
        for (raw, want) in cases {
            assert_eq!(key(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn overlong_paths_are_refused() {
        assert_eq!(key(&"a".repeat(MAX_KEY_LEN + 1)), Err(KeyError::TooLong));
        assert_eq!(key(&"a".repeat(300)), Err(KeyError::TooLong));
        let ok = format!("{}/{}", "a".repeat(200), "b".repeat(200));
        assert!(key(&ok).is_ok());
    }

    #[test]
    fn kind_follows_the_layout() {
        assert_eq!(key("latest/latest.yml").unwrap().kind(), KeyKind::Mutable);
        assert_eq!(key("vendor/x.zip").unwrap().kind(), KeyKind::Mutable);
        assert_eq!(key("v2/x.zip").unwrap().kind(), KeyKind::Versioned);
        assert_eq!(key("v1.0.0").unwrap().kind(), KeyKind::Mutable);
    }

    #[test]
    fn the_policy_is_outside_what_releases_can_serve() {
        let channel = Channel::parse("beta").unwrap();
        assert_eq!(ObjectKey::policy(&channel).as_str(), "policy/beta.json");
        assert_eq!(ObjectKey::policy(&channel).kind(), KeyKind::Policy);
        let audit = ObjectKey::audit("0001-latest-halt.json").unwrap();
        assert_eq!(audit.as_str(), "policy/audit/0001-latest-halt.json");
        assert_eq!(audit.kind(), KeyKind::Policy);
        assert!(ObjectKey::audit("../x").is_err());
        for raw in [
            "policy/beta.json",
            "../policy/beta.json",
            "%2e%2e/policy/beta.json",
            "latest/../../policy/beta.json",
        ] {
            if let Ok(key) = key(raw) {
                assert!(key.as_str().starts_with("releases/"), "{raw}");
                assert_ne!(key.kind(), KeyKind::Policy, "{raw}");
            }
        }
        assert_eq!(
            ObjectKey::from_trusted("policyx/a").unwrap().kind(),
            KeyKind::Mutable
        );
    }

    #[test]
    fn cache_control_per_kind() {
        assert_eq!(
            key("v1.0.0/a.exe")
                .unwrap()
                .cache_control(&CachePolicy::new(300)),
            CACHE_CONTROL_IMMUTABLE
        );
        assert_eq!(
            key("latest/latest.yml")
                .unwrap()
                .cache_control(&CachePolicy::new(120)),
            "public, max-age=120, stale-while-revalidate=60, stale-if-error=86400"
        );
    }

    #[test]
    fn content_type_guesses() {
        let ct = |p: &str| key(p).unwrap().guessed_content_type();
        assert_eq!(ct("latest/latest-mac.yml"), "application/yaml");
        assert_eq!(ct("latest/latest.json"), "application/json");
        assert_eq!(ct("v1/App.AppImage"), "application/vnd.appimage");
        assert_eq!(
            ct("v1/App Setup.exe"),
            "application/vnd.microsoft.portable-executable"
        );
        assert_eq!(ct("v1/App.app.tar.gz.sig"), "text/plain; charset=utf-8");
        assert_eq!(ct("v1/App.exe.blockmap"), "application/octet-stream");
        assert_eq!(ct("v1/App.zip"), "application/zip");
        assert_eq!(ct("v1/RELEASES"), "text/plain; charset=utf-8");
        assert_eq!(ct("v1/App.nupkgx"), "application/octet-stream");
    }

    #[test]
    fn content_disposition_for_installers_only() {
        let cd = |p: &str| key(p).unwrap().content_disposition();
        assert_eq!(
            cd("v1/App Setup 1.0.0.exe").unwrap(),
            "attachment; filename=\"App Setup 1.0.0.exe\""
        );
        assert_eq!(
            cd("v1/App-1.0.0.tar.gz").unwrap(),
            "attachment; filename=\"App-1.0.0.tar.gz\""
        );
        assert_eq!(
            cd("v1/%C3%89t%C3%A9.dmg").unwrap(),
            "attachment; filename=\"_t_.dmg\"; filename*=UTF-8''%C3%89t%C3%A9.dmg"
        );
        assert_eq!(cd("latest/latest.yml"), None);
        assert_eq!(cd("v1/App.exe.blockmap"), None);
    }
}
