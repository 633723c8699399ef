"""Cross-validation for pairwise data: the four standard settings, grouped by row and column objects.

A pair (x_a, y_b) belongs to row object a and column object b. The settings (Pahikkala et al., "Toward more
realistic drug-target interaction predictions", Briefings in Bioinformatics 16(2), 2015; Park and Marcotte,
Nature Methods 9, 2012) differ in what is new at test time:

============ ==================================================== ==================================
setting      test pairs                                           training pairs
============ ==================================================== ==================================
``pairs``    a fold of the pairs (rows and columns all known)     the other pairs
``rows``     every pair of a fold of the row objects              pairs of the other rows
``columns``  every pair of a fold of the column objects           pairs of the other columns
``both``     rows of row fold i and columns of column fold j      pairs with neither (n_splits^2 splits)
============ ==================================================== ==================================
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.model_selection import BaseCrossValidator, KFold
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array

__all__ = ["PairwiseKFold", "SETTINGS"]

SETTINGS = ("pairs", "rows", "columns", "both")


class PairwiseKFold(BaseCrossValidator):
    """K-fold cross-validation over pairs in one of the four pairwise settings.

    Parameters
    ----------
    setting : {"pairs", "rows", "columns", "both"}, default="pairs"
        What is new in the test fold: the pairs, the row objects, the column objects, or both (see the module
        docstring). ``"both"`` gives ``n_splits ** 2`` splits.
    n_splits : int, default=3
        Folds of the pairs, the rows or the columns (at least 2).
    shuffle : bool, default=True
        Shuffle the pairs or objects before the folds are cut.
    random_state : int, RandomState instance or None, default=None
    n_features_x : int, default=None
        When ``groups`` is not given to :meth:`split`: the number of row-side columns of ``X`` (pairs as rows,
        as in :class:`rkbs.estimators.BinaryKernelRidge`); identical row-side points are one row object, and
        likewise for the column side.

    Examples
    --------
    >>> import numpy as np
    >>> from rkbs.model_selection import PairwiseKFold
    >>> groups = np.array([(a, b) for a in range(4) for b in range(3)])  # (row id, column id) per pair
    >>> cv = PairwiseKFold("both", n_splits=2, random_state=0)
    >>> [len(test) for _, test in cv.split(np.zeros((12, 1)), groups=groups)]
    [4, 2, 4, 2]
    """

    def __init__(self, setting="pairs", n_splits=3, *, shuffle=True, random_state=None, n_features_x=None):
        self.setting = setting
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state
        self.n_features_x = n_features_x

    def _check(self) -> int:
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        if isinstance(self.n_splits, bool) or not isinstance(self.n_splits, numbers.Integral) or self.n_splits < 2:
            raise ValueError(f"n_splits must be an integer >= 2, got {self.n_splits!r}")
        return int(self.n_splits)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """``n_splits``, or ``n_splits ** 2`` for ``setting="both"``."""
        k = self._check()
        return k * k if self.setting == "both" else k

    def _ids(self, X, groups) -> tuple[np.ndarray, np.ndarray]:
        if groups is None:
            if self.n_features_x is None:
                raise ValueError("groups (an (n_pairs, 2) array of row and column ids) is required, or set "
                                 "n_features_x to group pairs by identical row-side and column-side points")
            X = check_array(X, input_name="X")
            if not 1 <= self.n_features_x < X.shape[1]:
                raise ValueError(f"n_features_x={self.n_features_x} does not split X with {X.shape[1]} columns")
            rows = np.unique(X[:, : self.n_features_x], axis=0, return_inverse=True)[1].ravel()
            cols = np.unique(X[:, self.n_features_x :], axis=0, return_inverse=True)[1].ravel()
            return rows, cols
        groups = np.asarray(groups)
        if groups.ndim != 2 or groups.shape[1] != 2:
            raise ValueError(f"groups must have shape (n_pairs, 2): the row id and the column id of every pair; "
                             f"got shape {groups.shape}")
        if X is not None and len(X) != groups.shape[0]:
            raise ValueError(f"groups has {groups.shape[0]} pairs but X has {len(X)}")
        rows = np.unique(groups[:, 0], return_inverse=True)[1].ravel()
        cols = np.unique(groups[:, 1], return_inverse=True)[1].ravel()
        return rows, cols

    def _folds(self, n_items: int, k: int, rng, what: str) -> list[np.ndarray]:
        if n_items < k:
            raise ValueError(f"n_splits={k} is more than the number of {what} ({n_items})")
        kf = KFold(k, shuffle=self.shuffle, random_state=rng if self.shuffle else None)
        return [test for _, test in kf.split(np.zeros(n_items))]

    def split(self, X, y=None, groups=None):
        """Generate train and test indices of the pairs.

        Parameters
        ----------
        X : array-like of shape (n_pairs, n_features)
        y : ignored
        groups : array-like of shape (n_pairs, 2), default=None
            The row object and the column object of every pair (any hashable ids).

        Yields
        ------
        train, test : ndarray of int
        """
        rows, cols = self._ids(X, groups)
        yield from self._split_ids(rows, cols, int(rows.max()) + 1, int(cols.max()) + 1)

    def split_grid(self, shape, observed=None):
        """Train and test masks on a response grid of the given shape (rows x columns).

        Parameters
        ----------
        shape : tuple of int
            (n_rows, n_columns).
        observed : array-like of bool of shape ``shape``, default=None
            The observed pairs (NaN-free entries); only they enter the masks.

        Yields
        ------
        train, test : ndarray of bool of shape ``shape``
        """
        n_x, n_y = (int(s) for s in shape)
        observed = np.ones((n_x, n_y), dtype=bool) if observed is None else np.asarray(observed, dtype=bool)
        if observed.shape != (n_x, n_y):
            raise ValueError(f"observed must have shape {(n_x, n_y)}, got {observed.shape}")
        a, b = np.meshgrid(np.arange(n_x), np.arange(n_y), indexing="ij")
        a, b = a[observed], b[observed]
        # ids over the full grid: a row with no observed pair still belongs to a fold
        for train, test in self._split_ids(a, b, n_x, n_y):
            masks = []
            for idx in (train, test):
                m = np.zeros((n_x, n_y), dtype=bool)
                m[a[idx], b[idx]] = True
                masks.append(m)
            yield masks[0], masks[1]

    def _split_ids(self, rows, cols, n_rows, n_cols):
        k = self._check()
        rng = check_random_state(self.random_state)
        n = rows.shape[0]
        if self.setting == "pairs":
            for fold in self._folds(n, k, rng, "pairs"):
                test = np.zeros(n, dtype=bool)
                test[fold] = True
                yield np.flatnonzero(~test), np.flatnonzero(test)
            return
        row_folds = self._folds(n_rows, k, rng, "row objects") if self.setting != "columns" else [None]
        col_folds = self._folds(n_cols, k, rng, "column objects") if self.setting != "rows" else [None]
        everything = np.ones(n, dtype=bool)
        for rf in row_folds:
            in_r = everything if rf is None else np.isin(rows, rf)
            for cf in col_folds:
                in_c = everything if cf is None else np.isin(cols, cf)
                train = {"rows": ~in_r, "columns": ~in_c, "both": ~in_r & ~in_c}[self.setting]
                yield np.flatnonzero(train), np.flatnonzero(in_r & in_c)
