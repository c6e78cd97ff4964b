//! A channel's release policy (SPEC §2.5): the small JSON document `policy/{channel}.json`
//! that halts, stages, yanks, requires and annotates a live channel, and the pure decision
//! of what one client is offered under it. Nothing here reads the store or knows HTTP: the
//! feeds (`crate::policy`) and every future feed (Velopack, Sparkle) call these functions.
//!
//! ```json
//! { "rollout": { "percentage": 25, "halted": false },
//!   "yanked": { "1.4.0": "corrupts settings on upgrade" },
//!   "minimum_version": "1.2.3",
//!   "notes": { "1.4.1": "Fixes the settings migration." } }
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;

use semver::Version;
use serde::{Deserialize, Serialize};

use super::parse_version;
use super::rollout::in_rollout;

/// Largest policy document accepted (it is read into memory on every node).
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// A channel's policy. The default (no document) changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelPolicy {
    /// The staged rollout of the channel's current release.
    pub rollout: Rollout,
    /// Versions never offered again, each with the reason.
    pub yanked: BTreeMap<Version, String>,
    /// Clients below it are told their update is required.
    pub minimum_version: Option<Version>,
    /// Release notes that replace the manifests' own, per version.
    pub notes: BTreeMap<Version, String>,
}

/// How far the channel's current release goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Share of clients (by their rollout bucket, SPEC §2.3) offered the current release:
    /// 0 to 100.
    #[serde(default = "full", deserialize_with = "percentage")]
    pub percentage: u8,
    /// Offered to nobody who does not already run it.
    #[serde(default)]
    pub halted: bool,
}

fn full() -> u8 {
    100
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            percentage: 100,
            halted: false,
        }
    }
}

/// Why a policy document (or a change to one) is refused. The message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON, or not the document's shape (an unknown field is named).
    #[error("not a policy document: {0}")]
    Shape(String),
    /// A percentage outside 0–100 (or not a whole number).
    #[error("percentage must be a whole number from 0 to 100, got {0}")]
    Percentage(String),
    /// A version that is not semver.
    #[error("`{0}` is not a semver version (like 1.2.3)")]
    Version(String),
    /// Over [`MAX_POLICY_BYTES`].
    #[error("the policy document is over {MAX_POLICY_BYTES} bytes")]
    TooLarge,
}

/// Parses a percentage given as any JSON number, with a message that says what is wrong.
pub fn parse_percentage(value: &serde_json::Value) -> Result<u8, PolicyError> {
    value
        .as_u64()
        .filter(|p| *p <= 100)
        .and_then(|p| u8::try_from(p).ok())
        .or_else(|| {
            value
                .as_f64()
                .filter(|p| p.fract() == 0.0 && (0.0..=100.0).contains(p))
                .map(|p| p as u8)
        })
        .ok_or_else(|| PolicyError::Percentage(value.to_string()))
}

fn percentage<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    parse_percentage(&value).map_err(serde::de::Error::custom)
}

/// The document as JSON spells it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    rollout: Rollout,
    #[serde(default)]
    yanked: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minimum_version: Option<String>,
    #[serde(default)]
    notes: BTreeMap<String, String>,
}

/// A serde error as a [`PolicyError`]: a bad percentage keeps its own kind (and message).
fn shape_error(err: serde_json::Error) -> PolicyError {
    let text = err.to_string();
    if text.starts_with("percentage must be") {
        // "... got 101 at line 1 column 30": the value, without serde's position.
        let value = text
            .split_once(", got ")
            .map_or(text.as_str(), |(_, rest)| rest);
        let value = value.split(" at line ").next().unwrap_or(value);
        PolicyError::Percentage(value.to_owned())
    } else {
        PolicyError::Shape(text)
    }
}

fn version(text: &str) -> Result<Version, PolicyError> {
    parse_version(text).ok_or_else(|| PolicyError::Version(text.chars().take(80).collect()))
}

fn versions(map: BTreeMap<String, String>) -> Result<BTreeMap<Version, String>, PolicyError> {
    map.into_iter()
        .map(|(k, v)| Ok((version(&k)?, v)))
        .collect()
}

