"""Shared harness for the scripts in ``benchmarks/``: flags, progress, one results layout, plots, resuming.

Every script builds its command line with :func:`make_parser` (``--quick``, ``--out DIR``, ``--seeds``,
``--device``, ``--threads``, ``--fresh``, ``--name``), opens a :class:`Results` store and runs only the results
that are not in it yet::

    import _harness  # benchmarks/ is on sys.path when a script in it runs

    args = _harness.make_parser(__doc__, name="my_bench").parse_args()
    results = _harness.Results.open(args, key=("task", "kernel", "seed"), config={"steps": 100})
    for key in results.pending([dict(task=t, kernel=k, seed=s) for t in ... for k in ... for s in args.seeds]):
        results.add({**key, "accuracy": run(**key)})      # written to JSON and CSV at once

Layout of ``<out>/<name>.json`` (``<name>_quick.json`` with ``--quick``)::

    {"layout": 1, "name": ..., "key": [...], "config": {...},
     "runs": [{"started", "command", "git_commit", "git_dirty", "machine", "versions"}, ...],
     "results": [{..., "run": index into runs}, ...], "summary": {...}}

``<out>/<name>.csv`` holds the same rows, one per line. A run killed half-way resumes where it stopped: the
store is rewritten (atomically) after every result, and a second invocation skips the keys already present. It
refuses to resume a file written with a different ``config`` (pass ``--fresh`` or another ``--out``), and a
store open in one process is locked (``<name>.json.lock``) against a second one, whose writes would otherwise
overwrite each other's results.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# The harness's own modules sit beside it (a module loaded from its file, as the tests do, finds them too), and
# scripts run as ``python benchmarks/x.py`` import the project from the checkout they live in.
for _path in (Path(__file__).resolve().parent, Path(__file__).resolve().parents[1]):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _provenance import REPO, run_info  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
LAYOUT_VERSION = 1


# ------------------------------------------------------------------------------------------------ command line
def make_parser(description: str | None, *, name: str, seeds: Sequence[int] = (0,),
                device: str = "cpu") -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the flags every benchmark shares.

    Parameters
    ----------
    description : str or None
        Usually the script's ``__doc__``.
    name : str
        Results file stem: ``<out>/<name>.json`` (``<name>_quick.json`` under ``--quick``).
    seeds : sequence of int
        Default ``--seeds``.
    device : str
        Default ``--device`` (``"auto"`` picks CUDA when available).
    """
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small but real run (writes <name>_quick.*)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds), help="random seeds (default: %(default)s)")
    parser.add_argument("--device", default=device, help="torch device: cpu, cuda, cuda:1 or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--fresh", action="store_true", help="discard stored results instead of resuming")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    parser.add_argument("--name", default=name, help="results file stem (default: %(default)s)")
    return parser


def resolve_device(spec: str):
    """``torch.device`` for ``--device`` (``"auto"``: CUDA when available, else CPU); errors name the flag."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"--device {spec!r} is not a torch device") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec!r}: CUDA is not available on this machine")
    return device


def setup(args: argparse.Namespace):
    """Apply ``--threads`` and return the resolved ``--device``."""
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


# ------------------------------------------------------------------------------------------------ results
def _jsonable(value: Any) -> Any:
    """Plain JSON types for numpy scalars/arrays, paths and tuples (configs and rows may hold them)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return _jsonable(value.tolist())
    if isinstance(value, float) and value != value:
        return None  # NaN is not JSON; a missing value reads the same in the CSV
    return value


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Rows as CSV: the union of their fields in first-seen order; lists and dicts JSON-encoded."""
    fields: dict[str, None] = {}
    for row in rows:
        fields.update(dict.fromkeys(row))
    lines: list[dict[str, Any]] = []
    for row in rows:
        lines.append({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    _atomic_write(path, buffer.getvalue())


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results JSON of this layout or of the scripts' older ones, as ``{"config", "runs", "results", ...}``.

    Older files (before the harness) kept their rows under ``"results"`` or ``"rows"`` and their provenance under
    ``"meta"`` or ``"machine"``; they are returned with that provenance as the single entry of ``"runs"``.
    """
    data = json.loads(Path(path).read_text())
    if data.get("layout") == LAYOUT_VERSION:
        return data
    rows = data.get("results", data.get("rows"))
    if not isinstance(rows, list):
        rows = [{"name": k, "value": v} for k, v in data.items() if k not in ("meta", "machine")]
    legacy = {k: v for k, v in data.items() if k not in ("results", "rows")}
    return {"layout": 0, "name": Path(path).stem, "key": [], "config": {}, "runs": [legacy], "results": rows,
            "summary": {}}


