"""Expected failures: one registry, a reason for each entry, and the checks allowed to fail.

Keys are case ids (``layer-key-dtype``) or ``fnmatch`` patterns over them. An entry names
the checks (``fnmatch`` patterns over check names such as ``grad:weight_c2``) that may
fail: the case counts as an expected failure only when every failing check is one of them.
Any other failing check, or an exception, fails the run. A case that passes while listed
here fails the run too (an unexpected pass), and so does an entry that matches no case.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Expected:
    reason: str
    checks: tuple[str, ...]  # the check names (fnmatch patterns) that may fail

    def covers(self, failing: list[str]) -> bool:
        return bool(failing) and all(any(fnmatchcase(n, p) for p in self.checks)
                                     for n in failing)


EXPECTED_FAILURES: dict[str, Expected] = {
    "Transformer-fd84e95f-float16": Expected(
        "one attention-bias gradient of the first encoder layer at 2.3x TF's error against "
        "the float64 oracle (1.5e-3 vs 6.5e-4 of the largest value; limit 2x; out.bias with "
        "OpenBLAS, query.bias with MLX's reference BLAS): float16 rounding noise in a "
        "two-layer stack. Over 10 seeds of the one-layer case the float16 median ratio is "
        "0.64 and no gradient exceeds 2x.",
        ("grad:encoder.layers.0.self_attn.*.bias",)),
}


def reason_for(case_id: str, registry: dict[str, Expected] | None = None) -> Expected | None:
    reg = EXPECTED_FAILURES if registry is None else registry
    for pattern, reason in reg.items():
        if fnmatchcase(case_id, pattern):
            return reason
    return None


def unmatched(all_ids: list[str], registry: dict[str, Expected] | None = None) -> list[str]:
    """Entries that match no case of the whole suite (not only the selected tier)."""
    reg = EXPECTED_FAILURES if registry is None else registry
    return [p for p in reg if not any(fnmatchcase(i, p) for i in all_ids)]