fn texts(map: &BTreeMap<Version, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

impl ChannelPolicy {
    /// Parses and validates a document.
    pub fn parse(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge);
        }
        let doc: Document = serde_json::from_slice(bytes).map_err(shape_error)?;
        Self::from_document(doc)
    }

    /// Parses a document already decoded as JSON (the admin API's body).
    pub fn from_json(value: serde_json::Value) -> Result<Self, PolicyError> {
        let doc: Document = serde_json::from_value(value).map_err(shape_error)?;
        Self::from_document(doc)
    }

    fn from_document(doc: Document) -> Result<Self, PolicyError> {
        Ok(Self {
            rollout: doc.rollout,
            yanked: versions(doc.yanked)?,
            minimum_version: doc.minimum_version.as_deref().map(version).transpose()?,
            notes: versions(doc.notes)?,
        })
    }

    /// The document as JSON (every field spelled out, so that `show` teaches the shape).
    pub fn to_json(&self) -> serde_json::Value {
        let doc = Document {
            rollout: self.rollout,
            yanked: texts(&self.yanked),
            minimum_version: self.minimum_version.as_ref().map(Version::to_string),
            notes: texts(&self.notes),
        };
        serde_json::to_value(doc).unwrap_or_default()
    }

    /// The bytes written to the store: pretty JSON and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(&self.to_json()).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// True when the policy changes nothing (the feeds then answer as without one).
    pub fn is_inert(&self) -> bool {
        self == &Self::default()
    }

    /// Whether `version` is yanked.
    pub fn is_yanked(&self, version: &Version) -> bool {
        self.yanked.contains_key(version)
    }

    /// The release notes that replace the manifest's for `version`, if any.
    pub fn notes_for(&self, version: &Version) -> Option<&str> {
        self.notes.get(version).map(String::as_str)
    }

    /// True when the rollout is anything but "everyone": halted or below 100%.
    pub fn is_staged(&self) -> bool {
        self.rollout.halted || self.rollout.percentage < 100
    }

    /// True when a client on `client` must update (it is below `minimum_version`).
    pub fn requires_update(&self, client: &Version) -> bool {
        self.minimum_version
            .as_ref()
            .is_some_and(|min| client.cmp_precedence(min) == Ordering::Less)
    }

    /// What a client is offered (see [`Decision`]).
    ///
    /// `current` is the channel's current release (its newest not yanked) with its version
    /// as text (the bucketing input, computed once per manifest); `has_previous` says
    /// whether there is a release before it to offer clients the rollout leaves out;
    /// `client` is the client's version (`None` for a download link: a new user); `id` its
    /// rollout identity.
    ///
    /// 1. A client already on the current release (or newer) is answered with it: it is up
    ///    to date, whatever the rollout.
    /// 2. Halted: nobody else gets it; the previous release is offered instead.
    /// 3. A client below `minimum_version` is in the rollout (a required update does not
    ///    wait for a staged rollout; a halt still stops it).
    /// 4. Otherwise the client is in when its bucket is below the percentage (SPEC §2.3),
    ///    and gets the previous release when it is not.
    pub fn decide(
        &self,
        current: &Version,
        current_label: &str,
        has_previous: bool,
        client: Option<&Version>,
        id: &str,
    ) -> Decision {
        let previous = || has_previous.then_some(Which::Previous);
        if let Some(client) = client
            && client.cmp_precedence(current) != Ordering::Less
        {
            return Decision {
                offer: Some(Which::Current),
                per_client: false,
                required: false,
            };
        }
        let required = client.is_some_and(|c| self.requires_update(c));
        if self.rollout.halted {
            return Decision {
                offer: previous(),
                per_client: false,
                required,
            };
        }
        if self.rollout.percentage >= 100 || required {
            return Decision {
                offer: Some(Which::Current),
                per_client: false,
                required,
            };
        }
        let inside = in_rollout(id, current_label, f64::from(self.rollout.percentage));
        Decision {
            offer: if inside {
                Some(Which::Current)
            } else {
                previous()
            },
            per_client: true,
            required,
        }
    }
}

/// Which of the channel's releases a client is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The current release: the newest not yanked.
    Current,
    /// The release before it (for clients the rollout leaves out, or while halted).
    Previous,
}

/// What one client is offered under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The release it is told about; `None`: nothing (halted or left out, and no previous
    /// release). Whether it is an update is for the protocol to say (newer than the client).
    pub offer: Option<Which>,
    /// True when the answer depends on the client's rollout bucket: never cached publicly.
    pub per_client: bool,
    /// True when the client runs a version below `minimum_version`.
    pub required: bool,
}

