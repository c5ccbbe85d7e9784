"""The documented distribution of each initializer form (``note-semantics.md`` §0.4, written
here from the documentation, not from mlxnote's code), Keras's initializer that draws it,
and the verdict on a drawn sample.

Thresholds (every draw is seeded, so each verdict is fixed; the thresholds are set so that
a right draw of any seed fails with probability about e^-20 or less):

* uniform and truncated normals lie inside their bounds (widened by the dtype's rounding,
  ``REL_EPS``) and come within ``40/n`` (uniform) or ``180/n`` (truncated: the density at
  the cut is 0.057/sigma) of each bound, as a fraction of the half-width: a scale wrong by
  that much (1% or less at n >= 16384) fails;
* mean within ``SE`` = 6 standard errors (``6 std / sqrt(n)``), std within
  ``6 / sqrt(2 n)`` relative (the normal case; 6.6% at n = 4096, 3.3% at 16384);
* a two-sample Kolmogorov-Smirnov statistic against Keras's draw of the same shape at most
  ``C_ALPHA * sqrt(2 / n)`` (significance ``ALPHA`` = 1e-6, ``C_ALPHA`` = 2.69);
* orthogonal: the Gram matrix on the short side is ``gain^2 I`` within ``ORTH_TOL``
  (relative to ``gain^2``), and the diagonal's signs are fair within 6 binomial standard
  errors (the sign correction; decisive on the [512, 384] kernel row);
* constants exactly.

The statistics need ``N_STATS`` elements; a smaller weight (a conv's bias) gets the exact
properties only. Keras's draw is judged by the same exact and moment checks: a reference
that disagrees with the documented distribution is reported as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

TRUNC = 0.87962566103423978  # std of N(0, 1) cut at +-2 (note-semantics §0.4)
ALPHA = 1e-6
C_ALPHA = math.sqrt(-math.log(ALPHA / 2) / 2)
SE = 6.0
UNIFORM_EDGE, TRUNC_EDGE = 40.0, 180.0
ORTH_TOL = 1e-5
N_STATS = 1000
REL_EPS = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
KERAS_SEED = 7


@dataclass(frozen=True)
class Dist:
    """``kind``: 'const' (``a``), 'uniform' (``[a, b]``), 'trunc' (mean ``a``, sigma ``b``
    before the cut at +-2 sigma), 'normal' (mean ``a``, std ``b``), 'orth' (gain ``a``).
    ``keras``: the Keras initializer drawing it, ``(class name, kwargs)``; empty: none."""

    kind: str
    a: float = 0.0
    b: float = 0.0
    keras: tuple[str, tuple[tuple[str, Any], ...]] | tuple = field(default=(), compare=False)
    signs: bool = True  # orth: sign-corrected by sign(diag R), so the diagonal's signs are fair

    def __str__(self) -> str:
        return {"const": f"{self.a:g}", "uniform": f"U({self.a:.5g}, {self.b:.5g})",
                "trunc": f"truncated N({self.a:g}, {self.b:.5g})",
                "normal": f"N({self.a:g}, {self.b:.5g})",
                "orth": f"orthogonal (gain {self.a:g})"}[self.kind]


def _k(name: str, **kw: Any) -> tuple:
    return name, tuple(sorted(kw.items()))


def _vs(scale: float, fan: float, distribution: str, keras: tuple) -> Dist:
    """Keras's ``VarianceScaling``: ``var = scale / max(1, fan)``."""
    var = scale / max(1.0, fan)
    if distribution == "uniform":
        lim = math.sqrt(3.0 * var)
        return Dist("uniform", -lim, lim, keras)
    return Dist("trunc", 0.0, math.sqrt(var) / TRUNC, keras)


# Note's names and the Keras spellings (Keras's meaning), lower case.
_SPELLINGS = {"xavier_uniform": "xavier", "glorot_uniform": "xavier",
              "glorot_normal": "xavier_normal", "he_normal": "he", "lecun_normal": "lecun",
              "zero": "zeros", "one": "ones", "random_uniform": "uniform"}


