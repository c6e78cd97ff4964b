#!/usr/bin/env python3
"""Stand-in for Velopack's `Update` binary, `patch` command only, for the test suite.

Velopack's UpdateManager downloads and checks the delta packages itself, then runs
`Update patch --old BASE --output OUT --delta D1 --delta D2 ...` to rebuild the full package.
That binary is built from Velopack's repository and published on no registry this suite can
install from, so this script applies deltas by the rules of Velopack's own `patch` command
(src/bins/src/commands/patch.rs): the base package is extracted; each delta in order:
under `lib/`, an empty `.zsdiff`/`.diff`/`.bsdiff` keeps the file, any other file is new or
replaced, `.shasum` files are skipped; outside `lib/` every file is copied; files the delta
does not name are deleted. A non-empty binary patch is refused (exit 2): the suite's deltas
carry whole files, so a refusal means a delta was built on another base than expected.
Every invocation is appended to `patch.log` beside the script (one JSON object a line).
"""
import json
import os
import sys
import zipfile


def main(argv):
    if not argv or argv[0] != "patch":
        print(f"unsupported command: {argv}", file=sys.stderr)
        return 2
    old, output, deltas = None, None, []
    it = iter(argv[1:])
    for arg in it:
        if arg == "--old":
            old = next(it)
        elif arg == "--output":
            output = next(it)
        elif arg == "--delta":
            deltas.append(next(it))
    log = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "patch.log")
    with open(log, "a") as f:
        f.write(json.dumps({"old": old, "output": output, "deltas": deltas}) + "\n")
    with zipfile.ZipFile(old) as z:
        files = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    for delta in deltas:
        with zipfile.ZipFile(delta) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            visited = set()
            for name in names:
                data = z.read(name)
                if name.startswith("lib/"):
                    base, ext = os.path.splitext(name)
                    if ext in (".zsdiff", ".diff", ".bsdiff"):
                        visited.add(base)
                        if data:
                            print(f"cannot apply binary patch {name}", file=sys.stderr)
                            return 2
                        if base not in files:
                            print(f"{name}: {base} is not in the base package", file=sys.stderr)
                            return 2
                    elif ext == ".shasum":
                        pass
                    else:
                        files[name] = data
                        visited.add(name)
                else:
                    files[name] = data
                    visited.add(name)
            files = {n: d for n, d in files.items() if n in visited}
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            z.writestr(name, files[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
