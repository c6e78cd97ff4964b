//! Velopack's UpdateManager against a feed URL, for tests/it/velopack.rs: checks, and with
//! `download`, downloads and verifies the update, as a Velopack app does.
//!
//! Usage: `velopack-client ROOT BASE_URL check|download`. ROOT is an installed app laid out
//! as Velopack lays it out: `current/sq.version` (the installed package's manifest),
//! `packages/` (its packages, `.betaId` its rollout identity), `Update` (the binary that
//! applies deltas). Prints one JSON object, `{"update": UpdateInfo | null}`, the update as
//! the client read it from the feed; any failure exits 1 with the client's error.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use velopack::locator::VelopackLocatorConfig;
use velopack::sources::HttpSource;
use velopack::{UpdateCheck, UpdateManager};

fn run(root: PathBuf, base_url: &str, download: bool) -> Result<serde_json::Value, String> {
    let current = root.join("current");
    let config = VelopackLocatorConfig {
        UpdateExePath: root.join("Update"),
        PackagesDir: root.join("packages"),
        ManifestPath: current.join("sq.version"),
        CurrentBinaryDir: current,
        RootAppDir: root,
        IsPortable: true,
    };
    let manager = UpdateManager::new(HttpSource::new(base_url), None, Some(config))
        .map_err(|e| format!("UpdateManager: {e}"))?;
    let info = match manager
        .check_for_updates()
        .map_err(|e| format!("check: {e}"))?
    {
        UpdateCheck::UpdateAvailable(info) => Some(*info),
        UpdateCheck::NoUpdateAvailable | UpdateCheck::RemoteIsEmpty => None,
    };
    if download && let Some(info) = &info {
        manager
            .download_updates(info, None)
            .map_err(|e| format!("download: {e}"))?;
    }
    Ok(serde_json::json!({ "update": info }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, base_url, action] = args.as_slice() else {
        eprintln!("usage: velopack-client ROOT BASE_URL check|download");
        return ExitCode::from(2);
    };
    let download = match action.as_str() {
        "check" => false,
        "download" => true,
        other => {
            eprintln!("unknown action `{other}` (check or download)");
            return ExitCode::from(2);
        }
    };
    match run(PathBuf::from(root), base_url, download) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
