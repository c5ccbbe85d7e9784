"""Expected failures: one registry, a reason for each entry.

Keys are case ids (``layer-key-dtype``) or ``fnmatch`` patterns over them. A case that
passes while listed here fails the run (an unexpected pass), and so does an entry that
matches no case at all.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

EXPECTED_FAILURES: dict[str, str] = {
    # recurrent (bfloat16): rounding luck on chaotic or kinked recurrences, checked by hand.
    "LSTM-02ca2858-bfloat16": "relu activation in bfloat16: the candidate pre-activation at "
    "batch 2, step 3 is 2e-3 from relu's kink (one bfloat16 rounding of the values around "
    "it), and lands on the other side than in TensorFlow and the float64 oracle; that "
    "changes the gradients by O(1) there. Outputs agree (rel 1.7e-3); the plain autodiff "
    "path gives the same gradients as the fused one.",
    "GRU-205bb1db-bfloat16": "linear activation in bfloat16: grad:weight_z2's error vs the "
    "float64 oracle is 2.04x TensorFlow's (limit 2x; 1.3e-2 vs 6.3e-3). The forward "
    "trajectories part by single bfloat16 roundings (TF's oneDNN bf16 matmul vs MLX's float32 "
    "GEMM) which the unbounded linear GRU amplifies; the plain autodiff path gives the same.",
}


def reason_for(case_id: str, registry: dict[str, str] | None = None) -> str | None:
    reg = EXPECTED_FAILURES if registry is None else registry
    for pattern, reason in reg.items():
        if fnmatchcase(case_id, pattern):
            return reason
    return None


def unmatched(all_ids: list[str], registry: dict[str, str] | None = None) -> list[str]:
    """Entries that match no case of the whole suite (not only the selected tier)."""
    reg = EXPECTED_FAILURES if registry is None else registry
    return [p for p in reg if not any(fnmatchcase(i, p) for i in all_ids)]
