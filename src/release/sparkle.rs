//! Sparkle appcasts (`appcast.xml`, as Sparkle's `generate_appcast` writes it): RSS 2.0 items
//! with the `sparkle:` namespace, read as Sparkle's `SUAppcast` reads them, and rendered with
//! every enclosure URL absolute under `/releases/v{version}/`, items left out and
//! `sparkle:criticalUpdate` written by a release policy.
//!
//! Rendering edits the appcast's own bytes: everything release-edge does not change (comments,
//! other namespaces, formatting, localized notes) is served as the appcast had it. An appcast
//! signed as a whole (the `<!-- sparkle-signatures: ... -->` block Sparkle's
//! `generate_appcast`/`sign_update` append after `</rss>`) is never edited: any changed byte
//! would fail Sparkle's feed verification.

use std::ops::Range;

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use semver::Version;

use super::{absolute_artifact_url, body_etag, parse_version};

/// Sparkle's namespace URI (matched exactly, `http://`, as `SUAppcast` does; the prefix does
/// not matter).
pub const SPARKLE_NS: &str = "http://www.andymatuschak.org/xml-namespaces/sparkle";

/// What starts the feed signature block Sparkle appends after `</rss>`.
const SIGNATURE_BLOCK: &str = "<!-- sparkle-signatures:";

/// The file name of a channel's appcast under `releases/latest/`: `appcast.xml` for
/// `latest`, `appcast-{channel}.xml` for the others.
pub fn file_name(channel: &super::channel::Channel) -> String {
    if channel.is_latest() {
        "appcast.xml".into()
    } else {
        format!("appcast-{channel}.xml")
    }
}

/// The channel an appcast file name serves (`appcast.xml` → `latest`).
pub fn channel_of_file(name: &str) -> Option<super::channel::Channel> {
    if name == "appcast.xml" {
        return Some(super::channel::Channel::latest());
    }
    let channel = name.strip_prefix("appcast-")?.strip_suffix(".xml")?;
    super::channel::Channel::parse(channel).ok()
}

/// An enclosure (the item's download, or one of its `sparkle:deltas`), as `SUAppcastItem`
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enclosure {
    /// `url`, as served (absolute under `/releases/` when the item has a version).
    pub url: String,
    /// `length`.
    pub length: Option<u64>,
    /// `type`.
    pub mime_type: Option<String>,
    /// `sparkle:edSignature`.
    pub ed_signature: Option<String>,
    /// `sparkle:deltaFrom` (deltas only): the `sparkle:version` it upgrades from.
    pub delta_from: Option<String>,
    /// `sparkle:version` on the enclosure (older appcasts put it here).
    pub version: Option<String>,
    /// `sparkle:shortVersionString` on the enclosure.
    pub short_version: Option<String>,
    /// `sparkle:os`.
    pub os: Option<String>,
    /// `sparkle:installationType`.
    pub installation_type: Option<String>,
}

/// `sparkle:criticalUpdate`: the update is critical for clients below `version` (every
/// client when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Critical {
    /// `sparkle:version` of the element.
    pub version: Option<String>,
}

/// One `<item>`, as `SUAppcastItem` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppcastItem {
    /// The release the item is, for the policy: its `shortVersionString`, else its
    /// `sparkle:version`, read as semver (`1.2` is 1.2.0); `None` when neither is (the item is
    /// then served as it is, outside the policy).
    pub version: Option<Version>,
    /// `versionString`: `sparkle:version` (the enclosure's attribute first, as Sparkle).
    pub build: Option<String>,
    /// `displayVersionString`'s source: `sparkle:shortVersionString` (enclosure first).
    pub short_version: Option<String>,
    /// `<title>`.
    pub title: Option<String>,
    /// `<pubDate>`.
    pub pub_date: Option<String>,
    /// `sparkle:minimumSystemVersion`.
    pub minimum_system_version: Option<String>,
    /// `sparkle:phasedRolloutInterval`, seconds.
    pub phased_rollout_interval: Option<i64>,
    /// `sparkle:channel`.
    pub channel: Option<String>,
    /// `sparkle:criticalUpdate` (or the legacy `<sparkle:tags><sparkle:criticalUpdate/>`).
    pub critical: Option<Critical>,
    /// `<description>` text.
    pub description: Option<String>,
    /// The item's download.
    pub enclosure: Option<Enclosure>,
    /// `sparkle:deltas`.
    pub deltas: Vec<Enclosure>,
    /// Where the item is in the appcast.
    span: Range<usize>,
    /// Where its `</item>` starts (what a policy adds goes before it).
    close_at: usize,
    /// Byte edits that make its URLs absolute.
    edits: Vec<(Range<usize>, String)>,
    /// `sparkle:criticalUpdate` elements (replaced by a policy's).
    critical_spans: Vec<Range<usize>>,
    /// `<description>` and release-notes links (replaced by a policy's notes).
    notes_spans: Vec<Range<usize>>,
}

