//! Platforms, architectures and installer formats: their aliases, how file names spell
//! them, and how a visitor's platform is detected from a request.

use std::fmt;

/// A desktop platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// macOS.
    Mac,
    /// Windows.
    Windows,
    /// Linux.
    Linux,
}

impl Platform {
    /// Every platform, in display order.
    pub const ALL: [Platform; 3] = [Platform::Mac, Platform::Windows, Platform::Linux];

    /// Parses the aliases of SPEC §2.2 (`darwin|mac|macos|osx`, `win32|windows|win`,
    /// `linux`), case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "darwin" | "mac" | "macos" | "osx" => Some(Platform::Mac),
            "win32" | "windows" | "win" => Some(Platform::Windows),
            "linux" => Some(Platform::Linux),
            _ => None,
        }
    }

    /// Node's `process.platform` name, used in URLs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Mac => "darwin",
            Platform::Windows => "win32",
            Platform::Linux => "linux",
        }
    }

    /// The installer a browser visitor gets by default (SPEC §2.2).
    pub fn default_installer(self) -> Format {
        match self {
            Platform::Mac => Format::Dmg,
            Platform::Windows => Format::Exe,
            Platform::Linux => Format::AppImage,
        }
    }

    /// The artifact an updater downloads (SPEC §2.3): the zip on macOS (Squirrel.Mac), the
    /// NSIS installer on Windows, the AppImage on Linux.
    pub fn update_format(self) -> Format {
        match self {
            Platform::Mac => Format::Zip,
            Platform::Windows => Format::Exe,
            Platform::Linux => Format::AppImage,
        }
    }

    /// The arch assumed for a file whose name names none: electron-builder leaves the
    /// default arch (x64) out of file names.
    pub fn default_arch(self) -> Arch {
        Arch::X64
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CPU architecture, as electron-builder names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    /// x86-64.
    X64,
    /// 64-bit ARM (Apple Silicon, Windows on ARM, Linux aarch64).
    Arm64,
    /// 32-bit x86.
    Ia32,
    /// 32-bit ARM (Raspberry Pi OS).
    Armv7l,
    /// A macOS universal binary (x64 + arm64 in one).
    Universal,
}

impl Arch {
    /// Parses the aliases of SPEC §2.2 (`x64|x86_64|amd64`, `arm64|aarch64`,
    /// `ia32|x86|i686`, `armv7l|armv7`, `universal`), case-insensitively. Tauri's
    /// `{{arch}}` values are among them.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "x64" | "x86_64" | "amd64" => Some(Arch::X64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            "ia32" | "x86" | "i686" | "i386" => Some(Arch::Ia32),
            "armv7l" | "armv7" | "armhf" => Some(Arch::Armv7l),
            "universal" => Some(Arch::Universal),
            _ => None,
        }
    }

    /// electron-builder's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X64 => "x64",
            Arch::Arm64 => "arm64",
            Arch::Ia32 => "ia32",
            Arch::Armv7l => "armv7l",
            Arch::Universal => "universal",
        }
    }

    /// Tauri's `{{arch}}` name (`darwin-aarch64` keys of its static manifest).
    pub fn tauri_name(self) -> &'static str {
        match self {
            Arch::X64 | Arch::Universal => "x86_64",
            Arch::Arm64 => "aarch64",
            Arch::Ia32 => "i686",
            Arch::Armv7l => "armv7",
        }
    }

    /// The arch a file name spells, if any (`App-1.0.0-arm64.dmg`, `app_1.0.0_amd64.deb`,
    /// `App-1.0.0-universal.dmg`, `App_1.0.0_x86_64.AppImage`).
    pub fn from_file_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        // Order matters: `x86_64` before `x86`, `armv7l` is not `arm64`.
        const SPELLINGS: &[(&str, Arch)] = &[
            ("universal", Arch::Universal),
            ("arm64", Arch::Arm64),
            ("aarch64", Arch::Arm64),
            ("armv7l", Arch::Armv7l),
            ("armv7", Arch::Armv7l),
            ("armhf", Arch::Armv7l),
            ("x86_64", Arch::X64),
            ("x86-64", Arch::X64),
            ("amd64", Arch::X64),
            ("x64", Arch::X64),
            ("ia32", Arch::Ia32),
            ("i386", Arch::Ia32),
            ("i686", Arch::Ia32),
            ("x86", Arch::Ia32),
        ];
        SPELLINGS
            .iter()
            .find(|(spelling, _)| contains_token(&lower, spelling))
            .map(|(_, arch)| *arch)
    }
}