def results_path(args: argparse.Namespace) -> Path:
    """The results file a script's parsed :func:`make_parser` flags name: ``<out>/<name>[_quick].json``."""
    return Path(args.out) / (args.name + ("_quick" if args.quick else "") + ".json")


class Results:
    """A resumable store of result rows keyed by ``key`` fields, mirrored to ``<stem>.json`` and ``<stem>.csv``.

    Parameters
    ----------
    path : str or Path
        The JSON file (the CSV sits beside it with the same stem).
    key : sequence of str
        Fields that identify one result, e.g. ``("task", "kernel", "seed")``.
    config : mapping, optional
        Settings every stored result shares (steps, widths, ...); resuming under a different config raises.
    fresh : bool
        Start empty, ignoring (and on the first write replacing) a stored file.
    run : mapping, optional
        Provenance of this invocation (default: :func:`run_info`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "demo.json"
    >>> store = Results(path, key=("kernel", "seed"), config={"steps": 10})
    >>> store.add({"kernel": "edp", "seed": 0, "accuracy": 0.9})
    >>> store.close()  # the file is locked while a store has it open
    >>> with Results(path, key=("kernel", "seed"), config={"steps": 10}) as again:
    ...     again.done(kernel="edp", seed=0)
    True
    """

    def __init__(self, path: str | Path, key: Sequence[str], config: Mapping[str, Any] | None = None, *,
                 fresh: bool = False, run: Mapping[str, Any] | None = None, progress: bool = True):
        if isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty sequence of field names, got {key!r}")
        self.path = Path(path).with_suffix(".json")
        self.csv_path = self.path.with_suffix(".csv")
        self._lock = None
        self._acquire_lock()
        self.key = tuple(key)
        self.config = _jsonable(dict(config or {}))
        self.progress = progress
        self.rows: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        if self.path.exists() and not fresh:
            try:
                self._load()
            except BaseException:
                self.close()
                raise
        self._run_index = len(self.runs)
        self.runs.append(_jsonable(dict(run) if run is not None else run_info()))
        self._index = {self._key_of(row): i for i, row in enumerate(self.rows)}

    @classmethod
    def open(cls, args: argparse.Namespace, key: Sequence[str], config: Mapping[str, Any] | None = None,
             device: Any = None) -> Results:
        """The store a script's parsed :func:`make_parser` flags name: :func:`results_path`."""
        return cls(results_path(args), key, config, fresh=args.fresh, run=run_info(device),
                   progress=not args.no_progress)

    def _acquire_lock(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(self.path.with_name(self.path.name + ".lock"), "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise RuntimeError(f"{self.path} is in use by another run (or another open Results in this process); "
                               "wait for it, or write elsewhere with --out / --name") from None
        self._lock = lock

    def close(self) -> None:
        """Release the store's lock (also released when the object is garbage collected or the process exits)."""
        lock = getattr(self, "_lock", None)  # absent when __init__ failed before taking it
        if lock is not None:
            lock.close()
            self._lock = None

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _load(self) -> None:
        data = self._compatible(self.path, "pass --fresh to start over or --out to write elsewhere")
        self.rows, self.runs, self.summary = data["results"], data["runs"], data.get("summary", {})

    def _compatible(self, path: Path, remedy: str) -> dict[str, Any]:
        """The results file at ``path``, if it has this store's layout, key and config (else a ValueError)."""
        data = json.loads(path.read_text())
        if data.get("layout") != LAYOUT_VERSION:
            raise ValueError(f"{path} is not a results file of layout {LAYOUT_VERSION}; {remedy}")
        if tuple(data["key"]) != self.key:
            raise ValueError(f"{path} is keyed by {data['key']}, not {list(self.key)}; {remedy}")
        if data["config"] != self.config:
            changed = sorted(k for k in set(data["config"]) | set(self.config)
                             if data["config"].get(k) != self.config.get(k))
            raise ValueError(f"{path} was written with a different config (changed: {', '.join(changed)}); {remedy}")
        return data

    def _key_of(self, row: Mapping[str, Any]) -> tuple:
        missing = [k for k in self.key if k not in row]
        if missing:
            raise KeyError(f"result is missing key field(s) {missing}; key is {list(self.key)}")
        return tuple(json.dumps(_jsonable(row[k]), sort_keys=True) for k in self.key)

    def __len__(self) -> int:
        return len(self.rows)

    def done(self, **key: Any) -> bool:
        """Whether the result with these key values is stored."""
        return self._key_of(key) in self._index

    def get(self, **key: Any) -> dict[str, Any] | None:
        """The stored row with these key values, or ``None``."""
        i = self._index.get(self._key_of(key))
        return None if i is None else self.rows[i]

    def select(self, **fields: Any) -> list[dict[str, Any]]:
        """Stored rows whose fields equal the given values."""
        return [r for r in self.rows if all(r.get(k) == v for k, v in fields.items())]

    def add(self, row: Mapping[str, Any]) -> None:
        """Store one finished result (replacing one with the same key) and write JSON and CSV at once."""
        row = _jsonable(dict(row))
        row["run"] = self._run_index
        k = self._key_of(row)
        if k in self._index:
            self.rows[self._index[k]] = row
        else:
            self._index[k] = len(self.rows)
            self.rows.append(row)
        self.save()

    def merge(self, path: str | Path) -> int:
        """Add the rows of another results file that this store lacks; return how many were added.

        The way to run one long benchmark as parallel shards: each shard writes its own file (``--out`` or
        ``--name``, a copy of the stored file to resume from, a subset of the work), and the shards are merged
        into one. The other file must have this store's key and config. A key stored in both keeps this store's
        row; an added row keeps its provenance (the other file's run it came from is appended to ``runs``).
        Summary entries this store lacks are taken from the other file (its own are kept), and so are the items
        a dictionary entry of this store lacks (a shard's new task in a per-task summary).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> with Results(folder / "shard.json", key=("kernel",)) as shard:
        ...     shard.add({"kernel": "rbf", "accuracy": 0.8})
        >>> with Results(folder / "main.json", key=("kernel",)) as store:
        ...     store.add({"kernel": "edp", "accuracy": 0.9})
        ...     store.merge(folder / "shard.json"), len(store)
        (1, 2)
        """
        path = Path(path).with_suffix(".json")
        if path.resolve() == self.path.resolve():
            raise ValueError(f"cannot merge {path} into itself")
        data = self._compatible(path, "its results are not comparable with this store's")
        new_run_index: dict[Any, int] = {}
        added = 0
        for row in data["results"]:
            k = self._key_of(row)
            if k in self._index:
                continue
            source_run = row.get("run")
            if source_run not in new_run_index:
                runs = data.get("runs", [])
                info = runs[source_run] if isinstance(source_run, int) and 0 <= source_run < len(runs) else {}
                new_run_index[source_run] = len(self.runs)
                self.runs.append(dict(info, merged_from=str(path)))
            self._index[k] = len(self.rows)
            self.rows.append(dict(row, run=new_run_index[source_run]))
            added += 1
        for name, value in data.get("summary", {}).items():
            mine = self.summary.setdefault(name, value)
            if isinstance(mine, dict) and isinstance(value, dict):  # e.g. one entry per task: add the new tasks'
                for part, v in value.items():
                    mine.setdefault(part, v)
        self.save()
        return added

    def set_summary(self, **values: Any) -> None:
        """Store derived numbers (tables, fits) beside the rows and write at once."""
        self.summary.update(_jsonable(values))
        self.save()

    def save(self) -> None:
        data = {"layout": LAYOUT_VERSION, "name": self.path.stem, "key": list(self.key), "config": self.config,
                "runs": self.runs, "results": self.rows, "summary": self.summary}
        _atomic_write(self.path, json.dumps(data, indent=1) + "\n")
        write_csv(self.rows, self.csv_path)

    def pending(self, keys: Iterable[Mapping[str, Any]], desc: str | None = None) -> Iterator[dict[str, Any]]:
        """The keys not stored yet, with a tqdm bar over all of them (the stored ones count as done)."""
        keys = [dict(k) for k in keys]
        todo = [k for k in keys if not self.done(**k)]
        bar = progress(total=len(keys), initial=len(keys) - len(todo), desc=desc or self.path.stem,
                       disable=not self.progress)
        try:
            for k in todo:
                bar.set_postfix_str(" ".join(f"{v}" for v in k.values()), refresh=False)
                yield k
                bar.update(1)
        finally:
            bar.close()


def merge_results(paths: Iterable[str | Path], out: str | Path) -> list[tuple[Path, int]]:
    """Merge each results file into the file of the same name in ``out`` (:meth:`Results.merge`).

    The target keeps its key and config (a new target takes the first file's); returns ``(target, rows added)``
    per file. What a script's ``--merge FILE ...`` does with parallel shards' files.
    """
    done = []
    for path in paths:
        data = load_results(path)
        target = Path(out) / f"{data['name']}.json"
        spec = load_results(target) if target.exists() else data
        with Results(target, key=spec["key"], config=spec["config"], progress=False) as store:
            done.append((target, store.merge(path)))
    return done


# ------------------------------------------------------------------------------------------------ statistics
def paired_ci(a, b, level=0.95):
    """Mean and t confidence interval of ``a - b`` over paired seeds or folds (``None`` bounds below 2 pairs)."""
    import numpy as np
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean, mean - half, mean + half


# ------------------------------------------------------------------------------------------------ progress, timing
def progress(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm bar (``tqdm.auto``) that redraws at most once a second, so logs of long runs stay short."""
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 1.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def log(message: str) -> None:
    """Print above any progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(message)


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    Linux's ``VmHWM`` belongs to the address space that ``exec`` created; ``ru_maxrss`` does not: a child started
    by multiprocessing's "spawn" inherits its parent's high-water mark (fork copies the parent's pages and exec
    keeps their peak), which hides every fit smaller than the parent. ``ru_maxrss`` is the fallback elsewhere.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)


class Timer:
    """``with Timer() as t: ...; t.seconds`` (wall clock, ``time.perf_counter``)."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._start


# ------------------------------------------------------------------------------------------------ plots
def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg back end (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, caption: str | None = None, dpi: int = 120) -> Path:
    """Write ``fig`` (PNG unless ``path`` names another suffix), with an optional caption, and close it."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    if caption:
        fig.text(0.01, 0.005, caption, fontsize=7, color="0.35", ha="left", va="bottom")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0.03 if caption else 0, 1, 1))
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def provenance_caption(results: Results) -> str:
    """One line for a figure: command, commit and machine of the newest run."""
    run = results.runs[-1]
    commit = (run.get("git_commit") or "?")[:10] + ("+dirty" if run.get("git_dirty") else "")
    machine = run.get("machine", {})
    return (f"{run.get('command')}  |  commit {commit}  |  {machine.get('processor')}, "
            f"{machine.get('usable_cpus')} CPUs, {machine.get('device')}")
