"""Tolerances and the verdict.

A quantity passes when it is within the dtype's tolerance of TensorFlow in the same
dtype, **or** when its error against the float64 oracle is no worse than
``ORACLE_FACTOR`` times TensorFlow's own error against that oracle.

The tolerance table is the only place tolerances live. Changing an entry is a change
that must be argued in its commit message.

* float32: rtol 1e-5, atol 1e-6 (the issue's starting point).
* float16: rtol 1e-3, atol 1e-3: about two units in the last place at 1.0 (eps = 2^-10),
  i.e. one rounding on each side.
* bfloat16: rtol 1e-2, atol 1e-2: about two units in the last place at 1.0
  (eps = 2^-7 = 7.8e-3).

Reductions over many terms in a reduced dtype legitimately exceed that; the oracle
criterion covers them, and only when TensorFlow itself is as far off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-5, 1e-6),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1e-2),
}
ORACLE_FACTOR = 2.0


@dataclass
class Check:
    """One compared quantity of one case."""

    name: str  # 'output', 'grad:data', 'grad:weight', 'state:moving_mean', ...
    passed: bool
    max_abs: float = 0.0  # max |ours - TF(dtype)|
    rel: float = 0.0  # max |ours - oracle| / max |oracle| (scale-aware relative error)
    tf_rel: float = 0.0  # same for TF in the case's dtype
    excess: float = 0.0  # max |ours - TF| / (atol + rtol |TF|); <= 1 passes by tolerance
    # max |oracle|. Below the dtype's atol the quantity is ~0 (e.g. the gradient of a key
    # bias, which softmax ignores) and a relative error means nothing: summaries skip it.
    scale: float = 1.0
    worst_index: tuple | None = None
    rule: str = ""  # which criterion decided
    detail: str = ""

    def meaningful(self, dtype: str) -> bool:
        """Does the relative error mean something (the oracle is not ~0)?"""
        return self.scale >= TOLERANCES[dtype][1]

    @property
    def kind(self) -> str:
        return "forward" if self.name.startswith(("output", "state")) else "gradient"

    def to_json(self) -> dict:
        d = asdict(self)
        d["worst_index"] = list(self.worst_index) if self.worst_index is not None else None
        return d


def compare(name: str, ours: np.ndarray, ref: np.ndarray, oracle: np.ndarray | None,
            dtype: str) -> Check:
    """Compare ``ours`` with TF in the same dtype (``ref``) and the float64 ``oracle``."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return Check(name, False, detail=f"shape {ours.shape} != reference {ref.shape}",
                     rule="shape", max_abs=float("inf"), rel=float("inf"), excess=float("inf"))
    if ours.size == 0:
        return Check(name, True, rule="empty")
    rtol, atol = TOLERANCES[dtype]
    bad_ours, bad_ref = ~np.isfinite(ours), ~np.isfinite(ref)
    if (bad_ours != bad_ref).any() or (ours[bad_ours] != ref[bad_ref]).any():
        idx = np.unravel_index(int(np.argmax(bad_ours != bad_ref)), ours.shape)
        return Check(name, False, max_abs=float("inf"), rel=float("inf"), excess=float("inf"),
                     worst_index=tuple(int(i) for i in idx), rule="non-finite",
                     detail="non-finite values differ from the reference")
    fin = ~bad_ref
    diff = np.where(fin, np.abs(ours - ref), 0.0)
    ratio = diff / (atol + rtol * np.abs(np.where(fin, ref, 0.0)))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    excess = float(ratio[worst])
    check = Check(name, excess <= 1.0, max_abs=float(diff.max()), excess=excess,
                  worst_index=tuple(int(i) for i in worst), rule="tolerance")
    if oracle is not None:
        oracle = np.asarray(oracle, dtype=np.float64)
        check.scale = float(np.max(np.abs(np.where(fin, oracle, 0.0))))
        scale = check.scale or 1.0
        err = float(np.max(np.where(fin, np.abs(ours - oracle), 0.0)))
        tf_err = float(np.max(np.where(fin, np.abs(ref - oracle), 0.0)))
        check.rel, check.tf_rel = err / scale, tf_err / scale
        if not check.passed and err <= ORACLE_FACTOR * tf_err:
            check.passed, check.rule = True, f"oracle (<= {ORACLE_FACTOR:g}x TF error)"
    if not check.passed:
        check.detail = (f"ours={ours[worst]:.7g} tf={ref[worst]:.7g} at {check.worst_index}; "
                        f"|diff|/(atol+rtol|tf|)={excess:.3g} (rtol={rtol:g}, atol={atol:g})")
    return check


def exact(name: str, passed: bool, detail: str = "", value: float = 0.0) -> Check:
    """A yes/no property (random layers: structure, scale, rate bounds)."""
    return Check(name, bool(passed), max_abs=value, rule="property", detail=detail)