def expect(init: Any, fans: tuple[int, int]) -> Dist:
    """The documented distribution of ``init`` for a weight with Note's ``fans``."""
    fi, fo = fans
    mode = {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2}
    if isinstance(init, str):
        key = init.lower()
        key = _SPELLINGS.get(key, key)
        named = {
            "xavier": (1.0, "fan_avg", "uniform", "GlorotUniform"),
            "xavier_normal": (1.0, "fan_avg", "truncated_normal", "GlorotNormal"),
            "he": (2.0, "fan_in", "truncated_normal", "HeNormal"),
            "he_uniform": (2.0, "fan_in", "uniform", "HeUniform"),
            "lecun": (1.0, "fan_in", "truncated_normal", "LecunNormal"),
            "lecun_uniform": (1.0, "fan_in", "uniform", "LecunUniform"),
        }
        if key in named:
            scale, m, d, cls = named[key]
            return _vs(scale, mode[m], d, _k(cls))
        return {"zeros": Dist("const", 0.0), "ones": Dist("const", 1.0),
                "normal": Dist("normal", 0.0, 1.0, _k("RandomNormal", mean=0.0, stddev=1.0)),
                "random_normal": Dist("normal", 0.0, 0.05,
                                      _k("RandomNormal", mean=0.0, stddev=0.05)),
                "uniform": Dist("uniform", -0.05, 0.05,
                                _k("RandomUniform", minval=-0.05, maxval=0.05)),
                "orthogonal": Dist("orth", 1.0, 0.0, _k("Orthogonal", gain=1.0))}[key]
    kind, *args = init
    kind = kind.lower()
    if kind == "normal":
        return Dist("normal", args[0], args[1], _k("RandomNormal", mean=args[0],
                                                   stddev=args[1]))
    if kind == "uniform":
        return Dist("uniform", args[0], args[1], _k("RandomUniform", minval=args[0],
                                                    maxval=args[1]))
    if kind == "truncated_normal":
        return Dist("trunc", 0.0, args[0], _k("TruncatedNormal", mean=0.0, stddev=args[0]))
    if kind == "variancescaling":
        scale, m, d = args
        return _vs(scale, mode[m], d, _k("VarianceScaling", scale=scale, mode=m,
                                         distribution=d))
    if kind == "orthogonal":
        return Dist("orth", args[0], 0.0, _k("Orthogonal", gain=args[0]))
    raise KeyError(kind)