/// A parsed appcast.
#[derive(Debug, Clone)]
pub struct Appcast {
    /// The bytes as stored.
    source: Bytes,
    /// Signed as a whole (`sparkle-signatures`): served byte for byte, never edited.
    pub signed: bool,
    /// Every `/rss/channel/item`, in order.
    pub items: Vec<AppcastItem>,
    /// The prefix the appcast binds to Sparkle's namespace (`None`: it binds none).
    prefix: Option<String>,
    /// The newest item's version.
    pub newest: Option<Version>,
    /// Every item, URLs absolute (the source itself when signed).
    pub rendered: Bytes,
    /// Strong ETag of `rendered`.
    pub etag: String,
}

/// What a release policy changes in an item.
#[derive(Debug, Clone, Copy, Default)]
pub struct ItemChange<'a> {
    /// Write `<sparkle:criticalUpdate sparkle:version="..."/>` (replacing the item's own,
    /// unless the item is critical for everyone already).
    pub critical_below: Option<&'a str>,
    /// Replace the release notes (`<description>`, release-notes links) with this text.
    pub notes: Option<&'a str>,
}

/// A version as Sparkle apps write them, read as semver: `1.2.3`, `v1.2.3`, and the short
/// forms `1.2` and `1` (as 1.2.0 and 1.0.0).
pub fn loose_version(text: &str) -> Option<Version> {
    let text = text.trim();
    if let Some(version) = parse_version(text) {
        return Some(version);
    }
    let text = text.strip_prefix('v').unwrap_or(text);
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let number = |i: usize| parts.get(i).map_or(Some(0), |p| p.parse::<u64>().ok());
    Some(Version::new(number(0)?, number(1)?, number(2)?))
}

/// XML text with the predefined entities and character references resolved, CDATA
/// sections unwrapped; `None` for a reference it does not know.
fn xml_text(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>")?;
            out.push_str(&after[..end]);
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix('&') {
            let end = after.find(';')?;
            let name = &after[..end];
            let c = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let code = match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => name.strip_prefix('#')?.parse().ok()?,
                    };
                    char::from_u32(code)?
                }
            };
            out.push(c);
            rest = &after[end + 1..];
        } else {
            let next = rest.find(['&', '<']).unwrap_or(rest.len()).max(1);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    Some(out)
}

/// `text` escaped for an attribute value in double quotes.
fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The name Sparkle gives a node: `sparkle:{local}` in Sparkle's namespace (whatever the
/// prefix), else the qualified name as written (`SUAppcast`'s `sparkleNamespacedNameOfNode`).
fn sparkle_name(resolved: &ResolveResult, qname: &[u8], local: &[u8]) -> String {
    if is_sparkle(resolved) {
        format!("sparkle:{}", String::from_utf8_lossy(local))
    } else {
        String::from_utf8_lossy(qname).into_owned()
    }
}

fn is_sparkle(resolved: &ResolveResult) -> bool {
    matches!(resolved, ResolveResult::Bound(Namespace(ns)) if *ns == SPARKLE_NS.as_bytes())
}

/// An element's attributes by Sparkle's names, unescaped, with their raw forms (for
/// rewriting the tag).
struct Tag {
    /// `(sparkle name, value, raw key, raw value)`.
    attributes: Vec<(String, String, String, String)>,
    /// The qualified name as written.
    qname: String,
    span: Range<usize>,
    empty: bool,
}

impl Tag {
    fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, v, ..)| v.as_str())
    }

    /// The tag again, with `url` set to `url` and every other attribute as it was.
    fn with_url(&self, url: &str) -> String {
        let mut out = format!("<{}", self.qname);
        for (name, _, key, raw) in &self.attributes {
            let value = if name == "url" {
                escape_attribute(url)
            } else {
                raw.replace('"', "&quot;")
            };
            out.push_str(&format!(" {key}=\"{value}\""));
        }
        out.push_str(if self.empty { " />" } else { ">" });
        out
    }

    fn enclosure(&self) -> Enclosure {
        let text = |name: &str| self.get(name).map(str::to_owned);
        Enclosure {
            url: text("url").unwrap_or_default(),
            length: self.get("length").and_then(|l| l.trim().parse().ok()),
            mime_type: text("type"),
            ed_signature: text("sparkle:edSignature"),
            delta_from: text("sparkle:deltaFrom"),
            version: text("sparkle:version"),
            short_version: text("sparkle:shortVersionString"),
            os: text("sparkle:os"),
            installation_type: text("sparkle:installationType"),
        }
    }
}

