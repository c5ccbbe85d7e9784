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
    # Transformer (float32): which of two correct float32 implementations lands closer to
    # the float64 oracle on one of ~45 gradients. Over 8 seeds of these cases, the median of
    # our error / TF's error is 0.9-1.2 with a max of 1.6-2.9 per case; float16/bfloat16
    # (computed in float32 inside on the CPU) all pass. Measured by hand, see cases.attention.
    "Transformer-be213f4a-float32": "grad:encoder.layers.0.self_attn.value.weight error "
    "4.1e-7 vs TF's 1.7e-7 (2.4x; limit 2x), |ours - TF| = 5e-6 at a value of 0.045: float32 "
    "rounding noise, median ratio over the case's 45 gradients ~1.",
    "Transformer-34d74ec4-float32": "grad:decoder.layers.0.norm1.beta error 5.3e-7 vs TF's "
    "2.5e-7 (2.1x; limit 2x): float32 rounding noise, median ratio over the case's gradients "
    "~1.",
    "Transformer-c6de0b92-float32": "grad:encoder.layers.0.self_attn.query.weight error "
    "1.4e-6 vs TF's 4.8e-7 (2.9x; limit 2x), |ours - TF| = 5e-6: float32 rounding noise in "
    "a training-mode case with recorded dropout masks; median ratio over its gradients ~0.9.",
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
