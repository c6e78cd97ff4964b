"use strict";
// electron-updater (the real npm package) run by Node against release-edge, for
// tests/it/electron_updater.rs. Two commands:
//
//   node harness.js blockmap FILE [--output FILE.blockmap]
//     electron-builder's own block map tool (app-builder from app-builder-bin), called the way
//     electron-builder calls it: without --output the map is appended to FILE with deflate
//     (AppImage: "embedded block map"); with --output it is a separate gzip .blockmap (NSIS,
//     mac zip). Prints app-builder's JSON: {"size", "sha512" (base64), "blockMapSize"?}.
//
//   node harness.js update '{"feedUrl": ..., "version": "1.0.0", "workDir": ..., "oldFile": ...,
//                            "differential": true, "expectVersion": "1.1.0", "updater": "appimage"}'
//     An app at `version` (its current artifact: oldFile) with app-update.yml
//     `provider: generic, url: feedUrl` checks for an update, finds `expectVersion` and
//     downloads it (never installs). The last stdout line is the JSON result; exit 0 only
//     when everything the request asked for happened (a differential download that fell back
//     to a full one is a failure). With "expectNoUpdate": true instead of expectVersion, the
//     check must find no update (and nothing is downloaded). "stagingId" (a UUID) is written
//     where electron-updater keeps its staging user id (userData/.updaterId), which it
//     sends as `x-user-staging-id` and uses for `stagingPercentage`.
//
// "channel" ("beta") goes into app-update.yml: the app reads `beta-linux.yml` (or `beta.yml`).
// "requestHeaders" ({"Authorization": "Bearer ..."}) are set as autoUpdater.requestHeaders, as
// an app of a private channel does; a token may instead ride in feedUrl as `?token=`.
//
// "updater": "appimage" (default) is AppImageUpdater: the `autoUpdater` electron-updater gives
// a Linux app (an AppImage, no package-type file). It downloads without installing, and it is
// the Linux updater with a differential download: FileWithEmbeddedBlockMapDifferentialDownloader
// fetches the new file's embedded block map with a Range request for its tail, reads the old
// map from the running AppImage ($APPIMAGE), then fetches the changed blocks with multi-range
// requests (multipart/byteranges). DebUpdater/RpmUpdater/PacmanUpdater only download in full.
//
// "updater": "nsis" is NsisUpdater, the Windows updater and the one that uses separate
// .blockmap files (GenericDifferentialDownloader): it downloads `{url}.blockmap` and the old
// one, whose URL it derives by replacing the new version with the old one in the URL path,
// and rebuilds the installer from the previous one in its cache (installer.exe). On Linux it
// would read latest-linux.yml, so it runs with electron-updater's own test hook
// (`_testOnlyOptions`, what electron-builder's updater tests use) set to platform "win32":
// it then reads latest.yml as on Windows, and a failed differential download throws instead
// of falling back. No publisherName in app-update.yml: no Authenticode check.

const { spawnSync } = require("child_process");
const fs = require("fs");
const Module = require("module");
const path = require("path");

const FAKE_ELECTRON = path.join(__dirname, "fake-electron.js");
// The differential downloaders log this (AppImageUpdater, AppUpdater, NsisUpdater) before a
// full download replaces the differential one.
const FALLBACK = /fallback to full download/i;
// DifferentialDownloader.doDownload logs its plan: "Full: 8,200 KB, To download: 120 KB (1%)".
const PLAN = /^Full: .*, To download: /;

function print(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function blockmap(args) {
  const file = args[0];
  if (file == null) {
    throw new Error("usage: harness.js blockmap FILE [--output FILE.blockmap]");
  }
  const { appBuilderPath } = require("app-builder-bin");
  const cli = ["blockmap", "--input", file];
  const output = args.indexOf("--output");
  if (output >= 0) {
    cli.push("--output", args[output + 1]);
  } else {
    cli.push("--compression", "deflate");
  }
  const run = spawnSync(appBuilderPath, cli, { encoding: "utf8" });
  if (run.error != null || run.status !== 0) {
    throw new Error(`${appBuilderPath} ${cli.join(" ")} failed: ${run.error || run.stderr}`);
  }
  const info = JSON.parse(run.stdout);
  if (typeof info.sha512 !== "string" || typeof info.size !== "number") {
    throw new Error(`unexpected app-builder output: ${run.stdout}`);
  }
  print(info);
}

/** Resolves `require("electron")` (from electron-updater) to the stand-in. */
function installFakeElectron() {
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    return request === "electron" ? FAKE_ELECTRON : resolve.call(this, request, ...rest);
  };
  return require("electron");
}

