//! Where every version lives: in the store, on GitHub, or both, with sizes (SPEC §4
//! `release-edge status`, and the locations of `GET /admin/releases`). No database: it is
//! computed from a listing of the store's `releases/v*/` and the list of GitHub releases
//! (the origin's cached one in the server, the one `mirror` keeps in its work directory on
//! the command line). A version only on GitHub is flagged: it is served only while GitHub
//! answers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::origin::github::model::ChannelRelease;
use crate::origin::{OriginError, Origins};
use crate::release::channel::Channel;
use crate::release::channel_of;
use crate::store::{Store, StoreError};

/// Where a version lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// Only in the store.
    Store,
    /// Only on GitHub: served only while GitHub answers (`mirror` copies it).
    GitHub,
    /// In both.
    Both,
}

impl Place {
    /// `store`, `github`, `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Store => "store",
            Place::GitHub => "github",
            Place::Both => "both",
        }
    }
}

/// One origin's copy of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Files.
    pub files: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Where one version lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The version.
    #[serde(serialize_with = "as_string")]
    pub version: semver::Version,
    /// Its channel: GitHub's (a pre-release's tag), else the one its version names.
    #[serde(serialize_with = "as_string")]
    pub channel: Channel,
    /// Store, GitHub or both.
    pub place: Place,
    /// The store's copy.
    pub store: Option<Copy>,
    /// GitHub's copy.
    pub github: Option<Copy>,
    /// GitHub's files that the store lacks or holds with another size (a version in both
    /// places that `mirror` has not finished).
    pub missing_in_store: Vec<String>,
    /// Only on GitHub.
    pub github_only: bool,
}

