"""The training steps of BinaryKernelLearner: standardization, the pair response, schedules, warnings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ._learned_kernel import head_logits

INIT_STD = 0.5  # standard deviation of the initial logits <x W_q, y W_k> / sqrt(d) (and of q, k coordinates^2)
EXPLODED = 10.0  # a monitored loss this many times the initial one is divergence, not noise
RISING = 2.0  # stopping with the loss this many times its best means training was unstable


def standardizer(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each feature (1 for a constant one)."""
    mu, sd = P.mean(axis=0), P.std(axis=0)
    return mu, np.where(sd > 1e-12 * max(float(np.abs(P).max()), 1e-300), sd, 1.0)


def pair_response(xs, ys, ia, ib, Wq, Wk, w, bq=None, bk=None, *, cap=None, head="exp"):
    """h(xs[ia_i], ys[ib_i]) for pairs indexed into the distinct points: (n,)."""
    Q = xs @ Wq  # (H, n_x, d)
    K = ys @ Wk
    if bq is not None:
        Q = Q + bq[:, None]
        K = K + bk[:, None]
    logits = head_logits(Q[:, ia], K[:, ib], head, cap)  # (H, n)
    return w @ torch.exp(logits)


def initial_head_mean(head: str, d: int) -> float:
    """A head's mean at the initialization, so that the initial model is the responses' mean.

    Each coordinate of q and k has variance ``INIT_STD``: the exponential head's logit is about N(0, INIT_STD^2),
    mean exp(INIT_STD^2 / 2); the RBF head is exp(-t |q - k|^2) with t = 1 / (2 sqrt(d)) and q - k ~
    N(0, 2 INIT_STD I_d), mean (1 + 4 t INIT_STD)^(-d / 2).
    """
    if head == "rbf":
        return (1 + 2 * INIT_STD / math.sqrt(d)) ** (-d / 2)
    return math.exp(INIT_STD**2 / 2)


def snapshot(params) -> list[np.ndarray]:
    return [t.detach().double().cpu().numpy().copy() for t in params]


def scheduler(schedule: str, opt, max_iter: int, patience: int):
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_iter)
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(1, patience // 4))
    return None


def warn_training(reason: str, n_iter: int, best_iter: int, scores: list, validation: bool) -> None:
    what = "validation loss" if validation else "training objective"
    restored = (f"the parameters of step {best_iter} ({what} {scores[best_iter]:.4g}, initial {scores[0]:.4g}) "
                "were restored")
    if reason == "diverged":
        warnings.warn(ConvergenceWarning(f"training diverged at step {n_iter} (the {what} became non-finite or "
                                         f"grew {EXPLODED:g}-fold); {restored}. Lower learning_rate or raise "
                                         "alpha"), stacklevel=5)
    elif reason == "max_iter":
        warnings.warn(ConvergenceWarning(f"training stopped at max_iter={n_iter} while the {what} was still "
                                         f"improving; {restored}. Increase max_iter or learning_rate"),
                      stacklevel=5)
    elif best_iter == 0:
        warnings.warn(ConvergenceWarning(f"no step improved the {what} on the initialization's ({scores[0]:.4g}); "
                                         "the initial parameters were kept. Lower learning_rate"), stacklevel=5)
    elif scores[-1] > RISING * scores[best_iter]:
        warnings.warn(ConvergenceWarning(f"the {what} was rising when training stopped at step {n_iter} "
                                         f"({scores[-1]:.4g}); {restored}. Lower learning_rate"), stacklevel=5)


def finite(out: torch.Tensor) -> np.ndarray:
    if not bool(torch.isfinite(out).all()):
        raise ValueError("the learned kernel overflows on these inputs (non-finite responses); standardize them")
    return out.double().cpu().numpy()
