"""Print the packages whose installed version differs from the lock (used by `make test-latest`).

Usage: python scripts/lock_drift.py requirements/lock.txt versions.txt
``versions.txt`` is ``pip freeze --all`` output. Lock lines whose environment marker does not
hold for this interpreter are skipped. Exit status 0 always: drift is information, the tests decide.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def pins(path: Path, *, evaluate_markers: bool) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of a requirements file."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        if evaluate_markers and req.marker is not None and not req.marker.evaluate():
            continue
        spec = next(iter(req.specifier), None)
        if spec is not None and spec.operator == "==":
            out[canonicalize_name(req.name)] = spec.version
    return out


def main(argv: list[str]) -> int:
    locked = pins(Path(argv[0]), evaluate_markers=True)
    installed = pins(Path(argv[1]), evaluate_markers=False)
    installed.pop("pip", None)  # the installer itself is not locked
    rows = [(name, locked.get(name, "-"), installed.get(name, "-"))
            for name in sorted(set(locked) | set(installed))
            if locked.get(name) != installed.get(name)]
    for name, old, new in rows:
        print(f"  {name:32s} lock {old:14s} now {new}")
    print(f"  {len(rows)} package(s) differ" if rows else "  none: the lock is current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
