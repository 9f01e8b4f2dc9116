#!/usr/bin/env python3
"""The files that belong to the build, as the flake's source fileset sees them.

Both sides read the one description, deploy/build.json ("source"): nix/
turns it into a lib.fileset, this script into a list of paths, so the
sandbox rehearsal (scripts/sandbox-checks.sh) builds exactly what the Nix
build sees. Like a flake, only files git tracks count, with their
working-tree content.

Usage: scripts/source-files.py [--copy-to DIR]
  without --copy-to: print the paths, one per line (relative to the repo)
  with --copy-to:    copy them into DIR (created; must not exist)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wanted(path: str, source: dict) -> bool:
    name = path.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[1] if "." in name else ""
    if ext in source.get("extensions", []) or path in source.get("files", []):
        return True
    return any(
        path.startswith(directory.rstrip("/") + "/") and ext in exts
        for directory, exts in source.get("extensionsUnder", {}).items()
    )


def source_files(root: Path = ROOT) -> list[str]:
    source = json.loads((root / "deploy" / "build.json").read_text())["source"]
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True
    ).stdout.decode().split("\0")
    files = sorted(p for p in tracked if p and wanted(p, source) and (root / p).is_file())
    missing = [f for f in source.get("files", []) if f not in files]
    if missing:
        raise SystemExit(f"source-files: named in deploy/build.json but not tracked: {missing}")
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copy-to", type=Path)
    args = ap.parse_args()
    files = source_files()
    if args.copy_to is None:
        sys.stdout.write("".join(f + "\n" for f in files))
        return 0
    args.copy_to.mkdir(parents=True)
    for f in files:
        dest = args.copy_to / f
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest)
    print(f"source-files: {len(files)} files copied to {args.copy_to}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
