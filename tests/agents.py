"""Test agents: Consul and Nomad built from their MPL-2.0 Go modules, cached outside the clone.

Versions (the newest MPL-2.0 releases; HashiCorp's later ones are under the Business Source License):
    consul 1.16.3        nomad 1.6.3
The image itself pins newer releases (images/almalinux9.yaml); the README says what testing with these proves.

Cache ($XDG_CACHE_HOME, default ~/.cache):
    ~/.cache/nomadic/agents/<name>-<version>-<recipe hash>/
        <name>            the binary
        <name>.sha256     its SHA-256 (sha256sum format), checked on every lookup
        version.txt       what `<name> version` printed
        licences.txt      every module linked into the binary, with the licence its LICENSE file states
        recipe.json       the recipe whose hash names the folder (a changed recipe builds a new folder)
    ~/.cache/nomadic/agents/src/<name>-<version>/   the assembled source tree (rewritten by each build)
Go's module and build caches (`go env GOMODCACHE GOCACHE`) are Go's defaults, outside the clone, and kept.

    .venv/bin/python -m tests.agents        prints `consul PATH` and `nomad PATH`, building first if needed
    python -m tests.agents --check          the same, but only from the cache: exit 1 when not built
    from tests import agents; agents.require()   in a test: {"consul": path, "nomad": path}, or skip (fail in CI)

How one agent is built, with only the Go module proxy (neither GitHub nor HashiCorp's releases are reachable):
1. `go mod download` the root module at its release tag; its LICENSE must be MPL-2.0.
2. Its go.mod replaces nested modules with local directories (`./api`, ...) that the module zip leaves out. Each
   is filled with that nested module from the proxy, pinned below with its h1: checksum; each LICENSE must be
   MPL-2.0. The pins are the release's own commit where the proxy serves that pseudo-version (Nomad's api), else
   the nested module's tagged version that the release's go.mod itself requires (Consul: the proxy answers 403
   for pseudo-versions of Consul's nested modules).
3. `go build` with the release's own flags (its GNUmakefile and .github/workflows/build.yml): -trimpath, the
   version package's GitCommit/BuildDate (from the tag's commit and time), CGO as released, the release build
   tags without `ui` (no web UI is embedded).
4. Every module linked into the binary (`go version -m`) has its LICENSE read from the module cache: none may be
   under the Business Source License, and HashiCorp's consul and nomad modules must be MPL-2.0. The binary's
   `version` must name the release.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Iterator

from nomadic.fsutil import sha256_file

# Bump when the build steps below change in a way that changes the binaries.
RECIPE_REVISION = 1
GO_INSTALL_HINT = (
    "install Go 1.21 or later (https://go.dev/doc/install) and put it on PATH, or keep it at /usr/local/go/bin/go"
)
OWN_MODULES = re.compile(r"^github\.com/hashicorp/(consul|nomad)(/|$)")


@dataclass(frozen=True)
class Nested:
    """A nested module the release's go.mod replaces with a local directory."""

    dir: str
    module: str
    version: str
    sum: str  # the h1: checksum, pinned: the checksum database does not know every one of these


@dataclass(frozen=True)
class Release:
    name: str
    module: str
    version: str
    nested: tuple[Nested, ...]
    cgo: bool
    tags: tuple[str, ...]
    # The version package's link-time variables; {commit}, {commit8} and {date} come from the tag's commit.
    ldflags: str


_CONSUL_NESTED_PINS = (
    # The versions consul v1.16.3's go.mod requires (the proxy refuses pseudo-versions of these at the release
    # commit). api/sdk/proto-public/troubleshoot's sums are in the checksum database; envoyextensions v0.4.1's is
    # not (the database answers 404), and its pin is the sum troubleshoot v0.3.1's go.sum records for it.
    ("api", "v1.25.1", "h1:CqrdhYzc8XZuPnhIYZWH45toM0LB9ZeYr/gvpLVI3PE="),
    ("sdk", "v0.14.1", "h1:ZiwE2bKb+zro68sWzZ1SgHF3kRMBZ94TwOCFRF4ylPs="),
    ("proto-public", "v0.4.1", "h1:k1RWFQo3uvtaLyC8ZEdP2jJOCiNp/7Tp8zz9MsjAxc8="),
    ("envoyextensions", "v0.4.1", "h1:7s3IXE+qmwjPbZPva+8BjHLrpkFrFkNE+z/6X/O6PQc="),
    ("troubleshoot", "v0.3.1", "h1:M3sAzWRT3xXseRoa/Z8q8Kf+Ws0J1xN8nLDj0dC2UIw="),
)