/// `needle` in `haystack`, not glued to other letters or digits on either side
/// (`-arm64.`, `_amd64.`; not `charm64x`).
fn contains_token(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An artifact format, from the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// macOS disk image.
    Dmg,
    /// macOS zip (Squirrel.Mac's update archive) or any zip.
    Zip,
    /// macOS installer package.
    Pkg,
    /// Windows NSIS (or Squirrel) installer.
    Exe,
    /// Windows Installer package.
    Msi,
    /// Linux AppImage.
    AppImage,
    /// Debian package.
    Deb,
    /// RPM package.
    Rpm,
    /// Snap package.
    Snap,
    /// Tauri's update archive (`.app.tar.gz`, `.AppImage.tar.gz`, `.nsis.zip` is a zip).
    TarGz,
}

impl Format {
    /// Parses `?format=` (case-insensitive).
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "dmg" => Some(Format::Dmg),
            "zip" => Some(Format::Zip),
            "pkg" => Some(Format::Pkg),
            "exe" | "nsis" => Some(Format::Exe),
            "msi" => Some(Format::Msi),
            "appimage" => Some(Format::AppImage),
            "deb" => Some(Format::Deb),
            "rpm" => Some(Format::Rpm),
            "snap" => Some(Format::Snap),
            "tar.gz" | "targz" => Some(Format::TarGz),
            _ => None,
        }
    }

    /// The format of a file, from its extension; `None` for blockmaps, signatures,
    /// manifests and Squirrel packages, which are not installers.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        const EXTENSIONS: &[(&str, Format)] = &[
            (".dmg", Format::Dmg),
            (".zip", Format::Zip),
            (".pkg", Format::Pkg),
            (".exe", Format::Exe),
            (".msi", Format::Msi),
            (".appimage", Format::AppImage),
            (".deb", Format::Deb),
            (".rpm", Format::Rpm),
            (".snap", Format::Snap),
            (".tar.gz", Format::TarGz),
        ];
        EXTENSIONS
            .iter()
            .find(|(ext, _)| lower.ends_with(ext))
            .map(|(_, format)| *format)
    }

    /// Lower-case name, as `?format=` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Dmg => "dmg",
            Format::Zip => "zip",
            Format::Pkg => "pkg",
            Format::Exe => "exe",
            Format::Msi => "msi",
            Format::AppImage => "AppImage",
            Format::Deb => "deb",
            Format::Rpm => "rpm",
            Format::Snap => "snap",
            Format::TarGz => "tar.gz",
        }
    }
}

/// The `format` field of the JSON protocol for an update artifact: cargo-packager's updater
/// requires it and knows `app`, `appimage`, `nsis` and `wix` (Tauri ignores it). Read from
/// the name, so that Tauri's archives (`.AppImage.tar.gz`, `.nsis.zip`, `.msi.zip`,
/// `.app.tar.gz`) get the kind they wrap.
pub fn packager_format(name: &str, platform: Platform) -> &'static str {
    let lower = name.to_ascii_lowercase();
    if lower.contains(".appimage") {
        "appimage"
    } else if lower.ends_with(".msi") || lower.contains(".msi.") {
        "wix"
    } else if lower.ends_with(".exe") || lower.contains(".nsis.") {
        "nsis"
    } else if lower.ends_with(".deb") {
        "deb"
    } else if lower.ends_with(".rpm") {
        "rpm"
    } else {
        match platform {
            Platform::Mac => "app",
            Platform::Windows => "nsis",
            Platform::Linux => "appimage",
        }
    }
}

