//! A release channel's name (`latest`, `beta`, `nightly-2`): validated once, where it enters
//! (a query, a file name, a command line), and carried as a [`Channel`] from there on.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Longest channel name accepted.
const MAX_LEN: usize = 64;

/// A valid channel name: `[a-z0-9-]+` (SPEC §1), at most 64 characters. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(Arc<str>);

/// A name that is not a channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a channel name (lower-case letters, digits and `-`, at most 64)")]
pub struct InvalidChannel(pub String);

impl Channel {
    /// The default channel of every route and command.
    pub const DEFAULT: &'static str = "latest";

    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, InvalidChannel> {
        let valid = !name.is_empty()
            && name.len() <= MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(Arc::from(name)))
        } else {
            Err(InvalidChannel(name.chars().take(MAX_LEN * 2).collect()))
        }
    }

    /// `latest`.
    pub fn latest() -> Self {
        // One shared name: the default channel of every request costs no allocation.
        static LATEST: OnceLock<Channel> = OnceLock::new();
        LATEST
            .get_or_init(|| Self(Arc::from(Self::DEFAULT)))
            .clone()
    }

    /// The channel named in a query, `latest` when none is.
    pub fn from_query(name: Option<&str>) -> Result<Self, InvalidChannel> {
        name.map_or_else(|| Ok(Self::latest()), Self::parse)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `latest`.
    pub fn is_latest(&self) -> bool {
        &*self.0 == Self::DEFAULT
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Channel {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Channel {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Channel {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["latest", "beta", "nightly-2", "a", &"x".repeat(64)] {
            assert_eq!(
                Channel::parse(good).map(|c| c.to_string()),
                Ok(good.to_owned())
            );
        }
        for bad in ["", "Beta", "beta_1", "be ta", "../x", "é", &"x".repeat(65)] {
            assert!(Channel::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Channel::from_query(None), Ok(Channel::latest()));
        assert!(Channel::latest().is_latest());
        let err = Channel::parse("Beta").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`Beta` is not a channel name (lower-case letters, digits and `-`, at most 64)"
        );
    }
}