CONSUL = Release(
    name="consul",
    module="github.com/hashicorp/consul",
    version="1.16.3",
    nested=tuple(Nested(d, f"github.com/hashicorp/consul/{d}", v, s) for d, v, s in _CONSUL_NESTED_PINS),
    cgo=False,
    tags=(),
    ldflags="-X github.com/hashicorp/consul/version.GitCommit={commit8}"
    " -X github.com/hashicorp/consul/version.BuildDate={date}",
)

NOMAD = Release(
    name="nomad",
    module="github.com/hashicorp/nomad",
    version="1.6.3",
    nested=(
        # api at the release's own commit e0497bff (2023-10-30T12:58:10Z).
        Nested(
            "api",
            "github.com/hashicorp/nomad/api",
            "v0.0.0-20231030125810-e0497bff1437",
            "h1:Q8BvGHtbdcY6qwvUetuRtGVPi77psJARI0cFboSHV4s=",
        ),
    ),
    cgo=True,
    # The release's GO_TAGS ("ui codegen_generated release") without ui: the web UI's assets are not in the module.
    tags=("codegen_generated", "release"),
    ldflags="-X github.com/hashicorp/nomad/version.GitCommit={commit}"
    " -X github.com/hashicorp/nomad/version.BuildDate={date}",
)

RELEASES: tuple[Release, ...] = (CONSUL, NOMAD)


class AgentsUnavailable(Exception):
    """The agents cannot be had here (no Go, a failed build, a licence that is not MPL-2.0): one line saying why."""


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "nomadic" / "agents"


def find_go() -> str:
    """The go command: on PATH, else Go's default install location."""
    found = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else "")
    if not found:
        raise AgentsUnavailable(f"Go not found: {GO_INSTALL_HINT}")
    return found


