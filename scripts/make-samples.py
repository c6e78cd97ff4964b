#!/usr/bin/env python3
"""Writes the sample release set served by the default config (samples/releases/...).

Fake artifacts of a few KiB (deterministic bytes, so the output never changes) and the
channel files electron-builder would write for them, with real sha512 and sizes:
latest.yml (Windows), latest-mac.yml, latest-linux.yml, latest-linux-arm64.yml, beside each
version and under releases/latest/. Run from the repository root: python3 scripts/make-samples.py
"""

import base64
import hashlib
import os
import shutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples")
PRODUCT = "Sample App"
RELEASES = [
    ("1.0.0", "2026-10-01T12:00:00.000Z"),
    ("1.1.0", "2026-11-01T12:00:00.000Z"),
]


def fake_bytes(name: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def sha512_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha512(data).digest()).decode()


def artifacts(version: str):
    """(channel file, [file names], main path) per platform, as electron-builder names them."""
    return {
        "latest.yml": [f"Sample-App-Setup-{version}.exe"],
        "latest-mac.yml": [
            f"Sample-App-{version}-arm64-mac.zip",
            f"Sample-App-{version}-arm64.dmg",
            f"Sample-App-{version}-mac.zip",
            f"Sample-App-{version}.dmg",
        ],
        "latest-linux.yml": [f"Sample-App-{version}.AppImage", f"sample-app_{version}_amd64.deb"],
        "latest-linux-arm64.yml": [f"Sample-App-{version}-arm64.AppImage"],
    }


def manifest(version: str, date: str, files: list, sizes: dict, hashes: dict) -> str:
    lines = [f"version: {version}", "files:"]
    for name in files:
        lines += [f"  - url: {name}", f"    sha512: {hashes[name]}", f"    size: {sizes[name]}"]
    main = files[0]
    lines += [f"path: {main}", f"sha512: {hashes[main]}", f"releaseDate: '{date}'", ""]
    return "\n".join(lines)


def main() -> None:
    releases = os.path.join(ROOT, "releases")
    shutil.rmtree(releases, ignore_errors=True)
    for i, (version, date) in enumerate(RELEASES):
        vdir = os.path.join(releases, f"v{version}")
        os.makedirs(vdir)
        for channel_file, files in artifacts(version).items():
            sizes, hashes = {}, {}
            for n, name in enumerate(files):
                data = fake_bytes(name, 2048 + 512 * n + 97 * i)
                with open(os.path.join(vdir, name), "wb") as f:
                    f.write(data)
                sizes[name], hashes[name] = len(data), sha512_b64(data)
            text = manifest(version, date, files, sizes, hashes)
            with open(os.path.join(vdir, channel_file), "w") as f:
                f.write(text)
            if i == len(RELEASES) - 1:
                os.makedirs(os.path.join(releases, "latest"), exist_ok=True)
                with open(os.path.join(releases, "latest", channel_file), "w") as f:
                    f.write(text)


if __name__ == "__main__":
    main()
