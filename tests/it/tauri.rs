//! A real Tauri-protocol client (cargo-packager-updater) against the JSON feed, with minisign signatures.