fn as_string<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Every version of the store (name and size of each of its files) and of GitHub, newest
/// first, with where it lives.
pub fn locate(
    store: &BTreeMap<semver::Version, Vec<(String, u64)>>,
    github: &[ChannelRelease],
) -> Vec<Location> {
    type Sides<'a> = (Option<&'a Vec<(String, u64)>>, Option<&'a ChannelRelease>);
    let mut by_version: BTreeMap<semver::Version, Sides> = BTreeMap::new();
    for (version, files) in store {
        by_version.entry(version.clone()).or_default().0 = Some(files);
    }
    for release in github {
        by_version.entry(release.version.clone()).or_default().1 = Some(release);
    }
    let mut out: Vec<Location> = by_version
        .into_iter()
        .map(|(version, (in_store, on_github))| {
            let store = in_store.map(|files| Copy {
                files: files.len(),
                bytes: files.iter().map(|(_, size)| size).sum(),
            });
            let assets: Vec<_> = on_github
                .map(|r| {
                    r.release
                        .assets
                        .iter()
                        .filter(|a| a.is_complete())
                        .collect()
                })
                .unwrap_or_default();
            let github = on_github.map(|_| Copy {
                files: assets.len(),
                bytes: assets.iter().map(|a| a.size).sum(),
            });
            let missing_in_store = match in_store {
                Some(files) => assets
                    .iter()
                    .filter(|a| !files.iter().any(|(name, _)| *name == a.name))
                    .map(|a| a.name.clone())
                    .collect(),
                None => Vec::new(),
            };
            let place = match (store.is_some(), github.is_some()) {
                (true, true) => Place::Both,
                (false, true) => Place::GitHub,
                _ => Place::Store,
            };
            Location {
                channel: on_github.map_or_else(|| channel_of(&version), |r| r.channel.clone()),
                version,
                place,
                store,
                github,
                missing_in_store,
                github_only: place == Place::GitHub,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.version
            .cmp_precedence(&a.version)
            .then(b.version.cmp(&a.version))
    });
    out
}

/// The store's versions and their files: one listing of `releases/`, one of each version.
pub async fn store_versions(
    store: &Store,
) -> Result<BTreeMap<semver::Version, Vec<(String, u64)>>, StoreError> {
    let mut out = BTreeMap::new();
    for version in store.list_versions().await? {
        let files = store.list_sized(&format!("releases/v{version}")).await?;
        out.insert(version, files);
    }
    Ok(out)
}

/// Where every version lives as a server sees it (`GET /admin/releases`): a listing of the
/// store and the GitHub origin's list in memory (its newest 100 releases, revalidated as
/// `github.refresh_interval` says: no request while it is fresh). An origin that fails is
/// named in the error rather than taken for "has nothing".
pub async fn gather(origins: &Origins) -> Result<Vec<Location>, OriginError> {
    let store = match origins.store() {
        Some(store) => store_versions(store).await.map_err(OriginError::Store)?,
        None => BTreeMap::new(),
    };
    let github = match origins.github() {
        Some(github) => github.releases().await.map_err(OriginError::GitHub)?,
        None => Default::default(),
    };
    Ok(locate(&store, &github))
}

/// `1.5 MB`, `340 KB`, `12 B`: sizes for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The table `release-edge status` prints, and the line that flags GitHub-only versions.
pub fn render(locations: &[Location]) -> String {
    let copy = |c: &Option<Copy>| {
        c.map_or_else(
            || "-".to_owned(),
            |c| format!("{} files, {}", c.files, human_bytes(c.bytes)),
        )
    };
    let rows: Vec<[String; 5]> = locations
        .iter()
        .map(|l| {
            let place = match (l.place, l.missing_in_store.len()) {
                (Place::GitHub, _) => "github only (!)".to_owned(),
                (Place::Both, 0) => "both".to_owned(),
                (Place::Both, n) => format!("both (store lacks {n})"),
                (Place::Store, _) => "store".to_owned(),
            };
            [
                l.version.to_string(),
                l.channel.to_string(),
                copy(&l.store),
                copy(&l.github),
                place,
            ]
        })
        .collect();
    let header = [
        "version".to_owned(),
        "channel".into(),
        "store".into(),
        "github".into(),
        "where".into(),
    ];
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let only: Vec<String> = locations
        .iter()
        .filter(|l| l.github_only)
        .map(|l| l.version.to_string())
        .collect();
    if !only.is_empty() {
        out.push_str(&format!(
            "\n{} version(s) only on GitHub, served only while GitHub answers: {}\n\
             copy them into the store with `release-edge mirror --from-github`\n",
            only.len(),
            only.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::github::model::{servable, test_release as release};

    fn v(text: &str) -> semver::Version {
        semver::Version::parse(text).unwrap()
    }

    #[test]
    fn every_version_in_its_place() {
        let github = servable(vec![
            release(
                "v1.2.0",
                false,
                &[("latest.yml", 300), ("App-1.2.0.exe", 2_000_000)],
            ),
            release(
                "v1.3.0-beta.1",
                true,
                &[("beta.yml", 300), ("App.exe", 2_100_000)],
            ),
        ]);
        let store = BTreeMap::from([
            (
                v("1.1.0"),
                vec![
                    ("latest.yml".to_owned(), 290),
                    ("App-1.1.0.exe".into(), 1_900_000),
                ],
            ),
            (v("1.2.0"), vec![("latest.yml".to_owned(), 300)]),
        ]);
        let got = locate(&store, &github);
        let summary: Vec<(String, &str, &str, bool, usize)> = got
            .iter()
            .map(|l| {
                (
                    l.version.to_string(),
                    l.channel.as_str(),
                    l.place.as_str(),
                    l.github_only,
                    l.missing_in_store.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("1.3.0-beta.1".to_owned(), "beta", "github", true, 0),
                ("1.2.0".into(), "latest", "both", false, 1),
                ("1.1.0".into(), "latest", "store", false, 0),
            ]
        );
        assert_eq!(got[1].missing_in_store, ["App-1.2.0.exe"]);
        assert_eq!(
            got[1].github,
            Some(Copy {
                files: 2,
                bytes: 2_000_300
            })
        );
        assert_eq!(
            got[2].store,
            Some(Copy {
                files: 2,
                bytes: 1_900_290
            })
        );
        let table = render(&got);
        assert!(table.contains("1.3.0-beta.1  beta     -"), "{table}");
        assert!(table.contains("github only (!)"), "{table}");
        assert!(table.contains("both (store lacks 1)"), "{table}");
        assert!(table.contains("1 version(s) only on GitHub"), "{table}");
        let json = serde_json::to_value(&got[0]).unwrap();
        assert_eq!(json["version"], "1.3.0-beta.1");
        assert_eq!(json["place"], "github");
        assert_eq!(json["github"]["bytes"], 2_100_300);
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(340_000), "340.0 KB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }
}