fn read_tag<R>(
    reader: &NsReader<R>,
    start: &BytesStart,
    span: Range<usize>,
    empty: bool,
) -> Option<Tag> {
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.ok()?;
        let key = attribute.key;
        let (resolved, local) = reader.resolver().resolve_attribute(key);
        let name = sparkle_name(&resolved, key.as_ref(), local.as_ref());
        let raw = std::str::from_utf8(&attribute.value).ok()?.to_owned();
        let value = xml_text(&raw)?;
        attributes.push((
            name,
            value,
            String::from_utf8_lossy(key.as_ref()).into_owned(),
            raw,
        ));
    }
    Some(Tag {
        attributes,
        qname: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
        span,
        empty,
    })
}

/// An item being read: its first-level children as Sparkle indexes them.
#[derive(Default)]
struct ItemBuilder {
    start: usize,
    /// First-level element name → its content (text) and span.
    texts: Vec<(String, String, Range<usize>)>,
    enclosure: Option<Tag>,
    deltas: Vec<Tag>,
    critical: Option<Critical>,
    critical_spans: Vec<Range<usize>>,
    legacy_critical: bool,
    notes_spans: Vec<Range<usize>>,
    /// `sparkle:releaseNotesLink` / `fullReleaseNotesLink`: the raw content's span and the
    /// URL it holds.
    notes_links: Vec<(Range<usize>, String)>,
}

impl ItemBuilder {
    fn text(&self, name: &str) -> Option<&str> {
        self.texts
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, t, _)| t.trim())
    }
}

/// The name of a URL's last path segment, decoded (`https://x/a/App%201.zip?x` → `App 1.zip`).
pub fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or(path);
    percent_decode_str(last).decode_utf8_lossy().into_owned()
}

