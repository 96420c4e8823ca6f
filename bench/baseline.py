"""The other side of an A/B run: another version of the gateway, built once and kept.

`--baseline REF` names a git ref of this repository (`main`, `HEAD~3`, a sha) or the path of
another checkout. A ref is checked out, detached, as a git worktree in
`bench/.ab/<sha>/tree` (git-ignored) with its own virtual environment in
`bench/.ab/<sha>/venv` (`python -m venv`, then `pip install -e tree`: the gateway's runtime
dependencies, none of its dev tools; the harness's own pip does the install, which saves
seeding pip into every venv). A `ready` file written once the install succeeded lets
later runs of the same sha reuse both; a half-built one is finished on the next run. A path is
used as it is, with its own `.venv` when it has one (as `make install` makes it), else with a
venv built the same way in `bench/.ab/path-<hash>/`.

Only the baseline's gateway runs from there (its `vllm-gateway serve` and `keys create`):
the harness, the load and the audit are this checkout's, the same for both sides.
Delete `bench/.ab/` to rebuild everything; `git worktree prune` then forgets the trees.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().parent / ".ab"


@dataclass(frozen=True)
class Baseline:
    """Where the baseline's gateway is and what it is."""

    label: str  # e.g. "main (93b1eef)" or a path
    cli: Path  # its `vllm-gateway`
    source: Path  # its checkout
    sha: str | None  # its commit, when known


def _git(*args: str, cwd: Path = REPOSITORY) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _install(venv: Path, source: Path) -> None:
    """Install `source` (editable, with its dependencies) into a new venv at `venv`."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300
        )
    _log(f"installing {source} into {venv} (once per version)")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "install", "--quiet", "-e", str(source)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:  # pip's chatter only when it failed
        raise RuntimeError(f"pip install -e {source} failed:\n{done.stdout}{done.stderr}")


def venv_for(directory: Path, source: Path) -> Path:
    """`vllm-gateway` of the venv in `directory` for `source`, built unless a finished one is
    there (the `ready` file is written only after the install succeeded)."""
    venv, marker = directory / "venv", directory / "ready"
    cli = venv / "bin" / "vllm-gateway"
    if not (marker.exists() and cli.exists()):
        _install(venv, source)
        marker.write_text(f"{source}\n")
    return cli


def checkout(ref: str, cache: Path = CACHE) -> tuple[str, Path]:
    """(sha, tree): `ref` checked out as a detached worktree under `cache`, unless it is."""
    sha = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    tree = cache / sha / "tree"
    if not (tree / "pyproject.toml").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        _log(f"checking out {ref} ({sha[:7]}) in {tree}")
        # --force: a tree deleted by hand is still registered until `git worktree prune`.
        _git("worktree", "add", "--force", "--detach", str(tree), sha)
    elif _git("rev-parse", "HEAD", cwd=tree) != sha:
        raise RuntimeError(f"{tree} is not at {sha}: delete {tree.parent} and run again")
    return sha, tree


def build_ref(ref: str, cache: Path = CACHE) -> Baseline:
    """`ref` checked out and installed under `cache`, or what an earlier run left there."""
    sha, tree = checkout(ref, cache)
    return Baseline(f"{ref} ({sha[:7]})", venv_for(tree.parent, tree), tree, sha)


def use_checkout(path: Path, cache: Path = CACHE) -> Baseline:
    """Another checkout as it is: its own .venv, or one built for it under `cache`."""
    source = path.resolve()
    own = source / ".venv" / "bin" / "vllm-gateway"
    if own.exists():
        cli = own
    else:
        digest = hashlib.sha256(str(source).encode()).hexdigest()[:12]
        cli = venv_for(cache / f"path-{digest}", source)
    try:
        sha: str | None = _git("rev-parse", "HEAD", cwd=source)
    except RuntimeError:
        sha = None
    label = str(source) + (f" ({sha[:7]})" if sha else "")
    return Baseline(label, cli, source, sha)


def resolve(baseline: str, cache: Path = CACHE) -> Baseline:
    """A path to a checkout if `baseline` is one, else a git ref of this repository."""
    path = Path(baseline).expanduser()
    if path.is_dir() and (path / "pyproject.toml").exists():
        return use_checkout(path, cache)
    return build_ref(baseline, cache)
