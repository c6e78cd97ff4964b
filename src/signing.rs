//! Signed, expiring download URLs for private channels (SPEC §2.7): an artifact URL carries
//! `?sig={expires}.{mac}`, the MAC an HMAC-SHA256 over the object's key and the expiry, so
//! that every updater downloads with no header of its own and the server checks the URL
//! before it touches the object.
//!
//! - One query parameter (no `&`): the URL goes into YAML, JSON, `RELEASES` and XML bodies
//!   as it is, with nothing to escape.
//! - The MAC covers the object's key as `/releases/*` decodes it (`releases/v1.2.0/App 1.2.0.exe`),
//!   not the URL's spelling: a client that re-encodes the path (electron-updater's
//!   `new URL()`) keeps a valid signature, and a signature for one object opens no other.
//! - Expiries are rounded up to a window (an eighth of the lifetime), so every answer of a
//!   window carries the same URLs: a feed body is signed once per window and version of it
//!   ([`UrlSigner::sign_body`]) and then handed out like any cached body, ETag included.
//! - Several keys: the first signs, any verifies (rotation without a flag day).
//!
//! Nothing here knows HTTP; `crate::access` decides when to sign and to check.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock::Clock;
use crate::response::feed::FeedBody;
use crate::store::ObjectKey;

/// The query parameter of a signed URL.
pub const SIG_PARAM: &str = "sig";

/// Shortest signing key accepted, in bytes: 256 bits of a random hex or base64 string.
pub const MIN_KEY_LEN: usize = 32;

/// Signed bodies kept per window at most (the feeds' distinct bodies are far fewer: one per
/// channel file, release and variant); beyond it a body is signed per request.
const MAX_SIGNED_BODIES: usize = 4096;

/// Domain separation of the MAC input (a new format gets a new tag).
const MAC_TAG: &[u8] = b"release-edge-url-v1\n";

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `{expires}.{mac}`, or the MAC is not 32 bytes of base64url.
    #[error("the signature is malformed")]
    Malformed,
    /// A MAC no key made for this object and expiry: tampered, or for another object.
    #[error("the signature is not valid for this object")]
    Invalid,
    /// A genuine signature whose time is up (Unix seconds).
    #[error("the signed URL expired at {0} (Unix time); ask the feed for a new one")]
    Expired(u64),
}

/// Signs and checks download URLs; holds the keys (ready HMAC states) and the signed bodies
/// of the current window.
pub struct UrlSigner {
    /// The first signs; every one verifies.
    keys: Vec<HmacSha256>,
    /// The shortest lifetime of a URL, seconds.
    ttl: u64,
    /// Expiries are rounded up to a multiple of this, seconds.
    window: u64,
    /// `{public_url}/releases/`: URLs that start so are ours to sign.
    prefix: String,
    clock: Clock,
    bodies: RwLock<SignedBodies>,
}

/// The bodies signed in one window, by the ETag of the unsigned body.
#[derive(Default)]
struct SignedBodies {
    window: u64,
    by_etag: HashMap<String, FeedBody>,
}