async function update(config) {
  const required = ["feedUrl", "version", "workDir", "oldFile"];
  if (!config.expectNoUpdate) {
    required.push("expectVersion");
  }
  for (const key of required) {
    if (config[key] == null) {
      throw new Error(`update: "${key}" is required`);
    }
  }
  const electron = installFakeElectron();
  const home = path.join(config.workDir, "home");
  electron.configure({ name: "Sample App", version: config.version, home });
  if (config.stagingId != null) {
    fs.mkdirSync(path.join(home, "userData"), { recursive: true });
    fs.writeFileSync(path.join(home, "userData", ".updaterId"), config.stagingId);
  }

  // What a packaged electron-builder app has: resources/app-update.yml, the running AppImage
  // in $APPIMAGE, and a cache directory for downloaded updates.
  process.resourcesPath = path.join(config.workDir, "resources");
  fs.mkdirSync(process.resourcesPath, { recursive: true });
  fs.writeFileSync(
    path.join(process.resourcesPath, "app-update.yml"),
    `provider: generic\nurl: ${JSON.stringify(config.feedUrl)}\nupdaterCacheDirName: sample-app-updater\n` +
      (config.channel == null ? "" : `channel: ${JSON.stringify(config.channel)}\n`),
  );
  process.env.XDG_CACHE_HOME = path.join(config.workDir, "cache");
  const kind = config.updater || "appimage";
  if (kind === "appimage") {
    process.env.APPIMAGE = config.oldFile;
  } else if (kind === "nsis") {
    // where the NSIS installer leaves a copy of itself for the next differential update
    const cacheDir = path.join(process.env.XDG_CACHE_HOME, "sample-app-updater");
    fs.mkdirSync(cacheDir, { recursive: true });
    fs.copyFileSync(config.oldFile, path.join(cacheDir, "installer.exe"));
  } else {
    throw new Error(`unknown updater "${kind}" (appimage or nsis)`);
  }

  const log = [];
  let fallback = false;
  let plan = null;
  const record = level => message => {
    const text = String(message);
    log.push(`${level}: ${text.length > 2000 ? `${text.slice(0, 2000)}...` : text}`);
    process.stderr.write(`[electron-updater ${level}] ${text.slice(0, 2000)}\n`);
    if (FALLBACK.test(text)) {
      fallback = true;
    }
    if (PLAN.test(text)) {
      plan = text;
    }
  };
  const logger = { info: record("info"), warn: record("warn"), error: record("error"), debug: record("debug") };

  const { AppImageUpdater, NsisUpdater } = require("electron-updater");
  const updater = kind === "nsis" ? new NsisUpdater() : new AppImageUpdater();
  if (kind === "nsis") {
    updater._testOnlyOptions = { platform: "win32", isUseDifferentialDownload: Boolean(config.differential) };
  }
  updater.logger = logger;
  if (config.requestHeaders != null) {
    // What an app of a private channel sets (autoUpdater.requestHeaders): electron-updater
    // sends them with the feed request and with every download.
    updater.requestHeaders = config.requestHeaders;
  }
  updater.autoDownload = false;
  updater.autoInstallOnAppQuit = false;
  updater.disableDifferentialDownload = !config.differential;
  let downloadedEvent = null;
  updater.on("update-downloaded", event => {
    downloadedEvent = event;
  });
  updater.on("error", () => {
    // logged by electron-updater itself through the logger; the promise rejects too
  });

  const result = {
    ok: false,
    updater: updater.constructor.name,
    version: null,
    downloadedFile: null,
    differential: false,
    fallback: false,
    plan: null,
    exchanges: electron.exchanges,
    log,
  };
  try {
    const check = await updater.checkForUpdates();
    if (check == null) {
      throw new Error("checkForUpdates() returned null: the updater is not active");
    }
    result.version = check.updateInfo.version;
    result.available = check.isUpdateAvailable;
    if (config.expectNoUpdate) {
      if (check.isUpdateAvailable) {
        throw new Error(`an update to ${check.updateInfo.version} was found; expected none`);
      }
      result.ok = true;
      return result;
    }
    if (!check.isUpdateAvailable) {
      throw new Error(`no update found (feed says ${check.updateInfo.version})`);
    }
    if (check.updateInfo.version !== config.expectVersion) {
      throw new Error(`found ${check.updateInfo.version}, expected ${config.expectVersion}`);
    }
    const files = await updater.downloadUpdate();
    result.downloadedFile = files[0];
    if (downloadedEvent == null || downloadedEvent.downloadedFile !== files[0]) {
      throw new Error(`no update-downloaded event for ${files[0]}`);
    }
    result.fallback = fallback;
    result.plan = plan;
    result.differential = plan != null && !fallback;
    if (config.differential && !result.differential) {
      throw new Error(fallback ? "electron-updater fell back to a full download" : "no differential download plan was logged");
    }
    if (!config.differential && plan != null) {
      throw new Error(`a differential download ran although it was disabled: ${plan}`);
    }
    result.ok = true;
  } catch (e) {
    result.fallback = fallback;
    result.plan = plan;
    result.error = { message: String(e && e.message), code: (e && e.code) || null, stack: String((e && e.stack) || e) };
  }
  return result;
}

async function main() {
  const [command, ...args] = process.argv.slice(2);
  if (command === "blockmap") {
    blockmap(args);
    return 0;
  }
  if (command === "update") {
    const result = await update(JSON.parse(args[0] || "{}"));
    print(result);
    return result.ok ? 0 : 1;
  }
  throw new Error("usage: harness.js blockmap FILE [--output FILE.blockmap] | harness.js update CONFIG_JSON");
}

main().then(
  code => process.exit(code),
  error => {
    print({ ok: false, error: { message: String(error && error.message), code: (error && error.code) || null, stack: String((error && error.stack) || error) } });
    process.exit(2);
  },
);
