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
    # Transformer: which of two correct implementations lands closer to the float64 oracle
    # on one of its ~45 gradients. Over 10 seeds (d_model 32, float32), the median of our
    # error / TF's error over all gradients is 0.95 (p90 1.43) and 2% of single gradients
    # exceed 2x; each case below has exactly one gradient at 2.0-2.3x, every other check
    # passing. Measured by hand, see conformance/cases/attention.py.
    "Transformer-151da938-float32": "grad:decoder.layers.0.self_attn.query.weight error 2.1x "
    "TF's (4.5e-7 vs 2.2e-7 of the largest value; limit 2x), |ours - TF| = 3e-6: float32 "
    "rounding noise.",
    "Transformer-4a11a5e3-float32": "grad:decoder.layers.0.multihead_attn.key.weight error "
    "2.0x TF's (5.45e-7 vs 2.72e-7; limit 2x), |ours - TF| = 2e-6: float32 rounding noise "
    "(dropout 0.25 in inference: the same numbers as the two cases below).",
    "Transformer-2c14852a-float32": "as Transformer-4a11a5e3-float32 (the same computation, "
    "train_flag=False).",
    "Transformer-1307d311-float32": "as Transformer-4a11a5e3-float32 (the same computation, "
    "module in eval mode).",
    "Transformer-fd84e95f-float16": "grad:encoder.layers.0.self_attn.out.bias error 2.3x TF's "
    "(1.5e-3 vs 6.5e-4 of the largest value; limit 2x): float16 rounding noise in a "
    "two-layer stack; over 10 seeds of the one-layer case, the float16 median ratio is 0.64 "
    "and no gradient exceeds 2x.",
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
