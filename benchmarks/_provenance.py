"""Provenance of a benchmark result: the machine, the library versions, the git commit and the command.

Every invocation of a script on :mod:`_harness` stores :func:`run_info` beside its results, so that a number in
``benchmarks/results/`` says where, when and from what code it came.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
_LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "triton", "matplotlib", "tqdm", "attention-kernels")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on (``None`` where not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in _LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def machine_info(device: Any = None) -> dict[str, Any]:
    """CPU, core counts, load average (a shared machine shows here), torch threads and GPU name."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["device"] = str(device) if device is not None else "cpu"
        info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:  # a numpy-only benchmark
        pass
    return info


def git_state(repo: Path = REPO) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout, ``(None, None)`` outside a git work tree."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())


def run_info(device: Any = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Provenance of one invocation: time, command, git commit, machine and library versions."""
    commit, dirty = git_state()
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(".py"):
        try:
            argv[0] = str(Path(argv[0]).resolve().relative_to(REPO))
        except ValueError:
            pass
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + shlex.join(argv) if argv else None,
        "git_commit": commit,
        "git_dirty": dirty,
        "machine": machine_info(device),
        "versions": library_versions(),
    }
