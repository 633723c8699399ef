"""A real text task that runs offline: characters of the Python standard library's own source files.

The files are found through ``sysconfig.get_paths()["stdlib"]`` (every CPython install ships them), read as
UTF-8 and encoded over a fixed 98-symbol vocabulary (tab, newline, printable ASCII and one "other" symbol for the
rare non-ASCII character), so the task is the same on every machine with the same Python minor version. Each file
is split once: its first ``1 - validation_fraction`` of characters go to training, the rest to validation, so
both splits see every file's style and no window crosses from training into validation text.
"""

from __future__ import annotations

import string
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state

from ._validation import check_float, check_int

__all__ = ["STDLIB_TEXT_FILES", "TEXT_VOCABULARY", "TextCorpus", "decode_text", "encode_text", "load_stdlib_text",
           "make_char_windows"]

#: The default files, relative to the standard library directory (all present in CPython 3.10 to 3.13; about
#: 530,000 characters in 3.11).
STDLIB_TEXT_FILES = (
    "argparse.py", "calendar.py", "configparser.py", "csv.py", "dataclasses.py", "difflib.py", "fractions.py",
    "functools.py", "heapq.py", "json/decoder.py", "json/encoder.py", "pprint.py", "shlex.py", "statistics.py",
    "string.py", "textwrap.py",
)
#: Symbol 0 stands for any character outside the others (non-ASCII, control characters).
TEXT_VOCABULARY = "\x00\t\n" + "".join(chr(c) for c in range(32, 127))
_LOOKUP = np.zeros(128, dtype=np.int64)
_LOOKUP[[ord(c) for c in TEXT_VOCABULARY[1:]]] = np.arange(1, len(TEXT_VOCABULARY))
assert set(TEXT_VOCABULARY[3:]) == set(string.printable) - set("\t\n\r\x0b\x0c")


def encode_text(text: str) -> np.ndarray:
    """Symbol ids (int64) of ``text`` over :data:`TEXT_VOCABULARY`; unknown characters become 0."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    ids = np.zeros(len(codes), dtype=np.int64)
    ascii_ = codes < 128
    ids[ascii_] = _LOOKUP[codes[ascii_]]
    return ids


def decode_text(ids) -> str:
    """The characters of symbol ids (0 decodes to U+0000)."""
    ids = np.asarray(ids)
    if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= len(TEXT_VOCABULARY)):
        raise ValueError(f"ids must be integers in 0..{len(TEXT_VOCABULARY) - 1}")
    return "".join(TEXT_VOCABULARY[i] for i in ids.ravel())


@dataclass(frozen=True)
class TextCorpus:
    """Encoded training and validation text.

    Attributes
    ----------
    train, validation : ndarray of int64
        Symbol ids over :data:`TEXT_VOCABULARY`.
    files : tuple of str
        The files read, in order (absolute paths).
    """

    train: np.ndarray
    validation: np.ndarray
    files: tuple

    @property
    def vocab_size(self) -> int:
        return len(TEXT_VOCABULARY)


def load_stdlib_text(files=STDLIB_TEXT_FILES, validation_fraction: float = 0.1, root=None) -> TextCorpus:
    """Read and split the character-level corpus.

    Parameters
    ----------
    files : sequence of str, default=STDLIB_TEXT_FILES
        Paths relative to ``root`` (or absolute), read in this order.
    validation_fraction : float, default=0.1
        Share of each file's characters (its end) held out for validation, in (0, 1).
    root : str or Path, optional
        Directory of the files; default: the standard library, ``sysconfig.get_paths()["stdlib"]``.

    Returns
    -------
    TextCorpus

    Examples
    --------
    >>> corpus = load_stdlib_text()
    >>> corpus.vocab_size, len(corpus.train) > 9 * len(corpus.validation) > 0
    (98, True)
    """
    fraction = check_float(validation_fraction, "validation_fraction", minimum=0.0, maximum=1.0,
                           min_inclusive=False, max_inclusive=False)
    if isinstance(files, (str, Path)) or len(files) == 0:
        raise ValueError(f"files must be a non-empty sequence of paths, got {files!r}")
    root = Path(sysconfig.get_paths()["stdlib"] if root is None else root)
    train, validation, paths = [], [], []
    for name in files:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"files: {str(path)!r} does not exist (the Python install may ship no sources)")
        ids = encode_text(path.read_text(encoding="utf-8", errors="replace"))
        cut = len(ids) - int(round(fraction * len(ids)))
        if cut == 0 or cut == len(ids):
            raise ValueError(f"files: {name!r} has {len(ids)} characters, too few to split at "
                             f"validation_fraction={fraction}")
        train.append(ids[:cut])
        validation.append(ids[cut:])
        paths.append(str(path))
    return TextCorpus(np.concatenate(train), np.concatenate(validation), tuple(paths))


def make_char_windows(ids, n_samples: int, context: int = 256, random_state=None):
    """Random windows for next-character prediction: inputs ``ids[s:s + context]``, targets shifted by one.

    Parameters
    ----------
    ids : array-like of int, shape (n_chars,)
        An encoded text (``TextCorpus.train`` or ``.validation``), at least ``context + 1`` long.
    n_samples : int
        Number of windows.
    context : int, default=256
        Window length.
    random_state : int, RandomState instance or None
        Seed of the window starts (uniform over every valid start).

    Returns
    -------
    X : ndarray of shape (n_samples, context), dtype int64
    Y : ndarray of shape (n_samples, context), dtype int64
        ``Y[:, t]`` is the character after ``X[:, t]``.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer array, got dtype {ids.dtype} and shape {ids.shape}")
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    context = check_int(context, "context", minimum=1)
    if len(ids) < context + 1:
        raise ValueError(f"ids has {len(ids)} symbols, fewer than context + 1 = {context + 1}")
    rng = check_random_state(random_state)
    starts = rng.randint(len(ids) - context, size=n_samples)
    index = starts[:, None] + np.arange(context + 1)
    windows = ids[index].astype(np.int64)
    return windows[:, :-1], windows[:, 1:]