impl Appcast {
    /// Parses an appcast; `None` when it is not well-formed XML with `/rss/channel`.
    pub fn parse(bytes: &[u8], public_url: &str) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let signed = text
            .rfind("</rss>")
            .is_some_and(|end| text[end..].contains(SIGNATURE_BLOCK));
        let mut reader = NsReader::from_str(text);
        let mut stack: Vec<String> = Vec::new();
        let mut items = Vec::new();
        let mut item: Option<ItemBuilder> = None;
        let mut prefix: Option<String> = None;
        let mut saw_channel = false;
        // The open first-level child of the item: (name, content start).
        let mut child: Option<(String, usize, usize)> = None;
        loop {
            let before = usize::try_from(reader.buffer_position()).ok()?;
            let (resolved, event) = reader.read_resolved_event().ok()?;
            let sparkle_ns = is_sparkle(&resolved);
            let after = usize::try_from(reader.buffer_position()).ok()?;
            match event {
                Event::Start(ref start) | Event::Empty(ref start) => {
                    let empty = matches!(event, Event::Empty(_));
                    let name = if sparkle_ns {
                        format!(
                            "sparkle:{}",
                            String::from_utf8_lossy(start.local_name().as_ref())
                        )
                    } else {
                        String::from_utf8_lossy(start.name().as_ref()).into_owned()
                    };
                    let depth = stack.len();
                    if depth == 0 && name == "rss" {
                        for attribute in start.attributes().flatten() {
                            let key = attribute.key.as_ref();
                            if attribute.value.as_ref() == SPARKLE_NS.as_bytes()
                                && let Some(p) = key.strip_prefix(b"xmlns:")
                            {
                                prefix = Some(String::from_utf8_lossy(p).into_owned());
                            }
                        }
                    }
                    if depth == 1 && name == "channel" && stack[0] == "rss" {
                        saw_channel = true;
                    }
                    let in_channel = stack.len() >= 2 && stack[0] == "rss" && stack[1] == "channel";
                    if depth == 2 && in_channel && name == "item" {
                        item = Some(ItemBuilder {
                            start: before,
                            ..ItemBuilder::default()
                        });
                        if empty {
                            // `<item/>`: no enclosure, no info link: Sparkle refuses the feed.
                            return None;
                        }
                    } else if let Some(builder) = item.as_mut() {
                        if depth == 3 {
                            match name.as_str() {
                                "enclosure" if builder.enclosure.is_none() => {
                                    builder.enclosure =
                                        Some(read_tag(&reader, start, before..after, empty)?);
                                }
                                "sparkle:criticalUpdate" => {
                                    let tag = read_tag(&reader, start, before..after, empty)?;
                                    builder.critical.get_or_insert(Critical {
                                        version: tag.get("sparkle:version").map(str::to_owned),
                                    });
                                }
                                _ => {}
                            }
                            if !empty {
                                child = Some((name.clone(), after, before));
                            } else if name == "sparkle:criticalUpdate" {
                                builder.critical_spans.push(before..after);
                            } else if name == "description"
                                || name == "sparkle:releaseNotesLink"
                                || name == "sparkle:fullReleaseNotesLink"
                            {
                                builder.notes_spans.push(before..after);
                            }
                        } else if depth == 4 {
                            let parent = &stack[3];
                            if parent == "sparkle:deltas" && name == "enclosure" {
                                builder.deltas.push(read_tag(
                                    &reader,
                                    start,
                                    before..after,
                                    empty,
                                )?);
                            } else if parent == "sparkle:tags" && name == "sparkle:criticalUpdate" {
                                builder.legacy_critical = true;
                            }
                        }
                    }
                    if !empty {
                        stack.push(name);
                    }
                }
                Event::End(_) => {
                    let name = stack.pop()?;
                    let depth = stack.len();
                    if depth == 3
                        && let (Some(builder), Some((open, content_start, element_start))) =
                            (item.as_mut(), child.take())
                        && open == name
                    {
                        let raw = &text[content_start..before];
                        let content = xml_text(raw).unwrap_or_else(|| raw.to_owned());
                        let whole = element_start..after;
                        if name == "sparkle:criticalUpdate" {
                            builder.critical_spans.push(whole.clone());
                        }
                        if name == "description"
                            || name == "sparkle:releaseNotesLink"
                            || name == "sparkle:fullReleaseNotesLink"
                        {
                            builder.notes_spans.push(whole.clone());
                        }
                        if name == "sparkle:releaseNotesLink"
                            || name == "sparkle:fullReleaseNotesLink"
                        {
                            builder
                                .notes_links
                                .push((content_start..before, content.trim().to_owned()));
                        }
                        builder.texts.push((name, content, whole));
                    } else if depth == 2
                        && name == "item"
                        && let Some(builder) = item.take()
                    {
                        items.push(finish(builder, before, after, public_url));
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !saw_channel || !stack.is_empty() {
            return None;
        }
        let mut appcast = Self {
            source: Bytes::copy_from_slice(bytes),
            signed,
            items,
            prefix,
            newest: None,
            rendered: Bytes::new(),
            etag: String::new(),
        };
        appcast.rendered = if signed {
            appcast.source.clone()
        } else {
            appcast.render(|_| true, |_| ItemChange::default())
        };
        appcast.etag = body_etag(&appcast.rendered);
        appcast.newest = appcast.versions().into_iter().next();
        Some(appcast)
    }

    /// The appcast with the items `keep` accepts, each changed as `change` says, every URL
    /// absolute. A signed appcast is returned as it is.
    pub fn render<'a>(
        &'a self,
        keep: impl Fn(&AppcastItem) -> bool,
        change: impl Fn(&AppcastItem) -> ItemChange<'a>,
    ) -> Bytes {
        if self.signed {
            return self.source.clone();
        }
        let source = &self.source[..];
        let mut out = Vec::with_capacity(source.len() + 512);
        let mut cursor = 0;
        for item in &self.items {
            out.extend_from_slice(&source[cursor..item.span.start]);
            cursor = item.span.end;
            if keep(item) {
                self.render_item(item, change(item), &mut out);
            }
        }
        out.extend_from_slice(&source[cursor..]);
        Bytes::from(out)
    }

    fn render_item(&self, item: &AppcastItem, change: ItemChange, out: &mut Vec<u8>) {
        let mut edits: Vec<(Range<usize>, String)> = item.edits.clone();
        let sparkle = self.prefix.as_deref();
        let element = |local: &str| match sparkle {
            Some(p) => (format!("{p}:{local}"), String::new()),
            None => (
                format!("sparkle:{local}"),
                format!(" xmlns:sparkle=\"{SPARKLE_NS}\""),
            ),
        };
        let mut added = String::new();
        if let Some(below) = change.critical_below {
            let unconditional = item.critical.as_ref().is_some_and(|c| c.version.is_none());
            if !unconditional {
                for span in &item.critical_spans {
                    edits.push((span.clone(), String::new()));
                }
                let (name, declare) = element("criticalUpdate");
                let version = match sparkle {
                    Some(p) => format!("{p}:version"),
                    None => "sparkle:version".into(),
                };
                added.push_str(&format!(
                    "<{name}{declare} {version}=\"{}\" />",
                    escape_attribute(below)
                ));
            }
        }
        if let Some(notes) = change.notes {
            for span in &item.notes_spans {
                edits.push((span.clone(), String::new()));
            }
            let (format_attr, declare) = match sparkle {
                Some(p) => (format!("{p}:format"), String::new()),
                None => (
                    "sparkle:format".to_owned(),
                    format!(" xmlns:sparkle=\"{SPARKLE_NS}\""),
                ),
            };
            let cdata = notes.replace("]]>", "]]]]><![CDATA[>");
            added.push_str(&format!(
                "<description{declare} {format_attr}=\"plain-text\"><![CDATA[{cdata}]]></description>"
            ));
        }
        if !added.is_empty() {
            edits.push((item.close_at..item.close_at, added));
        }
        edits.sort_by_key(|(range, _)| (range.start, range.end));
        let source = &self.source[..];
        let mut cursor = item.span.start;
        for (range, replacement) in edits {
            if range.start < cursor {
                continue;
            }
            out.extend_from_slice(&source[cursor..range.start]);
            out.extend_from_slice(replacement.as_bytes());
            cursor = range.end;
        }
        out.extend_from_slice(&source[cursor..item.span.end]);
    }

    /// The items' versions, every one that has one.
    pub fn versions(&self) -> Vec<Version> {
        let mut versions: Vec<Version> = self
            .items
            .iter()
            .filter_map(|i| i.version.clone())
            .collect();
        versions.sort_by(|a, b| b.cmp(a));
        versions.dedup();
        versions
    }

    /// The `sparkle:version` that `sparkle:criticalUpdate` must name for "clients below
    /// `minimum`": Sparkle compares it with the app's own `CFBundleVersion`. The build of the
    /// item that is `minimum`; else, when the items' builds are their versions, `minimum`
    /// itself; else the build of the oldest item above `minimum`.
    pub fn critical_build(&self, minimum: &Version) -> Option<String> {
        let with_build = || {
            self.items
                .iter()
                .filter(|i| i.version.is_some() && i.build.is_some())
        };
        if let Some(item) = with_build().find(|i| i.version.as_ref() == Some(minimum)) {
            return item.build.clone();
        }
        let builds_are_versions = with_build()
            .all(|i| i.build.as_deref().and_then(loose_version).as_ref() == i.version.as_ref());
        if builds_are_versions {
            return Some(minimum.to_string());
        }
        with_build()
            .filter(|i| i.version.as_ref().is_some_and(|v| v > minimum))
            .min_by(|a, b| a.version.cmp(&b.version))
            .and_then(|i| i.build.clone())
    }
}

/// An item from what was read of it.
fn finish(builder: ItemBuilder, close_at: usize, end: usize, public_url: &str) -> AppcastItem {
    let enclosure = builder.enclosure.as_ref().map(Tag::enclosure);
    let build = enclosure
        .as_ref()
        .and_then(|e| e.version.clone())
        .or_else(|| builder.text("sparkle:version").map(str::to_owned));
    let short_version = enclosure
        .as_ref()
        .and_then(|e| e.short_version.clone())
        .or_else(|| {
            builder
                .text("sparkle:shortVersionString")
                .map(str::to_owned)
        });
    let version = short_version
        .as_deref()
        .and_then(loose_version)
        .or_else(|| build.as_deref().and_then(loose_version));
    let mut edits = Vec::new();
    // Every download under `/releases/v{version}/`: relative URLs would resolve against the
    // feed URL, foreign ones bypass the store (SPEC §2.6).
    let rewrite = |tag: &Tag, edits: &mut Vec<(Range<usize>, String)>| -> Enclosure {
        let mut enclosure = tag.enclosure();
        if let (Some(version), Some(url)) = (&version, tag.get("url")) {
            let absolute =
                absolute_artifact_url(public_url, &version.to_string(), &url_file_name(url));
            edits.push((tag.span.clone(), tag.with_url(&absolute)));
            enclosure.url = absolute;
        }
        enclosure
    };
    let enclosure = builder
        .enclosure
        .as_ref()
        .map(|tag| rewrite(tag, &mut edits));
    let deltas = builder
        .deltas
        .iter()
        .map(|tag| rewrite(tag, &mut edits))
        .collect();
    // A relative release-notes link (`generate_appcast` puts `{archive}.html` beside the
    // archive) would resolve against the feed URL too: it goes beside the archive, under
    // `/releases/v{version}/`. An absolute one is a web page, left as it is.
    if let Some(version) = &version {
        for (span, url) in &builder.notes_links {
            if !url.contains("://") && !url.starts_with('/') && !url.is_empty() {
                let absolute =
                    absolute_artifact_url(public_url, &version.to_string(), &url_file_name(url));
                edits.push((span.clone(), escape_attribute(&absolute)));
            }
        }
    }
    let critical = builder.critical.clone().or_else(|| {
        builder
            .legacy_critical
            .then_some(Critical { version: None })
    });
    AppcastItem {
        version,
        build,
        short_version,
        title: builder.text("title").map(str::to_owned),
        pub_date: builder.text("pubDate").map(str::to_owned),
        minimum_system_version: builder
            .text("sparkle:minimumSystemVersion")
            .map(str::to_owned),
        phased_rollout_interval: builder
            .text("sparkle:phasedRolloutInterval")
            .and_then(|t| t.parse().ok()),
        channel: builder.text("sparkle:channel").map(str::to_owned),
        critical,
        description: builder.text("description").map(str::to_owned),
        enclosure,
        deltas,
        span: builder.start..end,
        close_at,
        edits,
        critical_spans: builder.critical_spans,
        notes_spans: builder.notes_spans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPCAST: &str = include_str!("../../tests/fixtures/sparkle/appcast.xml");
    const SIGNED: &str = include_str!("../../tests/fixtures/sparkle/appcast-signed.xml");
    const NAMESPACES: &str = include_str!("../../tests/fixtures/sparkle/namespaces.xml");
    const URL: &str = "https://dl.example.com";

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn enclosure(url: &str, length: u64, signature: &str) -> Enclosure {
        Enclosure {
            url: url.into(),
            length: Some(length),
            mime_type: Some("application/octet-stream".into()),
            ed_signature: Some(signature.into()),
            delta_from: None,
            version: None,
            short_version: None,
            os: None,
            installation_type: None,
        }
    }

    #[test]
    fn reads_what_sparkle_reads_item_by_item() {
        let appcast = Appcast::parse(APPCAST.as_bytes(), URL).unwrap();
        assert!(!appcast.signed);
        let items = &appcast.items;
        assert_eq!(items.len(), 4);

        let i = &items[0];
        assert_eq!(i.version, Some(v("1.4.0")));
        assert_eq!(i.build.as_deref(), Some("140"));
        assert_eq!(i.short_version.as_deref(), Some("1.4.0"));
        assert_eq!(i.title.as_deref(), Some("1.4.0"));
        assert_eq!(
            i.pub_date.as_deref(),
            Some("Mon, 02 Nov 2026 10:00:00 +0000")
        );
        assert_eq!(i.minimum_system_version.as_deref(), Some("12.0"));
        assert_eq!(i.phased_rollout_interval, Some(86400));
        assert_eq!(i.channel, None);
        assert_eq!(i.critical, None);
        assert_eq!(
            i.description.as_deref(),
            Some("# 1.4.0\n* Faster sync & fewer <crashes>")
        );
        assert_eq!(
            i.enclosure,
            Some(enclosure(
                "https://dl.example.com/releases/v1.4.0/Sample%20App%201.4.0.zip",
                3214,
                "c2lnLTEuNC4wLXppcA=="
            ))
        );
        assert_eq!(i.deltas.len(), 2);
        assert_eq!(
            i.deltas[0],
            Enclosure {
                delta_from: Some("130".into()),
                ..enclosure(
                    "https://dl.example.com/releases/v1.4.0/Sample%20App140-130.delta",
                    211,
                    "c2lnLTE0MC0xMzA="
                )
            }
        );
        // A foreign URL (GitHub's download host) is moved under /releases/ too.
        assert_eq!(
            i.deltas[1].url,
            "https://dl.example.com/releases/v1.4.0/Sample%20App140-120.delta"
        );
        assert_eq!(i.deltas[1].delta_from.as_deref(), Some("120"));
        assert_eq!(i.deltas[1].length, Some(377));

        let i = &items[1];
        assert_eq!(
            (i.version.clone(), i.build.as_deref()),
            (Some(v("1.3.0")), Some("130"))
        );
        assert_eq!(
            i.critical,
            Some(Critical {
                version: Some("110".into())
            })
        );
        assert_eq!(
            i.enclosure.as_ref().unwrap().url,
            "https://dl.example.com/releases/v1.3.0/Sample%20App%201.3.0.zip"
        );
        assert_eq!(i.phased_rollout_interval, None);

        let i = &items[2];
        assert_eq!(i.version, Some(v("1.3.0-beta.1")));
        assert_eq!(i.channel.as_deref(), Some("beta"));
        let e = i.enclosure.as_ref().unwrap();
        assert_eq!(
            e.mime_type.as_deref(),
            Some("application/x-apple-diskimage")
        );
        assert_eq!(
            e.url,
            "https://dl.example.com/releases/v1.3.0-beta.1/Sample-1.3.0-beta.1.dmg"
        );

        // `1.2` is version 1.2.0; the space Sparkle forgives is encoded.
        let i = &items[3];
        assert_eq!(
            (i.version.clone(), i.short_version.as_deref()),
            (Some(v("1.2.0")), Some("1.2"))
        );
        let e = i.enclosure.as_ref().unwrap();
        assert_eq!(
            e.url,
            "https://dl.example.com/releases/v1.2.0/Sample%20App%201.2.zip"
        );
        assert_eq!(e.installation_type.as_deref(), Some("application"));

        assert_eq!(appcast.newest, Some(v("1.4.0")));
        assert_eq!(
            appcast.versions(),
            [v("1.4.0"), v("1.3.0"), v("1.3.0-beta.1"), v("1.2.0")]
        );
    }

    #[test]
    fn rendering_changes_only_urls_and_parses_back_the_same() {
        let appcast = Appcast::parse(APPCAST.as_bytes(), URL).unwrap();
        let text = std::str::from_utf8(&appcast.rendered).unwrap();
        // A relative release-notes link goes beside the archive.
        assert!(text.contains(
            "<sparkle:releaseNotesLink>https://dl.example.com/releases/v1.3.0/1.3.0.html</sparkle:releaseNotesLink>"
        ), "{text}");
        // Everything else byte for byte: comments, CDATA, the declaration.
        assert!(text.starts_with("<?xml version=\"1.0\" standalone=\"yes\"?>\n<rss"));
        assert!(text.contains("<!-- Written in the shape of Sparkle's generate_appcast output"));
        assert!(text.contains("<![CDATA[# 1.4.0\n* Faster sync & fewer <crashes>]]>"));
        assert!(!text.contains("url=\"Sample"), "{text}");
        assert!(!text.contains("downloads.example.com"));
        assert!(!text.contains("github.com"));
        // What a client reads from the rendered appcast is what was read from the stored one.
        let again = Appcast::parse(&appcast.rendered, URL).unwrap();
        assert_eq!(again.items.len(), 4);
        for (a, b) in appcast.items.iter().zip(&again.items) {
            assert_eq!(
                (
                    &a.version,
                    &a.build,
                    &a.enclosure,
                    &a.deltas,
                    &a.critical,
                    &a.description
                ),
                (
                    &b.version,
                    &b.build,
                    &b.enclosure,
                    &b.deltas,
                    &b.critical,
                    &b.description
                )
            );
        }
    }

    #[test]
    fn a_policy_leaves_items_out_and_writes_critical_updates_and_notes() {
        let appcast = Appcast::parse(APPCAST.as_bytes(), URL).unwrap();
        let minimum = v("1.3.0");
        let below = appcast.critical_build(&minimum).unwrap();
        assert_eq!(below, "130");
        let body = appcast.render(
            |item| item.version.as_ref() != Some(&v("1.4.0")),
            |item| ItemChange {
                critical_below: item
                    .version
                    .as_ref()
                    .filter(|version| **version >= minimum)
                    .map(|_| below.as_str()),
                notes: (item.version == Some(v("1.2.0")))
                    .then_some("Fixed: <none> & more ]]> done"),
            },
        );
        let read = Appcast::parse(&body, URL).unwrap();
        let versions: Vec<_> = read
            .items
            .iter()
            .map(|i| i.version.clone().unwrap())
            .collect();
        assert_eq!(versions, [v("1.3.0"), v("1.3.0-beta.1"), v("1.2.0")]);
        // The item's own criticalUpdate (below 110) is replaced by the policy's (below 130).
        assert_eq!(
            read.items[0].critical,
            Some(Critical {
                version: Some("130".into())
            })
        );
        assert_eq!(
            std::str::from_utf8(&body)
                .unwrap()
                .matches("criticalUpdate")
                .count(),
            1
        );
        assert_eq!(read.items[1].critical, None);
        assert_eq!(
            read.items[2].description.as_deref(),
            Some("Fixed: <none> & more ]]> done")
        );
        // Notes replaced on 1.2.0 only: 1.3.0 keeps its release-notes link.
        assert!(
            std::str::from_utf8(&body)
                .unwrap()
                .contains("https://dl.example.com/releases/v1.3.0/1.3.0.html</sparkle:")
        );
    }

    #[test]
    fn a_signed_appcast_is_served_byte_for_byte() {
        let appcast = Appcast::parse(SIGNED.as_bytes(), URL).unwrap();
        assert!(appcast.signed);
        assert_eq!(appcast.rendered, SIGNED.as_bytes());
        let body = appcast.render(|_| false, |_| ItemChange::default());
        assert_eq!(body, SIGNED.as_bytes());
        // Its items are still read (for the inventory and the update-check metric).
        assert_eq!(appcast.newest, Some(v("1.4.0")));
    }

    #[test]
    fn other_prefixes_enclosure_versions_and_the_legacy_critical_tag() {
        let appcast = Appcast::parse(NAMESPACES.as_bytes(), URL).unwrap();
        let [three, two] = &appcast.items[..] else {
            panic!("two items")
        };
        assert_eq!(three.build.as_deref(), Some("3.0"));
        assert_eq!(three.short_version.as_deref(), Some("3.0 (final)"));
        // "3.0 (final)" is not a version: the build is.
        assert_eq!(three.version, Some(v("3.0.0")));
        assert_eq!(three.critical, Some(Critical { version: None }));
        assert_eq!(
            three.enclosure.as_ref().unwrap().url,
            "https://dl.example.com/releases/v3.0.0/Sparkle_Test_App_3.0.zip"
        );
        assert_eq!(two.description.as_deref(), Some("desc & more"));
        assert_eq!(two.critical, None);
        // A required update written with the appcast's own prefix; an item critical for
        // everyone stays so.
        let body = appcast.render(
            |_| true,
            |_| ItemChange {
                critical_below: Some("2.0"),
                notes: None,
            },
        );
        let text = std::str::from_utf8(&body).unwrap();
        assert!(
            text.contains("<customNS:criticalUpdate customNS:version=\"2.0\" />"),
            "{text}"
        );
        let read = Appcast::parse(&body, URL).unwrap();
        assert_eq!(read.items[0].critical, Some(Critical { version: None }));
        assert_eq!(
            read.items[1].critical,
            Some(Critical {
                version: Some("2.0".into())
            })
        );
        assert_eq!(
            appcast.critical_build(&v("2.5.0")).as_deref(),
            Some("2.5.0")
        );
    }

    #[test]
    fn what_is_not_an_appcast() {
        for bad in [
            "",
            "not xml",
            "<rss><channel><item></channel></rss>",
            "<feed><entry/></feed>",
            "<rss version=\"2.0\"><channel><item/></channel></rss>",
        ] {
            assert!(Appcast::parse(bad.as_bytes(), URL).is_none(), "{bad}");
        }
        assert!(
            Appcast::parse(b"<rss><channel></channel></rss>", URL)
                .is_some_and(|a| a.items.is_empty())
        );
        assert_eq!(loose_version("1.2"), Some(v("1.2.0")));
        assert_eq!(loose_version("7"), Some(v("7.0.0")));
        assert_eq!(loose_version("v2.0.1-rc.1"), Some(v("2.0.1-rc.1")));
        assert_eq!(loose_version("1.2.3.4"), None);
        assert_eq!(loose_version("241a"), None);
        assert_eq!(channel_of_file("appcast.xml").unwrap().as_str(), "latest");
        assert_eq!(
            channel_of_file("appcast-beta.xml").unwrap().as_str(),
            "beta"
        );
        assert_eq!(channel_of_file("appcast-Beta.xml"), None);
        assert_eq!(
            file_name(&super::super::channel::Channel::parse("beta").unwrap()),
            "appcast-beta.xml"
        );
    }
}
