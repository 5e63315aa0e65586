#!/usr/bin/env python3
"""Fail if any dependency is not under a permissive licence.

Reads `cargo metadata` (no extra tools to install) and the npm lockfiles of
the CI-only checks (every tools/*/package-lock.json: the chain SDKs, the
independent Shamir implementation). Each package's SPDX
expression must be satisfiable with the allowed licences below: an OR needs
one allowed side, an AND needs both. GPL, AGPL, LGPL, SSPL and
non-commercial licences are therefore refused.
"""
import glob
import json
import re
import subprocess
import sys

ALLOWED = {
    "MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-2-Clause", "BSD-3-Clause",
    "ISC", "Zlib", "0BSD", "CC0-1.0", "Unlicense", "Unicode-3.0", "Unicode-DFS-2016",
    "BSL-1.0", "MPL-2.0", "CDLA-Permissive-2.0",
    "MITNFA",  # MIT + "no false attribution" (hex_lit, via bitcoin)
}


def allowed(expr: str) -> bool:
    expr = expr.replace("/", " OR ").strip()
    # Split on OR at the top level (parentheses are rare; strip them conservatively).
    expr = expr.replace("(", "").replace(")", "")
    for alternative in re.split(r"\s+OR\s+", expr):
        parts = [p.strip() for p in re.split(r"\s+AND\s+", alternative)]
        if all(p in ALLOWED for p in parts):
            return True
    return False


def main() -> int:
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", "x86_64-unknown-linux-gnu"]))
    workspace = set(meta["workspace_members"])
    bad = []
    for package in meta["packages"]:
        if package["id"] in workspace:
            continue
        licence = package.get("license")
        if not licence or not allowed(licence):
            bad.append(f'{package["name"]} {package["version"]}: {licence or "no licence field"}')
    crates = len(meta["packages"]) - len(workspace)
    npm = npm_packages()
    bad += [f"npm {name}: {licence or 'no licence field'}" for name, licence in npm if not licence or not allowed(licence)]
    if bad:
        print("dependencies with licences outside the allowlist:", *bad, sep="\n  ")
        return 1
    print(f"licences ok: {crates} crates and {len(npm)} npm packages (CI checks only), all permissive")
    return 0


def npm_packages() -> list:
    """(name, licence) of every package in each tools/*/package-lock.json."""
    packages = []
    for lockfile in sorted(glob.glob("tools/*/package-lock.json")):
        with open(lockfile) as f:
            lock = json.load(f)
        packages += [(path.rsplit("node_modules/", 1)[-1], entry.get("license"))
                     for path, entry in lock.get("packages", {}).items() if path]
    return packages


if __name__ == "__main__":
    sys.exit(main())
