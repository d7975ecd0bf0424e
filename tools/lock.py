"""Write constraints.txt: the exact version of every package this project installs, as installed in .venv now.

`make lock` runs it after `make test` passed on the venv, so the file records the versions the tests ran with;
`make install` (and so `make test`, `make demo` and CI) installs with ``pip install -c constraints.txt``.

Only what ``alpha-gate[dev]`` needs is written (its requirements, followed through every dependency, extras and
environment markers included), not whatever else was installed into the venv by hand. Left out, with a note on
stderr: the project itself, and packages installed from a URL or a folder (no index has them). A local version
label (torch's "+cpu") is dropped: PyPI knows torch==2.13.0, and that pin admits the CPU build too.
"""

from __future__ import annotations

import importlib.metadata as md
import sys

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PROJECT = "alpha-gate"
EXTRAS = ("dev",)


def _wanted(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    try:
        return any(requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""}))
    except UndefinedEnvironmentName:
        return False


def closure(project: str = PROJECT, extras: tuple[str, ...] = EXTRAS) -> dict[str, md.Distribution]:
    """Every installed distribution that ``project[extras]`` needs here, by canonical name."""
    found: dict[str, md.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(project, set(extras))]
    while todo:
        name, wanted_extras = todo.pop()
        key = canonicalize_name(name)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise SystemExit(f"{name} is required but not installed in {sys.prefix}; run `make install` first.") \
                from None
        if key not in (canonicalize_name(project), "pip"):  # pip: the installer itself, whichever the venv has
            found[key] = dist
        for extra in sorted(wanted_extras) or [""]:
            if (key, extra) in done:
                continue
            done.add((key, extra))
            for line in dist.requires or []:
                requirement = Requirement(line)
                if _wanted(requirement, {extra} if extra else set()):
                    todo.append((requirement.name, set(requirement.extras)))
    return found


def from_an_index(dist: md.Distribution) -> bool:
    """False for a package installed from a URL, a VCS or a folder: pip records those in direct_url.json (PEP 610),
    never one found on an index or in --find-links."""
    return dist.read_text("direct_url.json") is None


def main() -> int:
    lines = ["# The versions `make test` ran with, from .venv: regenerate with `make lock` (tools/lock.py).",
             "# `make install` installs with `pip install -c constraints.txt`."]
    for key, dist in sorted(closure().items()):
        if not from_an_index(dist):
            print(f"lock: left out {dist.metadata['Name']} {dist.version}: installed from a URL or a folder",
                  file=sys.stderr)
            continue
        lines.append(f"{key}=={Version(dist.version).public}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
