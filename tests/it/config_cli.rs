//! The binary's configuration surface: `check-config`, refusals that name the key, and the
//! README's run command on the embedded default.

use std::process::Command;

use crate::support::{BinaryServer, Fixture};

fn release_edge(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_release-edge"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_masked() {
    let fx = Fixture::new();
    let output = release_edge(fx.root())
        .args(["check-config"])
        .env("RELEASE_EDGE_STORE__ROOT", fx.root())
        .env("RELEASE_EDGE_CACHE__MANIFEST_MAX_AGE", "42")
        .env("RELEASE_EDGE_ADMIN_TOKENS", "s3cr3t-token")
        .env("GITHUB_TOKEN", "ghp_shouldnotprint")
        .output()
        .expect("run check-config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("manifest_max_age = 42"), "{stdout}");
    assert!(stdout.contains(&format!("root = \"{}\"", fx.root().display())));
    assert!(stdout.contains("admin_tokens: <1 set>"));
    assert!(stdout.contains("github_token: <set>"));
    assert!(!stdout.contains("s3cr3t-token") && !stdout.contains("ghp_shouldnotprint"));
}

#[test]
fn bad_config_is_refused_at_start_naming_the_key() {
    let fx = Fixture::new();
    std::fs::write(
        fx.root().join("bad.toml"),
        "listen = \"127.0.0.1:0\"\n[cache]\nmanifest_tll = \"60s\"\n",
    )
    .expect("write");
    for args in [
        vec!["serve", "--config", "bad.toml"],
        vec!["check-config", "--config", "bad.toml"],
    ] {
        let output = release_edge(fx.root())
            .args(&args)
            .output()
            .expect("run release-edge");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("manifest_tll"), "{stderr}");
    }
    let output = release_edge(fx.root())
        .args(["check-config"])
        .env("RELEASE_EDGE_STORE__ROOT", fx.root())
        .env("RELEASE_EDGE_SERVER__IDLE_TIMEOUT", "forever")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.to_lowercase().contains("server.idle_timeout"),
        "{stderr}"
    );
}

/// The README's run command serves the sample releases from the repository.
#[tokio::test]
async fn default_config_serves_the_sample_releases() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut server = BinaryServer::spawn(repo, &[("RELEASE_EDGE_STORE__ROOT", "samples")]);
    let client = reqwest::Client::new();
    let manifest = client
        .get(server.url("/releases/latest/latest.yml"))
        .send()
        .await
        .expect("GET latest.yml");
    assert_eq!(manifest.status(), 200);
    let text = manifest.text().await.expect("body");
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("path: "))
        .expect("path in latest.yml");
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version: "))
        .expect("version");
    let artifact = client
        .get(server.url(&format!("/releases/v{version}/{path}")))
        .send()
        .await
        .expect("GET artifact");
    assert_eq!(artifact.status(), 200);
    let bytes = artifact.bytes().await.expect("bytes");
    let on_disk = std::fs::read(repo.join(format!("samples/releases/v{version}/{path}")))
        .expect("sample file");
    assert_eq!(bytes.as_ref(), on_disk.as_slice());
    server.terminate();
    assert!(
        server
            .wait_exit(std::time::Duration::from_secs(10))
            .success()
    );
}