/// The platform an artifact is for, from its name and format: what the download metric
/// labels it with.
pub fn platform_of_file(name: &str, format: Format) -> Option<Platform> {
    let lower = name.to_ascii_lowercase();
    match format {
        Format::Dmg | Format::Pkg => Some(Platform::Mac),
        Format::Exe | Format::Msi => Some(Platform::Windows),
        Format::AppImage | Format::Deb | Format::Rpm | Format::Snap => Some(Platform::Linux),
        Format::Zip if lower.contains("mac") || lower.contains("darwin") => Some(Platform::Mac),
        Format::Zip if lower.contains("win") || lower.contains("nsis") => Some(Platform::Windows),
        Format::TarGz if lower.ends_with(".app.tar.gz") => Some(Platform::Mac),
        Format::TarGz if lower.contains("appimage") || lower.contains("linux") => {
            Some(Platform::Linux)
        }
        _ => None,
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The platform and arch a request asks for, and where each came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// The platform.
    pub platform: Platform,
    /// The arch, when anything named one.
    pub arch: Option<Arch>,
    /// True when request headers decided any part of the answer.
    pub from_headers: bool,
}

/// What the request says, field by field, before precedence is applied.
#[derive(Debug, Default, Clone, Copy)]
pub struct Hints<'a> {
    /// `/latest/{platform}`.
    pub path_platform: Option<&'a str>,
    /// `/latest/{platform}/{arch}`.
    pub path_arch: Option<&'a str>,
    /// `?platform=`.
    pub query_platform: Option<&'a str>,
    /// `?arch=`.
    pub query_arch: Option<&'a str>,
    /// `Sec-CH-UA-Platform` (a quoted structured-header string).
    pub ch_platform: Option<&'a str>,
    /// `Sec-CH-UA-Arch`.
    pub ch_arch: Option<&'a str>,
    /// `Sec-CH-UA-Bitness`.
    pub ch_bitness: Option<&'a str>,
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
}

/// Why a platform or arch given explicitly was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// An explicit platform that is none of the aliases.
    #[error(
        "unknown platform `{0}` (expected darwin, mac, macos, osx, win32, windows, win or linux)"
    )]
    Platform(String),
    /// An explicit arch that is none of the aliases.
    #[error("unknown arch `{0}` (expected x64, arm64, ia32, armv7l or universal, or an alias)")]
    Arch(String),
}

/// Detects platform and arch, first to last: the path, the query, the client hints, the
/// User-Agent (SPEC §2.2). An unknown platform from headers means Linux x64, as in the
/// original design; an invalid explicit one (path or query) is an error.
pub fn detect(hints: &Hints<'_>) -> Result<Detected, DetectError> {
    let explicit_platform = hints.path_platform.or(hints.query_platform);
    let explicit_arch = hints.path_arch.or(hints.query_arch);
    let explicit_platform = explicit_platform
        .map(|p| Platform::parse(p).ok_or_else(|| DetectError::Platform(p.to_owned())))
        .transpose()?;
    let explicit_arch = explicit_arch
        .map(|a| Arch::parse(a).ok_or_else(|| DetectError::Arch(a.to_owned())))
        .transpose()?;

    let mut from_headers = false;
    let platform = match explicit_platform {
        Some(p) => p,
        None => {
            let from_hint = hints.ch_platform.map(unquote).and_then(hint_platform);
            let from_ua = || hints.user_agent.and_then(ua_platform);
            match from_hint.or_else(from_ua) {
                Some(p) => {
                    from_headers = true;
                    p
                }
                None => {
                    // Headers were looked at even when they said nothing useful.
                    from_headers = hints.ch_platform.is_some() || hints.user_agent.is_some();
                    Platform::Linux
                }
            }
        }
    };
    let arch = match explicit_arch {
        Some(a) => Some(a),
        None => {
            let from_hint = hints
                .ch_arch
                .map(unquote)
                .and_then(|arch| hint_arch(arch, hints.ch_bitness.map(unquote)));
            // Headers that could have named the arch make the answer per-visitor, even
            // when they named none.
            if hints.ch_arch.is_some() || hints.user_agent.is_some() {
                from_headers = true;
            }
            from_hint.or_else(|| hints.user_agent.and_then(ua_arch))
        }
    };
    Ok(Detected {
        platform,
        arch,
        from_headers,
    })
}

fn unquote(value: &str) -> &str {
    value.trim().trim_matches('"')
}

/// `Sec-CH-UA-Platform` values browsers send: "macOS", "Windows", "Linux", "Chrome OS", ...
fn hint_platform(value: &str) -> Option<Platform> {
    match value.to_ascii_lowercase().as_str() {
        "macos" | "mac os x" => Some(Platform::Mac),
        "windows" => Some(Platform::Windows),
        "linux" | "chrome os" | "chromeos" => Some(Platform::Linux),
        _ => None,
    }
}