def go_env(go: str) -> dict[str, str]:
    """The environment every go command here runs in."""
    env = dict(os.environ)
    env.update(
        # Never fetch another toolchain: a go.mod `toolchain` line would otherwise download one.
        GOTOOLCHAIN="local",
        # No VCS stamping: the tree is a module copy, not a git checkout. The release builds pass it too.
        GOFLAGS="-buildvcs=false",
        # The go command itself must come first on PATH for cgo and `go env`.
        PATH=f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def recipe(release: Release, go_version: str) -> dict:
    return {"revision": RECIPE_REVISION, "go": go_version, **asdict(release)}


def recipe_hash(release: Release, go_version: str) -> str:
    text = json.dumps(recipe(release, go_version), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _go_version(go: str) -> str:
    return _run([go, "env", "GOVERSION"], env=go_env(go)).strip()


def agent_dir(release: Release, go_version: str) -> Path:
    return cache_root() / f"{release.name}-{release.version}-{recipe_hash(release, go_version)}"


def cached(release: Release, go_version: str) -> Path | None:
    """The cached binary when it is complete and its SHA-256 still matches the recorded one."""
    folder = agent_dir(release, go_version)
    binary, recorded = folder / release.name, folder / f"{release.name}.sha256"
    if not (binary.is_file() and recorded.is_file() and (folder / "version.txt").is_file()):
        return None
    want = recorded.read_text(encoding="ascii").split()[0]
    return binary if sha256_file(binary) == want else None


# --- licences ---------------------------------------------------------------------------------------------

_LICENCE_FILE = re.compile(r"^(LICEN[CS]E|COPYING)([.-].*)?$", re.IGNORECASE)


def classify_licence(text: str) -> str:
    """The licence a LICENSE file's text states, by its own title or wording."""
    head = " ".join(text[:4000].split())
    if re.search(r"business source license", head, re.IGNORECASE):
        return "BUSL-1.1"
    if re.search(r"mozilla public license,? (version )?2\.0", head, re.IGNORECASE):
        return "MPL-2.0"
    if re.search(r"apache license,? version 2\.0", head, re.IGNORECASE):
        return "Apache-2.0"
    if "Permission is hereby granted, free of charge" in head:
        return "MIT"
    if "Redistribution and use in source and binary forms" in head:
        return "BSD"
    if "Permission to use, copy, modify, and/or distribute" in head or "ISC License" in head:
        return "ISC"
    return "other"


def module_licence(directory: Path) -> str:
    """The licence of the module at `directory` ('none found' when it has no LICENSE/COPYING file)."""
    try:
        names = sorted(p for p in directory.iterdir() if p.is_file() and _LICENCE_FILE.match(p.name))
    except OSError:
        return "none found"
    kinds = sorted({classify_licence(p.read_text(encoding="utf-8", errors="replace")) for p in names})
    return "+".join(kinds) if kinds else "none found"


def licence_problem(module: str, licence: str) -> str:
    """Why a module with this licence must not go into a test agent ('' when it may)."""
    if "BUSL" in licence:
        return f"{module} is under the Business Source License, not MPL-2.0"
    if OWN_MODULES.match(module) and licence != "MPL-2.0":
        return f"{module} is HashiCorp's own module and must be MPL-2.0, but its LICENSE says {licence}"
    return ""


def require_mpl(module: str, version: str, directory: Path) -> None:
    licence = module_licence(directory)
    if licence != "MPL-2.0":
        raise AgentsUnavailable(
            f"{module}@{version} is not MPL-2.0 (its LICENSE says {licence}): only MPL-2.0 releases may be built"
            " (Consul <= 1.16.3, Nomad <= 1.6.3)"
        )


def escape_module_path(path: str) -> str:
    """The module cache's case encoding: each capital letter becomes '!' and its lower case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), path)


def linked_modules(version_m: str) -> Iterator[tuple[str, str]]:
    """(module, version) of every module `go version -m` lists, replacements resolved; local ones skipped."""
    lines = [line.split("\t") for line in version_m.splitlines()]
    for i, fields in enumerate(lines):
        if len(fields) < 3 or fields[1] != "dep":
            continue
        module, version = fields[2], fields[3] if len(fields) > 3 else ""
        nxt = lines[i + 1] if i + 1 < len(lines) else []
        if len(nxt) > 2 and nxt[1] == "=>":
            if nxt[2].startswith((".", "/")):
                continue  # a local replacement: one of the nested modules, checked before the build
            module, version = nxt[2], nxt[3]
        yield module, version


def check_linked_licences(version_m: str, modcache: Path) -> list[str]:
    """licences.txt's lines; AgentsUnavailable when any linked module may not be built into a test agent."""
    rows, problems = [], []
    for module, version in linked_modules(version_m):
        directory = modcache / f"{escape_module_path(module)}@{escape_module_path(version)}"
        licence = module_licence(directory)
        rows.append(f"{module} {version} {licence}")
        problem = licence_problem(module, licence)
        if problem:
            problems.append(problem)
    if problems:
        raise AgentsUnavailable(f"{len(problems)} linked module(s) not allowed: {'; '.join(problems)}")
    return rows


# --- building ---------------------------------------------------------------------------------------------


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise AgentsUnavailable(f"{' '.join(argv[1:3])} failed (exit {result.returncode}): {' | '.join(tail)}")
    return result.stdout


def download(go: str, env: dict[str, str], module: str, version: str) -> dict:
    """`go mod download -json module@version`: its Dir, Sum, Origin; a clear error when the proxy refuses."""
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"], env=env, capture_output=True, text=True
    )
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {"Error": (result.stderr.strip().splitlines() or ["no output"])[-1]}
    if info.get("Error") or result.returncode != 0:
        raise AgentsUnavailable(f"go mod download {module}@{version}: {info.get('Error', result.stderr.strip())}")
    return info


def _copy_writable(src: Path, dst: Path) -> None:
    """Copy a module out of the read-only module cache and make the copy writable (so it can be removed)."""
    shutil.copytree(src, dst, symlinks=True)
    for root, dirs, files in os.walk(dst):
        for name in dirs + files:
            p = Path(root) / name
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)
    dst.chmod(dst.stat().st_mode | stat.S_IWUSR)