/// Where a feed looks for the channel's current release and the one before it, newest
/// first: `latest` (the release `releases/latest/` serves) and every version the store holds
/// below it (`listed`, any order), yanked ones left out. The feed takes the first entry that
/// has its own channel file (`releases/v{version}/...`) as the current release and the next
/// as the previous: that is how a yank falls back and a halt finds what to offer instead,
/// for feeds of every format. Versions above `latest` are not the channel's (a rollback put
/// them aside). At most `limit` entries.
pub fn candidates(
    policy: &ChannelPolicy,
    latest: &Version,
    listed: &[Version],
    limit: usize,
) -> Vec<Version> {
    let mut older: Vec<&Version> = listed
        .iter()
        .filter(|v| v.cmp_precedence(latest) == Ordering::Less)
        .collect();
    older.sort_by(|a, b| b.cmp_precedence(a));
    std::iter::once(latest)
        .chain(older)
        .filter(|v| !policy.is_yanked(v))
        .take(limit)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    const SPEC_EXAMPLE: &str = r#"{ "rollout": { "percentage": 25, "halted": false },
      "yanked": { "1.4.0": "corrupts settings on upgrade" },
      "minimum_version": "1.2.3",
      "notes": { "1.4.1": "Fixes the settings migration." } }"#;

    #[test]
    fn parses_the_spec_example_and_writes_it_back() {
        let p = ChannelPolicy::parse(SPEC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            p.rollout,
            Rollout {
                percentage: 25,
                halted: false
            }
        );
        assert_eq!(p.yanked[&v("1.4.0")], "corrupts settings on upgrade");
        assert_eq!(p.minimum_version, Some(v("1.2.3")));
        assert_eq!(
            p.notes_for(&v("1.4.1")),
            Some("Fixes the settings migration.")
        );
        assert!(p.is_yanked(&v("1.4.0")) && !p.is_yanked(&v("1.4.1")));
        let again = ChannelPolicy::parse(&p.to_bytes()).unwrap();
        assert_eq!(again, p);
        assert!(!p.is_inert());
    }

    #[test]
    fn missing_fields_take_the_defaults() {
        let p = ChannelPolicy::parse(b"{}").unwrap();
        assert!(p.is_inert());
        assert_eq!(p.rollout.percentage, 100);
        let p = ChannelPolicy::parse(br#"{"rollout":{"halted":true}}"#).unwrap();
        assert!(p.rollout.halted && p.rollout.percentage == 100 && p.is_staged());
        assert_eq!(
            ChannelPolicy::default().to_json(),
            serde_json::json!({"rollout":{"percentage":100,"halted":false},"yanked":{},"notes":{}})
        );
    }

    #[test]
    fn bad_documents_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("not json", "not a policy document"),
            (
                r#"{"rollout":{"percentage":101}}"#,
                "from 0 to 100, got 101",
            ),
            (r#"{"rollout":{"percentage":-5}}"#, "got -5"),
            (r#"{"rollout":{"percentage":12.5}}"#, "got 12.5"),
            (r#"{"rollout":{"percentage":"50"}}"#, "got \"50\""),
            (
                r#"{"yanked":{"banana":"x"}}"#,
                "`banana` is not a semver version",
            ),
            (r#"{"minimum_version":"1.2"}"#, "`1.2` is not a semver"),
            (r#"{"rolout":{}}"#, "unknown field `rolout`"),
            (r#"{"rollout":{"percent":5}}"#, "unknown field `percent`"),
        ];
        for (doc, want) in cases {
            let err = ChannelPolicy::parse(doc.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{doc}: {err}");
        }
        let big = vec![b' '; MAX_POLICY_BYTES + 1];
        assert_eq!(ChannelPolicy::parse(&big), Err(PolicyError::TooLarge));
        for (value, ok) in [
            (serde_json::json!(0), Some(0)),
            (serde_json::json!(100), Some(100)),
            (serde_json::json!(40.0), Some(40)),
            (serde_json::json!(100.5), None),
            (serde_json::json!(null), None),
        ] {
            assert_eq!(parse_percentage(&value).ok(), ok, "{value}");
        }
    }

    fn policy(percentage: u8, halted: bool, minimum: Option<&str>) -> ChannelPolicy {
        ChannelPolicy {
            rollout: Rollout { percentage, halted },
            minimum_version: minimum.map(v),
            ..ChannelPolicy::default()
        }
    }

    /// `decide` for a 2.0.0 current release, as the table tests read it.
    fn offer(p: &ChannelPolicy, previous: bool, client: Option<&str>, id: &str) -> Decision {
        p.decide(&v("2.0.0"), "2.0.0", previous, client.map(v).as_ref(), id)
    }

    const CURRENT: Option<Which> = Some(Which::Current);
    const PREVIOUS: Option<Which> = Some(Which::Previous);

    #[test]
    fn decisions() {
        // An id inside a 30% rollout of 2.0.0 and one outside it.
        let inside = (0..)
            .map(|i| format!("c{i}"))
            .find(|id| in_rollout(id, "2.0.0", 30.0))
            .unwrap();
        let outside = (0..)
            .map(|i| format!("c{i}"))
            .find(|id| !in_rollout(id, "2.0.0", 30.0))
            .unwrap();
        let d = |offer, per_client, required| Decision {
            offer,
            per_client,
            required,
        };
        let open = ChannelPolicy::default();
        let staged = policy(30, false, None);
        let halted = policy(30, true, None);
        let required = policy(30, false, Some("1.5.0"));
        let halted_required = policy(100, true, Some("1.5.0"));
        let cases = [
            // (policy, has previous, client, id, decision)
            (
                &open,
                true,
                Some("1.0.0"),
                &outside,
                d(CURRENT, false, false),
            ),
            (
                &staged,
                true,
                Some("1.0.0"),
                &inside,
                d(CURRENT, true, false),
            ),
            (
                &staged,
                true,
                Some("1.0.0"),
                &outside,
                d(PREVIOUS, true, false),
            ),
            (
                &staged,
                false,
                Some("1.0.0"),
                &outside,
                d(None, true, false),
            ),
            // Already on it (or newer): up to date, whatever the rollout says.
            (
                &staged,
                true,
                Some("2.0.0"),
                &outside,
                d(CURRENT, false, false),
            ),
            (
                &halted,
                true,
                Some("2.0.0"),
                &outside,
                d(CURRENT, false, false),
            ),
            (
                &halted,
                true,
                Some("2.1.0"),
                &inside,
                d(CURRENT, false, false),
            ),
            // Halted: nobody new, inside the rollout or not.
            (
                &halted,
                true,
                Some("1.0.0"),
                &inside,
                d(PREVIOUS, false, false),
            ),
            (
                &halted,
                false,
                Some("1.0.0"),
                &inside,
                d(None, false, false),
            ),
            // Below the minimum: in the rollout, marked required; a halt still holds.
            (
                &required,
                true,
                Some("1.0.0"),
                &outside,
                d(CURRENT, false, true),
            ),
            (
                &required,
                true,
                Some("1.5.0"),
                &outside,
                d(PREVIOUS, true, false),
            ),
            (
                &required,
                true,
                Some("1.5.0-rc.1"),
                &outside,
                d(CURRENT, false, true),
            ),
            (
                &halted_required,
                true,
                Some("1.0.0"),
                &inside,
                d(PREVIOUS, false, true),
            ),
            // A download link (no client version): a new user.
            (&staged, true, None, &inside, d(CURRENT, true, false)),
            (&staged, true, None, &outside, d(PREVIOUS, true, false)),
            (&halted, true, None, &inside, d(PREVIOUS, false, false)),
            (&required, true, None, &outside, d(PREVIOUS, true, false)),
        ];
        for (p, previous, client, id, want) in cases {
            assert_eq!(
                offer(p, previous, client, id),
                want,
                "{p:?} previous={previous} client={client:?} id={id}"
            );
        }
        // 0%: everyone left out gets the previous release; nobody new gets the current.
        let zero = policy(0, false, None);
        for i in 0..200 {
            let id = format!("c{i}");
            assert_eq!(offer(&zero, true, Some("1.0.0"), &id).offer, PREVIOUS);
        }
    }

    #[test]
    fn candidates_walk_back_over_yanks() {
        let listed: Vec<Version> = ["1.0.0", "1.1.0", "1.2.0-beta.1", "1.2.0", "1.3.0", "1.4.0"]
            .iter()
            .map(|s| v(s))
            .collect();
        let names = |found: Vec<Version>| found.iter().map(Version::to_string).collect::<Vec<_>>();
        let mut p = ChannelPolicy::default();
        assert_eq!(
            names(candidates(&p, &v("1.4.0"), &listed, 3)),
            ["1.4.0", "1.3.0", "1.2.0"]
        );
        // `releases/latest/` rolled back to 1.3.0: 1.4.0 is not the channel's any more.
        assert_eq!(
            names(candidates(&p, &v("1.3.0"), &listed, 64)),
            ["1.3.0", "1.2.0", "1.2.0-beta.1", "1.1.0", "1.0.0"]
        );
        // Served but not listed yet (a listing older than the publish): still first.
        assert_eq!(
            names(candidates(&p, &v("1.5.0"), &listed, 2)),
            ["1.5.0", "1.4.0"]
        );
        p.yanked.insert(v("1.4.0"), "broken".into());
        p.yanked.insert(v("1.2.0"), "broken too".into());
        assert_eq!(
            names(candidates(&p, &v("1.4.0"), &listed, 3)),
            ["1.3.0", "1.2.0-beta.1", "1.1.0"]
        );
        let everything = ChannelPolicy {
            yanked: listed.iter().map(|v| (v.clone(), String::new())).collect(),
            ..ChannelPolicy::default()
        };
        assert!(candidates(&everything, &v("1.4.0"), &listed, 64).is_empty());
    }
}