/// `Sec-CH-UA-Arch` is "x86" or "arm"; `Sec-CH-UA-Bitness` says 32 or 64 (SPEC §2.2:
/// "arm" → arm64, "x86" + "64" → x64).
fn hint_arch(arch: &str, bitness: Option<&str>) -> Option<Arch> {
    match (arch.to_ascii_lowercase().as_str(), bitness) {
        ("arm", Some("32")) => Some(Arch::Armv7l),
        ("arm", _) => Some(Arch::Arm64),
        ("x86", Some("32")) => Some(Arch::Ia32),
        ("x86", _) => Some(Arch::X64),
        _ => None,
    }
}

/// The platform woothee reads from a User-Agent.
fn ua_platform(user_agent: &str) -> Option<Platform> {
    let parsed = woothee::parser::Parser::new().parse(user_agent)?;
    let os = parsed.os;
    if os.starts_with("Windows") {
        Some(Platform::Windows)
    } else if os == "Mac OSX" {
        Some(Platform::Mac)
    } else if os == "Linux" || os == "ChromeOS" {
        Some(Platform::Linux)
    } else {
        None
    }
}

/// The few arches a User-Agent does tell: `Win64; x64`, `WOW64`, `x86_64`, `aarch64`,
/// `i686`. A Mac's User-Agent says `Intel` even on Apple Silicon, so it tells nothing.
fn ua_arch(user_agent: &str) -> Option<Arch> {
    let ua = user_agent.to_ascii_lowercase();
    if ua.contains("macintosh") || ua.contains("mac os x") {
        return None;
    }
    if ua.contains("aarch64") || ua.contains("arm64") {
        Some(Arch::Arm64)
    } else if ua.contains("armv7") {
        Some(Arch::Armv7l)
    } else if ua.contains("x86_64") || ua.contains("win64") || ua.contains("wow64") {
        Some(Arch::X64)
    } else if ua.contains("i686") || ua.contains("i386") {
        Some(Arch::Ia32)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
    const WIN_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const LINUX_FIREFOX: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
    const LINUX_ARM: &str =
        "Mozilla/5.0 (X11; Linux aarch64; rv:120.0) Gecko/20100101 Firefox/120.0";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

    #[test]
    fn aliases() {
        for (alias, want) in [
            ("darwin", Platform::Mac),
            ("MacOS", Platform::Mac),
            ("osx", Platform::Mac),
            ("mac", Platform::Mac),
            ("win32", Platform::Windows),
            ("windows", Platform::Windows),
            ("win", Platform::Windows),
            ("linux", Platform::Linux),
        ] {
            assert_eq!(Platform::parse(alias), Some(want), "{alias}");
        }
        assert_eq!(Platform::parse("beos"), None);
        for (alias, want) in [
            ("x64", Arch::X64),
            ("x86_64", Arch::X64),
            ("amd64", Arch::X64),
            ("arm64", Arch::Arm64),
            ("aarch64", Arch::Arm64),
            ("ia32", Arch::Ia32),
            ("x86", Arch::Ia32),
            ("i686", Arch::Ia32),
            ("armv7l", Arch::Armv7l),
            ("armv7", Arch::Armv7l),
            ("universal", Arch::Universal),
        ] {
            assert_eq!(Arch::parse(alias), Some(want), "{alias}");
        }
    }

    #[test]
    fn arch_from_file_names() {
        let cases = [
            ("App-1.0.0-arm64.dmg", Some(Arch::Arm64)),
            ("App-1.0.0-arm64-mac.zip", Some(Arch::Arm64)),
            ("App-1.0.0-universal.dmg", Some(Arch::Universal)),
            ("App-1.0.0.dmg", None),
            ("app_1.0.0_amd64.deb", Some(Arch::X64)),
            ("app-1.0.0.x86_64.rpm", Some(Arch::X64)),
            ("App-1.0.0-armv7l.AppImage", Some(Arch::Armv7l)),
            ("App_1.0.0_aarch64.AppImage", Some(Arch::Arm64)),
            ("App Setup 1.0.0-ia32.exe", Some(Arch::Ia32)),
            ("Charm64x-1.0.0.exe", None),
        ];
        for (name, want) in cases {
            assert_eq!(Arch::from_file_name(name), want, "{name}");
        }
    }

    fn hints() -> Hints<'static> {
        Hints::default()
    }

    #[test]
    fn precedence_path_query_hints_user_agent() {
        let d = detect(&Hints {
            path_platform: Some("win"),
            query_platform: Some("mac"),
            user_agent: Some(LINUX_FIREFOX),
            ..hints()
        })
        .unwrap();
        assert_eq!((d.platform, d.from_headers), (Platform::Windows, true));
        assert_eq!(d.arch, Some(Arch::X64), "arch still from the User-Agent");

        let d = detect(&Hints {
            query_platform: Some("darwin"),
            query_arch: Some("aarch64"),
            user_agent: Some(WIN_CHROME),
            ..hints()
        })
        .unwrap();
        assert_eq!(
            d,
            Detected {
                platform: Platform::Mac,
                arch: Some(Arch::Arm64),
                from_headers: false
            }
        );

        let d = detect(&Hints {
            ch_platform: Some("\"macOS\""),
            ch_arch: Some("\"arm\""),
            user_agent: Some(MAC_SAFARI),
            ..hints()
        })
        .unwrap();
        assert_eq!((d.platform, d.arch), (Platform::Mac, Some(Arch::Arm64)));

        let d = detect(&Hints {
            ch_platform: Some("\"Windows\""),
            ch_arch: Some("\"x86\""),
            ch_bitness: Some("\"64\""),
            ..hints()
        })
        .unwrap();
        assert_eq!((d.platform, d.arch), (Platform::Windows, Some(Arch::X64)));
    }

    #[test]
    fn user_agents() {
        let ua = |ua: &'static str| {
            let d = detect(&Hints {
                user_agent: Some(ua),
                ..hints()
            })
            .unwrap();
            (d.platform, d.arch)
        };
        assert_eq!(
            ua(MAC_SAFARI),
            (Platform::Mac, None),
            "a Mac UA hides the arch"
        );
        assert_eq!(ua(WIN_CHROME), (Platform::Windows, Some(Arch::X64)));
        assert_eq!(ua(LINUX_FIREFOX), (Platform::Linux, Some(Arch::X64)));
        assert_eq!(ua(LINUX_ARM), (Platform::Linux, Some(Arch::Arm64)));
        assert_eq!(ua(IPHONE).0, Platform::Linux, "unknown platform → linux");
    }

    #[test]
    fn invalid_explicit_values_are_errors() {
        assert_eq!(
            detect(&Hints {
                query_platform: Some("beos"),
                ..hints()
            }),
            Err(DetectError::Platform("beos".into()))
        );
        assert_eq!(
            detect(&Hints {
                path_platform: Some("linux"),
                path_arch: Some("sparc"),
                ..hints()
            }),
            Err(DetectError::Arch("sparc".into()))
        );
        let d = detect(&hints()).unwrap();
        assert_eq!(
            d,
            Detected {
                platform: Platform::Linux,
                arch: None,
                from_headers: false
            }
        );
    }

    #[test]
    fn formats() {
        assert_eq!(Format::from_file_name("A.AppImage"), Some(Format::AppImage));
        assert_eq!(Format::from_file_name("A.app.tar.gz"), Some(Format::TarGz));
        assert_eq!(Format::from_file_name("A.exe.blockmap"), None);
        assert_eq!(Format::from_file_name("A-full.nupkg"), None);
        assert_eq!(Format::parse("AppImage"), Some(Format::AppImage));
        let cases = [
            (
                "App_1.2.0_amd64.AppImage.tar.gz",
                Platform::Linux,
                "appimage",
            ),
            ("App.app.tar.gz", Platform::Mac, "app"),
            ("App-1.0.0-arm64-mac.zip", Platform::Mac, "app"),
            ("App_1.0.0_x64-setup.nsis.zip", Platform::Windows, "nsis"),
            ("App Setup 1.0.0.exe", Platform::Windows, "nsis"),
            ("App_1.0.0_x64_en-US.msi.zip", Platform::Windows, "wix"),
            ("app_1.0.0_arm64.deb", Platform::Linux, "deb"),
        ];
        for (name, platform, want) in cases {
            assert_eq!(packager_format(name, platform), want, "{name}");
        }
    }
}