@cache
def keras_draw(keras: tuple, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Keras's draw of ``shape`` (seeded), rounded to ``dtype`` as the layer's weight is."""
    import keras as K
    import mlx.core as mx

    cls, kw = keras
    init = getattr(K.initializers, cls)(**dict(kw), seed=KERAS_SEED)
    x = np.asarray(init(shape, dtype="float32"), dtype=np.float32)
    if dtype != "float32":
        x = np.array(mx.array(x).astype(getattr(mx, dtype)).astype(mx.float32))
    return x.astype(np.float64)


def ks_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic ``max |F_x - F_y|`` (the value of
    ``scipy.stats.ks_2samp(x, y).statistic``, without its p-value, which costs 5x more)."""
    x, y = np.sort(np.ravel(x)), np.sort(np.ravel(y))
    z = np.concatenate([x, y])
    fx = np.searchsorted(x, z, "right") / x.size
    fy = np.searchsorted(y, z, "right") / y.size
    return float(np.abs(fx - fy).max())


def _orth_problems(w: np.ndarray, dist: Dist, dtype: str) -> list[str]:
    """The Gram matrix on the short side is gain^2 I; with the sign correction the diagonal
    has as many negative entries as positive ones within ``SE`` binomial standard errors
    (an uncorrected Householder QR gives about 80% negative ones)."""
    m = w.reshape(-1, w.shape[-1]) if w.ndim >= 2 else w.reshape(1, -1)
    g = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    gain2 = max(dist.a**2, 1e-30)
    err = float(np.abs(g - dist.a**2 * np.eye(g.shape[0])).max() / gain2)
    tol = ORTH_TOL if dtype == "float32" else 8 * REL_EPS[dtype] * math.sqrt(w.size)
    out = [] if err <= tol else [f"Gram matrix off gain^2 I by {err:.3g} (> {tol:g})"]
    k = min(m.shape)
    neg = int((np.diag(m) < 0).sum())
    if dist.signs and k >= 32 and abs(neg - k / 2) > SE * math.sqrt(k) / 2:
        out.append(f"{neg} of the {k} diagonal entries negative: not sign-corrected")
    return out


def properties(w: np.ndarray, dist: Dist, dtype: str = "float32") -> list[str]:
    """What in the sample ``w`` contradicts ``dist`` (exact properties, then moments)."""
    x = np.asarray(w, dtype=np.float64)
    flat, n = x.ravel(), x.size
    if dist.kind == "const":
        return [] if np.all(flat == dist.a) else \
            [f"not all {dist.a:g} ({flat.min():.6g}..{flat.max():.6g})"]
    if dist.kind == "orth":
        return _orth_problems(x, dist, dtype)
    out = []
    if dist.kind in ("uniform", "trunc"):
        lo, hi = (dist.a, dist.b) if dist.kind == "uniform" else \
            (dist.a - 2 * dist.b, dist.a + 2 * dist.b)
        tol = REL_EPS[dtype] * max(abs(lo), abs(hi))
        if flat.min() < lo - tol or flat.max() > hi + tol:
            out.append(f"values {flat.min():.6g}..{flat.max():.6g} outside "
                       f"[{lo:.6g}, {hi:.6g}]")
        if n >= N_STATS:
            edge = (UNIFORM_EDGE if dist.kind == "uniform" else TRUNC_EDGE) / n
            reach = edge * (hi - lo) / 2 + tol
            if flat.min() > lo + reach or flat.max() < hi - reach:
                out.append(f"values {flat.min():.6g}..{flat.max():.6g} do not reach "
                           f"[{lo:.6g}, {hi:.6g}] within {edge:.2%} of the half-width")
    if n < N_STATS:
        return out
    mean, std = {"uniform": ((dist.a + dist.b) / 2, (dist.b - dist.a) / math.sqrt(12)),
                 "trunc": (dist.a, dist.b * TRUNC), "normal": (dist.a, dist.b)}[dist.kind]
    if abs(flat.mean() - mean) > SE * std / math.sqrt(n):
        out.append(f"mean {flat.mean():.6g}, documented {mean:.6g} (tolerance "
                   f"{SE * std / math.sqrt(n):.3g})")
    if abs(flat.std() / std - 1) > SE / math.sqrt(2 * n):
        out.append(f"std {flat.std():.6g}, documented {std:.6g} (tolerance "
                   f"{SE / math.sqrt(2 * n):.2%})")
    return out


def judge(w: np.ndarray, dist: Dist, dtype: str = "float32") -> list[str]:
    """``properties`` of ``w``, then the KS statistic against Keras's draw."""
    out = properties(w, dist, dtype)
    if dist.kind == "const" or w.size < N_STATS or not dist.keras:
        return out
    ref = keras_draw(dist.keras, tuple(w.shape), dtype)
    bad = properties(ref, dist, dtype)
    if bad:
        return out + [f"Keras's {dist.keras[0]} does not give the documented {dist} "
                      f"(reference problem): {'; '.join(bad)}"]
    d, crit = ks_statistic(np.ravel(w).astype(np.float64), ref.ravel()), \
        C_ALPHA * math.sqrt(2 / w.size)
    if d > crit:
        out.append(f"KS statistic {d:.4f} against Keras's {dist.keras[0]} > {crit:.4f}")
    return out
