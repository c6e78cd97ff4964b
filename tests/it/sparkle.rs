//! Sparkle appcasts through the server (SPEC §2.6): `/sparkle/{channel}/appcast.xml` and
//! `/update/darwin/{a}/{v}/appcast.xml` from appcasts in the format Sparkle's
//! `generate_appcast` writes (`tests/fixtures/sparkle/`), read back item by item as Sparkle's
//! `SUAppcastItem` reads them (the reader below is the test's own, independent of the
//! server's parser); the channel's policy; a signed appcast byte for byte; `/latest` and
//! `GET /admin/releases` on a Sparkle-only store. No Sparkle client runs on Linux.

use crate::support::{Fixture, Reply, admin_releases, admin_router, entry, get, private_router};

const APPCAST: &str = include_str!("../fixtures/sparkle/appcast.xml");
const SIGNED: &str = include_str!("../fixtures/sparkle/appcast-signed.xml");

/// What `SUAppcastItem` reads from one `<item>`, as far as these tests check it.
#[derive(Debug, Default, PartialEq)]
struct Item {
    /// `sparkle:shortVersionString` (element or enclosure attribute).
    short: Option<String>,
    /// `sparkle:version` (element or enclosure attribute).
    build: Option<String>,
    /// `<sparkle:criticalUpdate>` present, with its `sparkle:version` attribute.
    critical: Option<Option<String>>,
    /// The enclosure's `url`, `length` and `sparkle:edSignature`.
    enclosure: Option<(String, String, String)>,
    /// The `sparkle:deltas` enclosures' `url` and `sparkle:deltaFrom`.
    deltas: Vec<(String, String)>,
    /// `<description>`'s text.
    description: Option<String>,
}

fn attribute(tag: &quick_xml::events::BytesStart, name: &str) -> Option<String> {
    tag.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name.as_bytes())
        .map(|a| {
            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                .expect("attribute")
                .into_owned()
        })
}