def _rmtree(path: Path) -> None:
    def make_writable(func, p, _exc):  # type: ignore[no-untyped-def]
        os.chmod(p, stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
        func(p)

    if path.exists():
        shutil.rmtree(path, onerror=make_writable)


def local_replaces(go: str, env: dict[str, str], src: Path) -> set[str]:
    """The directories the tree's go.mod replaces modules with (e.g. {'api', 'sdk'})."""
    edit = json.loads(_run([go, "mod", "edit", "-json"], env=env, cwd=src))
    return {
        r["New"]["Path"].removeprefix("./").rstrip("/")
        for r in edit.get("Replace") or []
        if r["New"]["Path"].startswith(".")
    }


class _Progress:
    """Counts go build -v's package lines and says every 20 s how far the build is; keeps the tail for errors."""

    def __init__(self, name: str, out: IO[str]) -> None:
        self.name, self.out, self.packages, self.downloads = name, out, 0, 0
        self.start = self.last = time.monotonic()
        self.tail: list[str] = []

    def line(self, text: str) -> None:
        self.tail = (self.tail + [text])[-40:]
        if text.startswith("go: downloading"):
            self.downloads += 1
        elif text and not text.startswith(("#", " ", "\t")):
            self.packages += 1
        now = time.monotonic()
        if now - self.last >= 20:
            self.last = now
            self.say()

    def say(self, suffix: str = "") -> None:
        print(
            f"agents: {self.name}: {self.downloads} modules downloaded, {self.packages} packages compiled, "
            f"{time.monotonic() - self.start:.0f}s{suffix}",
            file=self.out,
            flush=True,
        )


def build(release: Release, out: IO[str] = sys.stderr) -> Path:
    """Build one agent into its cache folder (see the module docstring) and return the binary's path."""
    go = find_go()
    env = go_env(go)
    go_version = _go_version(go)
    folder = agent_dir(release, go_version)
    started = time.monotonic()
    print(f"agents: building {release.name} {release.version} with {go_version} into {folder}", file=out, flush=True)

    root = download(go, env, release.module, f"v{release.version}")
    require_mpl(release.module, release.version, Path(root["Dir"]))
    origin = root.get("Origin") or {}
    info = json.loads(Path(root["Info"]).read_text(encoding="utf-8"))
    commit = origin.get("Hash") or info.get("Origin", {}).get("Hash", "")
    if not commit:
        raise AgentsUnavailable(f"the proxy gave no commit for {release.module}@v{release.version}")
    date = info["Time"].replace(".000000000", "")

    src = cache_root() / "src" / f"{release.name}-{release.version}"
    _rmtree(src)
    src.parent.mkdir(parents=True, exist_ok=True)
    _copy_writable(Path(root["Dir"]), src)
    wanted = local_replaces(go, env, src)
    pinned = {n.dir for n in release.nested}
    if wanted != pinned:
        raise AgentsUnavailable(
            f"{release.module}@v{release.version}'s go.mod replaces {sorted(wanted)} locally, the recipe pins "
            f"{sorted(pinned)}: update tests/agents.py"
        )
    for nested in release.nested:
        # GONOSUMDB for this one module only: the pinned h1: sum below is checked instead of the database's.
        nested_env = {**env, "GONOSUMDB": nested.module}
        got = download(go, nested_env, nested.module, nested.version)
        if got.get("Sum") != nested.sum:
            raise AgentsUnavailable(
                f"{nested.module}@{nested.version} has checksum {got.get('Sum')}, the recipe pins {nested.sum}"
            )
        require_mpl(nested.module, nested.version, Path(got["Dir"]))
        _rmtree(src / nested.dir)
        _copy_writable(Path(got["Dir"]), src / nested.dir)
        print(f"agents: {release.name}: ./{nested.dir} <- {nested.module}@{nested.version} (MPL-2.0)", file=out)

    staging = folder.with_name(folder.name + ".partial")
    _rmtree(staging)
    staging.mkdir(parents=True)
    binary = staging / release.name
    ldflags = release.ldflags.format(commit=commit, commit8=commit[:8], date=date)
    # No -checklinkname=0: Go 1.23+ refuses //go:linkname pulls of runtime internals that are not marked as
    # allowed, which some 2023-era modules do, but both releases' full dependency sets link unchanged with
    # Go 1.26 (tried: Consul 1.16.3 and Nomad 1.6.3 as pinned here). A newer Go that fails at link would say so.
    argv = [go, "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(binary)]
    if release.tags:
        argv += ["-tags", ",".join(release.tags)]
    argv.append(".")
    build_env = {**env, "CGO_ENABLED": "1" if release.cgo else "0"}
    progress = _Progress(release.name, out)
    progress.say(" (go build started)")
    with subprocess.Popen(
        argv, cwd=src, env=build_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as child:
        assert child.stdout is not None
        for text in child.stdout:
            progress.line(text.rstrip("\n"))
        code = child.wait()
    if code != 0:
        print("\n".join(progress.tail), file=out)
        raise AgentsUnavailable(f"go build of {release.name} {release.version} failed (exit {code}); output above")
    progress.say(" (linked)")

    modcache = Path(_run([go, "env", "GOMODCACHE"], env=env).strip())
    licences = check_linked_licences(_run([go, "version", "-m", str(binary)], env=env), modcache)
    version_out = _run([str(binary), "version"], env=env)
    if f"v{release.version}" not in version_out.split("\n", 1)[0]:
        raise AgentsUnavailable(f"{binary} version says {version_out.splitlines()[:1]}, not v{release.version}")
    (staging / "version.txt").write_text(version_out, encoding="utf-8")
    (staging / "licences.txt").write_text("\n".join(licences) + "\n", encoding="utf-8")
    (staging / "recipe.json").write_text(
        json.dumps({**recipe(release, go_version), "commit": commit, "date": date}, indent=2) + "\n",
        encoding="utf-8",
    )
    (staging / f"{release.name}.sha256").write_text(f"{sha256_file(binary)}  {release.name}\n", encoding="ascii")
    _rmtree(folder)
    staging.rename(folder)
    minutes = (time.monotonic() - started) / 60
    print(
        f"agents: {release.name} {release.version} built in {minutes:.1f} min: {folder / release.name}"
        f" ({len(licences)} modules linked, none under BUSL)",
        file=out,
        flush=True,
    )
    return folder / release.name


def find(build_missing: bool = False, out: IO[str] = sys.stderr) -> dict[str, Path]:
    """{'consul': path, 'nomad': path}; builds the missing ones when asked, else AgentsUnavailable saying how."""
    go = find_go()
    go_version = _go_version(go)
    paths: dict[str, Path] = {}
    for release in RELEASES:
        found = cached(release, go_version)
        if found is None and not build_missing:
            raise AgentsUnavailable(
                f"{release.name} {release.version} is not built yet: run `.venv/bin/python -m tests.agents`"
                " (or bin/setup --test); the first build takes many minutes"
            )
        paths[release.name] = found or _build_once(release, go_version, out)
    return paths


def _build_once(release: Release, go_version: str, out: IO[str]) -> Path:
    """Build under a lock, so that two processes (bin/setup, a test run) never share a staging folder."""
    import fcntl

    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / f".{release.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return cached(release, go_version) or build(release, out=out)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require() -> dict[str, Path]:
    """For tests: the built agents, never building; without them skip saying why, except in CI (CI=true)."""
    import pytest

    try:
        return find()
    except AgentsUnavailable as exc:
        if in_ci():
            pytest.fail(f"{exc} (bin/setup --test builds them)")
        pytest.skip(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.agents", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only look in the cache; exit 1 when not built")
    args = parser.parse_args(argv)
    try:
        paths = find(build_missing=not args.check)
    except AgentsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: agent build interrupted by Ctrl-C; rerun to build again", file=sys.stderr)
        return 130
    for name, path in paths.items():
        print(f"{name} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