impl UrlSigner {
    /// A signer with `keys` (each at least [`MIN_KEY_LEN`] bytes; the first signs) for URLs
    /// under `public_url`, valid at least `ttl`, on `clock`'s wall time.
    pub fn new(
        keys: &[&[u8]],
        ttl: Duration,
        public_url: &str,
        clock: Clock,
    ) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("no key".into());
        }
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                if key.len() < MIN_KEY_LEN {
                    return Err(format!(
                        "key {} is {} bytes; at least {MIN_KEY_LEN} are needed (e.g. `openssl rand -hex 32`)",
                        i + 1,
                        key.len()
                    ));
                }
                HmacSha256::new_from_slice(key).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ttl = ttl.as_secs().max(1);
        Ok(Self {
            keys,
            ttl,
            window: (ttl / 8).max(1),
            prefix: format!("{public_url}/releases/"),
            clock,
            bodies: RwLock::new(SignedBodies::default()),
        })
    }

    /// Now, in Unix seconds, by the clock.
    pub fn now(&self) -> u64 {
        self.clock
            .system_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The window `now` falls in.
    fn window_of(&self, now: u64) -> u64 {
        now / self.window
    }

    /// The expiry of a URL signed at `now`: the end of the window plus the lifetime, so that
    /// every URL of a window is the same and each lives at least the lifetime.
    pub fn expires_at(&self, now: u64) -> u64 {
        (self.window_of(now) + 1)
            .saturating_mul(self.window)
            .saturating_add(self.ttl)
    }

    fn mac(&self, key: &HmacSha256, object: &str, expires: u64) -> HmacSha256 {
        let mut mac = key.clone();
        mac.update(MAC_TAG);
        mac.update(expires.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(object.as_bytes());
        mac
    }

    /// The `sig` value for `object` (a store key, `releases/v1.2.0/App.exe`) until `expires`.
    pub fn param(&self, object: &str, expires: u64) -> String {
        let tag = self
            .mac(&self.keys[0], object, expires)
            .finalize()
            .into_bytes();
        format!("{expires}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Checks a `sig` value for `object` at `now`: a MAC of one of the keys (compared in
    /// constant time), then the expiry.
    pub fn verify(&self, object: &str, param: &str, now: u64) -> Result<(), SignatureError> {
        let (expires, tag) = param.split_once('.').ok_or(SignatureError::Malformed)?;
        let expires: u64 = expires.parse().map_err(|_| SignatureError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .ok()
            .filter(|t| t.len() == 32)
            .ok_or(SignatureError::Malformed)?;
        let genuine = self
            .keys
            .iter()
            .any(|key| self.mac(key, object, expires).verify_slice(&tag).is_ok());
        if !genuine {
            return Err(SignatureError::Invalid);
        }
        if now >= expires {
            return Err(SignatureError::Expired(expires));
        }
        Ok(())
    }

    /// `url` signed until `expires` when it is one of ours (`{public_url}/releases/...`, no
    /// query); any other URL as it is.
    fn sign_one(&self, url: &str, expires: u64) -> Option<String> {
        let tail = url.strip_prefix(&self.prefix)?;
        if tail.contains(['?', '#']) {
            return None;
        }
        let key = ObjectKey::release_from_url_path(tail).ok()?;
        Some(format!(
            "{url}?{SIG_PARAM}={}",
            self.param(key.as_str(), expires)
        ))
    }

    /// `url` signed now (a `/latest` redirect); any URL not under `{public_url}/releases/`
    /// as it is.
    pub fn sign_url(&self, url: &str) -> String {
        let expires = self.expires_at(self.now());
        self.sign_one(url, expires)
            .unwrap_or_else(|| url.to_owned())
    }

    /// Every URL under `{public_url}/releases/` in `text` signed until `expires`. A URL ends
    /// at whitespace, a quote, `<`, `>` or `\` (what delimits it in YAML, JSON, `RELEASES`
    /// and XML; the URLs the server writes percent-encode those).
    pub fn sign_text(&self, text: &str, expires: u64) -> String {
        let mut out = String::with_capacity(text.len() + 256);
        let mut rest = text;
        while let Some(at) = rest.find(&self.prefix) {
            out.push_str(&rest[..at]);
            let from = &rest[at..];
            let end = from
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>' | '\\'))
                .unwrap_or(from.len());
            let url = &from[..end];
            match self.sign_one(url, expires) {
                Some(signed) => out.push_str(&signed),
                None => out.push_str(url),
            }
            rest = &from[end..];
        }
        out.push_str(rest);
        out
    }

    /// `body` with its artifact URLs signed for the current window: signed once per window
    /// and version of the body (by its ETag), then reused, with the ETag of the signed bytes.
    pub fn sign_body(&self, body: &FeedBody) -> FeedBody {
        let now = self.now();
        let window = self.window_of(now);
        if let Ok(bodies) = self.bodies.read()
            && bodies.window == window
            && let Some(signed) = bodies.by_etag.get(&body.etag)
        {
            return signed.clone();
        }
        let signed = match std::str::from_utf8(&body.bytes) {
            Ok(text) => FeedBody::new(Bytes::from(self.sign_text(text, self.expires_at(now)))),
            // No feed is binary; nothing to sign in one.
            Err(_) => body.clone(),
        };
        if let Ok(mut bodies) = self.bodies.write() {
            if bodies.window != window {
                if bodies.window > window {
                    return signed;
                }
                *bodies = SignedBodies {
                    window,
                    by_etag: HashMap::new(),
                };
            }
            if bodies.by_etag.len() < MAX_SIGNED_BODIES {
                bodies.by_etag.insert(body.etag.clone(), signed.clone());
            }
        }
        signed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn signer(keys: &[&[u8]], clock: &Clock) -> UrlSigner {
        UrlSigner::new(
            keys,
            Duration::from_secs(3600),
            "https://dl.example.com",
            clock.clone(),
        )
        .expect("signer")
    }

    #[test]
    fn keys_must_be_long_enough() {
        let clock = Clock::manual();
        let short = UrlSigner::new(
            &[b"short"],
            Duration::from_secs(60),
            "http://x",
            clock.clone(),
        );
        assert!(short.err().is_some_and(|e| e.contains("key 1 is 5 bytes")));
        assert!(UrlSigner::new(&[], Duration::from_secs(60), "http://x", clock).is_err());
    }

    #[test]
    fn expiries_are_rounded_up_to_the_window() {
        let s = signer(&[KEY], &Clock::manual());
        // ttl 3600 s, window 450 s.
        assert_eq!(s.expires_at(0), 450 + 3600);
        assert_eq!(s.expires_at(449), 450 + 3600);
        assert_eq!(s.expires_at(450), 900 + 3600);
        for now in [1_000_000u64, 1_000_449, 1_777_777_777] {
            let lives = s.expires_at(now) - now;
            assert!((3600..=3600 + 450).contains(&lives), "{now}: {lives}");
        }
    }

    #[test]
    fn a_signature_opens_its_object_until_it_expires() {
        let s = signer(&[KEY], &Clock::manual());
        let object = "releases/v1.2.0/App Setup 1.2.0.exe";
        let sig = s.param(object, 5000);
        assert_eq!(s.verify(object, &sig, 4999), Ok(()));
        assert_eq!(
            s.verify(object, &sig, 5000),
            Err(SignatureError::Expired(5000))
        );
        // Another object, another expiry, a flipped character: not this signature.
        assert_eq!(
            s.verify("releases/v1.2.0/App Setup 1.2.0.exe.blockmap", &sig, 0),
            Err(SignatureError::Invalid)
        );
        let (_, tag) = sig.split_once('.').unwrap();
        assert_eq!(
            s.verify(object, &format!("6000.{tag}"), 0),
            Err(SignatureError::Invalid)
        );
        let mut flipped = sig.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(s.verify(object, &flipped, 0), Err(SignatureError::Invalid));
        for bad in ["", "5000", "x.y", "5000.", "5000.AAAA", "-1.AAAA"] {
            assert_eq!(
                s.verify(object, bad, 0),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let clock = Clock::manual();
        let old = signer(&[OTHER], &clock);
        let rotated = signer(&[KEY, OTHER], &clock);
        let retired = signer(&[KEY], &clock);
        let object = "releases/v1.0.0/a.zip";
        let by_old = old.param(object, 100);
        assert_eq!(
            rotated.verify(object, &by_old, 0),
            Ok(()),
            "old URLs still open"
        );
        assert_eq!(
            retired.verify(object, &by_old, 0),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            retired.verify(object, &rotated.param(object, 100), 0),
            Ok(())
        );
    }

    #[test]
    fn only_our_artifact_urls_are_signed_in_a_body() {
        let s = signer(&[KEY], &Clock::manual());
        let yaml = "version: 1.2.0\nfiles:\n  - url: \"https://dl.example.com/releases/v1.2.0/App%20Setup%201.2.0.exe\"\n    sha512: AAA\npath: \"https://dl.example.com/releases/v1.2.0/App%20Setup%201.2.0.exe\"\nnotes: see https://cdn.example.com/releases/v1.2.0/x.exe and https://dl.example.com/releases/v1.2.0/a.zip?x=1\n";
        let signed = s.sign_text(yaml, 7200);
        let sig = s.param("releases/v1.2.0/App Setup 1.2.0.exe", 7200);
        assert_eq!(
            signed
                .matches(&format!("App%20Setup%201.2.0.exe?sig={sig}\""))
                .count(),
            2,
            "{signed}"
        );
        assert!(signed.contains("https://cdn.example.com/releases/v1.2.0/x.exe and"));
        assert!(
            signed.contains("a.zip?x=1\n"),
            "a URL with a query is not ours"
        );
        let json = r#"{"version":"1.2.0","url":"https://dl.example.com/releases/v1.2.0/App.AppImage","format":"appimage"}"#;
        let signed: serde_json::Value =
            serde_json::from_str(&s.sign_text(json, 7200)).expect("still JSON");
        let url = signed["url"].as_str().unwrap();
        let param = url.split_once("?sig=").unwrap().1;
        assert_eq!(
            s.verify("releases/v1.2.0/App.AppImage", param, 7199),
            Ok(())
        );
        let releases = "0123456789012345678901234567890123456789 https://dl.example.com/releases/v1.2.0/App-1.2.0-full.nupkg 1234\n";
        let signed = s.sign_text(releases, 7200);
        let fields: Vec<&str> = signed.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{signed}");
        assert!(fields[1].contains("-full.nupkg?sig="));
        assert_eq!(s.sign_text("no URL here", 1), "no URL here");
    }

    #[test]
    fn a_body_is_signed_once_per_window() {
        let clock = Clock::manual();
        let s = signer(&[KEY], &clock);
        let body = FeedBody::new(Bytes::from_static(
            b"{\"url\":\"https://dl.example.com/releases/v1.0.0/a.zip\"}",
        ));
        let first = s.sign_body(&body);
        assert_ne!(first.etag, body.etag);
        let again = s.sign_body(&body);
        assert_eq!(again.etag, first.etag);
        assert!(
            again.bytes.as_ptr() == first.bytes.as_ptr(),
            "the same bytes, reused"
        );
        clock.advance(Duration::from_secs(450));
        let next = s.sign_body(&body);
        assert_ne!(next.etag, first.etag, "a new window, a new expiry");
    }
}