/// Reads every `/rss/channel/item` of an appcast (prefix `sparkle:`, as the fixtures bind it).
fn items(body: &[u8]) -> Vec<Item> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut items = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).expect("well-formed XML");
        let (tag, empty) = match &event {
            Event::Start(tag) => (Some(tag.clone()), false),
            Event::Empty(tag) => (Some(tag.clone()), true),
            _ => (None, false),
        };
        if let Some(tag) = tag {
            let name = String::from_utf8(tag.name().as_ref().to_vec()).expect("utf-8");
            if name == "item" && path.len() == 2 {
                items.push(Item::default());
            }
            let parent = path.last().map(String::as_str);
            if let Some(item) = items.last_mut().filter(|_| path.len() >= 3) {
                match (name.as_str(), parent) {
                    ("enclosure", Some("item")) => {
                        item.enclosure = Some((
                            attribute(&tag, "url").expect("url"),
                            attribute(&tag, "length").unwrap_or_default(),
                            attribute(&tag, "sparkle:edSignature").unwrap_or_default(),
                        ));
                        item.build = item.build.take().or(attribute(&tag, "sparkle:version"));
                        item.short = item
                            .short
                            .take()
                            .or(attribute(&tag, "sparkle:shortVersionString"));
                    }
                    ("enclosure", Some("sparkle:deltas")) => item.deltas.push((
                        attribute(&tag, "url").expect("url"),
                        attribute(&tag, "sparkle:deltaFrom").expect("deltaFrom"),
                    )),
                    ("sparkle:criticalUpdate", Some("item")) => {
                        item.critical = Some(attribute(&tag, "sparkle:version"));
                    }
                    _ => {}
                }
            }
            if !empty {
                path.push(name);
            }
            continue;
        }
        match event {
            Event::Text(_) | Event::CData(_) if path.len() == 4 => {
                let text = match &event {
                    Event::Text(t) => t.decode().expect("text").into_owned(),
                    Event::CData(c) => String::from_utf8(c.to_vec()).expect("utf-8"),
                    _ => unreachable!(),
                };
                let item = items.last_mut().expect("inside an item");
                match path[3].as_str() {
                    "sparkle:version" => item.build = Some(text),
                    "sparkle:shortVersionString" => item.short = Some(text),
                    "description" => item.description = Some(text),
                    _ => {}
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    items
}

/// The short versions of the items, in order.
fn versions(reply: &Reply) -> Vec<String> {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    items(&reply.body)
        .into_iter()
        .map(|i| i.short.expect("a shortVersionString"))
        .collect()
}

fn with_appcast(appcast: &str) -> Fixture {
    Fixture::new()
        .file("releases/latest/appcast.xml", appcast)
        .file("releases/v1.4.0/Sample App 1.4.0.zip", "zip of 1.4.0")
        .file(
            "releases/v1.4.0/Sample App140-130.delta",
            "delta 130 to 140",
        )
}

#[tokio::test]
async fn sparkle_reads_every_item_with_urls_under_releases() {
    let fx = with_appcast(APPCAST);
    let base = fx.config.public_url.clone();
    let router = fx.router();
    let reply = get(&router, "/sparkle/latest/appcast.xml", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        "application/rss+xml; charset=utf-8"
    );
    let got = items(&reply.body);
    let url = |version: &str, file: &str| format!("{base}/releases/v{version}/{file}");
    let want = vec![
        Item {
            short: Some("1.4.0".into()),
            build: Some("140".into()),
            critical: None,
            enclosure: Some((
                url("1.4.0", "Sample%20App%201.4.0.zip"),
                "3214".into(),
                "c2lnLTEuNC4wLXppcA==".into(),
            )),
            deltas: vec![
                (url("1.4.0", "Sample%20App140-130.delta"), "130".into()),
                // GitHub's download URL moved under /releases/ too.
                (url("1.4.0", "Sample%20App140-120.delta"), "120".into()),
            ],
            description: Some("# 1.4.0\n* Faster sync & fewer <crashes>".into()),
        },
        Item {
            short: Some("1.3.0".into()),
            build: Some("130".into()),
            critical: Some(Some("110".into())),
            enclosure: Some((
                url("1.3.0", "Sample%20App%201.3.0.zip"),
                "3101".into(),
                "c2lnLTEuMy4wLXppcA==".into(),
            )),
            ..Item::default()
        },
        Item {
            short: Some("1.3.0-beta.1".into()),
            build: Some("129".into()),
            enclosure: Some((
                url("1.3.0-beta.1", "Sample-1.3.0-beta.1.dmg"),
                "4400".into(),
                "c2lnLWJldGE=".into(),
            )),
            ..Item::default()
        },
        Item {
            short: Some("1.2".into()),
            build: Some("120".into()),
            enclosure: Some((
                url("1.2.0", "Sample%20App%201.2.zip"),
                "2987".into(),
                "c2lnLTEuMi16aXA=".into(),
            )),
            ..Item::default()
        },
    ];
    assert_eq!(got, want);
    // A relative release-notes link goes beside the archive (Sparkle would resolve it against
    // the feed URL).
    let notes = format!(
        "<sparkle:releaseNotesLink>{}</sparkle:releaseNotesLink>",
        url("1.3.0", "1.3.0.html")
    );
    assert!(String::from_utf8_lossy(&reply.body).contains(&notes));

    // The enclosure and the delta are ordinary /releases/ downloads.
    for (path, bytes) in [
        ("/releases/v1.4.0/Sample%20App%201.4.0.zip", "zip of 1.4.0"),
        (
            "/releases/v1.4.0/Sample%20App140-130.delta",
            "delta 130 to 140",
        ),
    ] {
        let download = get(&router, path, &[]).await;
        assert_eq!(download.status, 200, "{path}");
        assert_eq!(download.body, bytes, "{path}");
    }

    // The same appcast on the versioned URL, and a 304 on its ETag.
    let versioned = get(&router, "/update/darwin/arm64/1.2.0/appcast.xml", &[]).await;
    assert_eq!(versioned.body, reply.body);
    let etag = reply.header("etag").to_owned();
    let again = get(
        &router,
        "/sparkle/latest/appcast.xml",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    // No appcast for another channel; none for Windows.
    let beta = get(&router, "/sparkle/beta/appcast.xml", &[]).await;
    assert_eq!(beta.status, 404);
    let windows = get(&router, "/update/win32/x64/1.2.0/appcast.xml", &[]).await;
    assert_eq!(windows.status, 404);
}

#[tokio::test]
async fn the_policy_leaves_items_out_and_makes_the_update_critical() {
    let fx = with_appcast(APPCAST);
    fx.write(
        "policy/latest.json",
        r#"{"yanked": {"1.3.0": "corrupts settings"}, "minimum_version": "1.3.0"}"#,
    );
    let router = fx.router();
    let reply = get(&router, "/update/darwin/arm64/1.2.0/appcast.xml", &[]).await;
    assert_eq!(versions(&reply), ["1.4.0", "1.3.0-beta.1", "1.2"]);
    assert_eq!(reply.header("x-update-required"), "true");
    let got = items(&reply.body);
    // Apps below 1.3.0 (build 130) must take 1.4.0.
    assert_eq!(got[0].critical, Some(Some("130".into())));
    assert_eq!(got[1].critical, None);
    assert_eq!(got[2].critical, None);
    // A client at the minimum is not required to update.
    let current = get(&router, "/update/darwin/arm64/1.3.0/appcast.xml", &[]).await;
    assert!(current.headers.get("x-update-required").is_none());

    // Halted: 1.4.0 is left out for everyone who does not run it.
    fx.write("policy/latest.json", r#"{"rollout": {"halted": true}}"#);
    let router = fx.router();
    let reply = get(&router, "/sparkle/latest/appcast.xml", &[]).await;
    assert_eq!(versions(&reply), ["1.3.0", "1.3.0-beta.1", "1.2"]);

    // Staged at 0 %: nobody new gets 1.4.0; at 100 % everybody does.
    for (percentage, newest) in [(0, "1.3.0"), (100, "1.4.0")] {
        fx.write(
            "policy/latest.json",
            format!(r#"{{"rollout": {{"percentage": {percentage}}}}}"#),
        );
        let reply = get(&fx.router(), "/sparkle/latest/appcast.xml?id=some-mac", &[]).await;
        assert_eq!(versions(&reply)[0], newest, "{percentage} %");
    }
}

#[tokio::test]
async fn a_signed_appcast_is_served_byte_for_byte() {
    let fx = with_appcast(SIGNED);
    fx.write(
        "policy/latest.json",
        r#"{"yanked": {"1.3.0": "broken"}, "minimum_version": "1.3.0"}"#,
    );
    let router = fx.router();
    for path in [
        "/sparkle/latest/appcast.xml",
        "/update/darwin/x64/1.2.0/appcast.xml",
    ] {
        let reply = get(&router, path, &[]).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.body,
            SIGNED.as_bytes(),
            "{path}: not one byte changed"
        );
    }
    // What the feed cannot say, the header still does.
    let reply = get(&router, "/update/darwin/x64/1.2.0/appcast.xml", &[]).await;
    assert_eq!(reply.header("x-update-required"), "true");
}

/// An appcast of `.dmg` releases, newest first, as `generate_appcast` writes it.
fn dmg_appcast(versions: &[&str]) -> String {
    let items: String = versions
        .iter()
        .map(|v| {
            format!(
                "<item><title>{v}</title><sparkle:version>{}</sparkle:version>\
                 <sparkle:shortVersionString>{v}</sparkle:shortVersionString>\
                 <enclosure url=\"Sample-{v}.dmg\" length=\"10\" type=\"application/x-apple-diskimage\" \
                 sparkle:edSignature=\"c2ln\"/></item>",
                v.replace('.', "")
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" standalone=\"yes\"?>\n<rss xmlns:sparkle=\"{}\" version=\"2.0\">\
         <channel><title>Sample</title>{items}</channel></rss>",
        release_edge::release::sparkle::SPARKLE_NS
    )
}

#[tokio::test]
async fn latest_and_the_admin_api_know_sparkle_releases() {
    let fx = Fixture::new()
        .file(
            "releases/latest/appcast.xml",
            dmg_appcast(&["2.0.0", "1.9.0"]),
        )
        .file("releases/v2.0.0/Sample-2.0.0.dmg", "dmg 2.0.0")
        .file("releases/v1.9.0/Sample-1.9.0.dmg", "dmg 1.9.0");
    let base = fx.config.public_url.clone();
    let (router, auth) = admin_router(&fx);
    let reply = get(&router, "/latest/mac", &[]).await;
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.header("location"),
        format!("{base}/releases/v2.0.0/Sample-2.0.0.dmg")
    );
    let zip = get(&router, "/latest/mac?format=zip", &[]).await;
    assert_eq!(zip.status, 404);

    let body = admin_releases(&router, &auth).await;
    let latest = entry(&body["channels"], "channel", "latest");
    assert_eq!(
        latest["serves"],
        serde_json::json!({"appcast.xml": "2.0.0"})
    );
    assert_eq!(latest["current"], "2.0.0");
    assert_eq!(latest["previous"], "1.9.0");
    assert_eq!(latest["versions"], serde_json::json!(["1.9.0", "2.0.0"]));
    let v2 = entry(&body["versions"], "version", "2.0.0");
    assert_eq!(v2["channels"], serde_json::json!(["latest"]));
    assert_eq!(
        v2["files"]["darwin"],
        serde_json::json!(["Sample-2.0.0.dmg"])
    );

    // Halted: a new visitor gets 1.9.0's .dmg.
    fx.write("policy/latest.json", r#"{"rollout": {"halted": true}}"#);
    let router = fx.router();
    let reply = get(&router, "/latest/mac", &[]).await;
    assert_eq!(
        reply.header("location"),
        format!("{base}/releases/v1.9.0/Sample-1.9.0.dmg")
    );
}

#[tokio::test]
async fn a_private_channel_s_appcast_needs_a_token_and_signs_its_urls() {
    let mut fx = Fixture::new()
        .file("releases/latest/appcast-beta.xml", dmg_appcast(&["2.0.0"]))
        .file("releases/v2.0.0/Sample-2.0.0.dmg", "dmg 2.0.0");
    let (router, token) = private_router(&mut fx, "beta");
    for path in [
        "/sparkle/beta/appcast.xml",
        "/update/darwin/arm64/1.0.0/appcast.xml?channel=beta",
    ] {
        let refused = get(&router, path, &[]).await;
        assert_eq!(refused.status, 401, "{path}");
        assert_eq!(refused.json()["error"], "token_required");
    }
    let reply = get(
        &router,
        &format!("/sparkle/beta/appcast.xml?token={token}"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("cache-control").starts_with("private"));
    let url = items(&reply.body)[0]
        .enclosure
        .clone()
        .expect("enclosure")
        .0;
    let prefix = format!(
        "{}/releases/v2.0.0/Sample-2.0.0.dmg?sig=",
        fx.config.public_url
    );
    assert!(url.starts_with(&prefix), "{url}");
    // The signed URL downloads without a token.
    let download = get(&router, &url[fx.config.public_url.len()..], &[]).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.body, "dmg 2.0.0");
}
