"""Huge sizes are refused, not crashed on (issue 13, item 5).

MLX segfaults instead of raising when an allocation fails, and its dimensions are 32-bit:
every layer refuses, with its own ValueError naming the argument and the size, a size
argument above 2^31 - 1, a weight larger than the memory this process may use (at
construction, or at the build of a lazy layer) and a call whose output (or large
intermediate: attention logits, projections) would be (before any compute).

The reproductions that crashed the process run in a subprocess: a segfault fails the
test instead of killing pytest.
"""

from __future__ import annotations

import mlx.core as mx
import pytest
from crash_cases import assert_refused

from mlxnote import _validation as V
from mlxnote import nn

# (label, code raising the error, expected message prefix). Each runs in one subprocess,
# in order; a crash (segfault) ends it and fails the test at that case.
CRASHERS = [
    ("zeropadding2d 10^9", "y = nn.zeropadding2d(padding=10**9)(mx.zeros((1, 1, 1, 1))); "
     "mx.eval(y)", "zeropadding2d: argument 'padding' got 1000000000; allowed: "),
    ("dense 2^30", "mx.eval(nn.dense(2**30, input_size=8).parameters())",
     "dense: argument 'output_size' got 1073741824; allowed: "),
    ("dense 2^31", "nn.dense(2**31, input_size=8)",
     "dense: argument 'output_size' got 2147483648; allowed: "),
    ("dense 2^64", "nn.dense(2**64, input_size=8)",
     "dense: argument 'output_size' got 18446744073709551616; allowed: "),
    ("dense lazy 2^30", "mx.eval(nn.dense(2**30)(mx.zeros((2, 8))))",
     "dense: argument 'output_size' got 1073741824; allowed: "),
    ("dense lazy wide input", "mx.eval(nn.dense(2**20)(mx.zeros((1, 2**14))))",
     "dense: argument 'output_size' got 1048576; allowed: "),
    ("conv2d weight", "mx.eval(nn.conv2d(2**16, 64, input_size=1024).parameters())",
     "conv2d: argument 'filters' got 65536; allowed: "),
    ("conv2d_transpose output", "mx.eval(nn.conv2d_transpose(4, 3, strides=2**20, "
     "input_size=1)(mx.zeros((1, 8, 8, 1))))", "conv2d_transpose: argument 'data' got "),
    ("LSTM fused 2^29", "nn.LSTM(2**29, input_size=4)",
     "LSTM: argument 'output_size' got 536870912; allowed: "),
    ("GRUCell 2^31", "nn.GRUCell([4, 2**31])", "GRUCell: argument 'weight_shape' got "),
    ("multihead_attention logits", "mx.eval(nn.multihead_attention(1, 8)("
     "mx.zeros((1, 2**17, 8)))[0])", "multihead_attention: argument 'x' got "),
    ("Transformer weights", "t = nn.Transformer(2**17, 1, 1, 1, 8); "
     "mx.eval(t.parameters())", "Transformer: argument 'd_model' got 131072; allowed: "),
    ("Transformer 2^31", "nn.Transformer(8, 2, 1, 1, dim_feedforward=2**31)",
     "Transformer: argument 'dim_feedforward' got 2147483648; allowed: "),
    ("batch_norm 2^31", "nn.batch_norm(input_size=2**31)",
     "batch_norm: argument 'input_size' got 2147483648; allowed: "),
    ("zeropadding1d call 2^31", "nn.zeropadding1d()(mx.zeros((1, 2, 1)), padding=2**31)",
     "zeropadding1d: argument 'padding' got 2147483648; allowed: "),
    ("talking_heads 2^40", "nn.talking_heads_attention(num_heads=2**40)",
     "talking_heads_attention: argument 'num_heads' got 1099511627776; allowed: "),
    ("FAVOR m 2^31", "nn.FAVOR_attention(8, orthonormal=False, m=2**31)",
     "FAVOR_attention: argument 'm' got 2147483648; allowed: "),
    ("dropout seed 2^64", "nn.dropout(0.5, seed=2**64)",
     "dropout: argument 'seed' got 18446744073709551616; allowed: "),
    ("mask 10^6", "nn.Transformer.generate_square_subsequent_mask(10**6)",
     "Transformer.generate_square_subsequent_mask: argument 'sz' got 1000000; allowed: "),
]

@pytest.mark.slow
def test_huge_sizes_are_refused_not_crashed_on():
    assert_refused(CRASHERS)


# -- in-process, with a small memory limit (nothing large is allocated) -------------------
@pytest.fixture
def one_mib(monkeypatch):
    monkeypatch.setattr(V, "memory_limit", lambda: 2**20)


def test_weight_larger_than_memory_is_refused_at_construction(one_mib):
    nn.dense(16, input_size=16)  # 1 KiB: fine
    with pytest.raises(ValueError, match=r"^dense: argument 'output_size' got 1024; allowed: "
                       r"sizes whose weight 'weight' \(shape \(512, 1024\), 2\.0 MiB in "
                       r"float32\) fits in the 1\.0 MiB"):
        nn.dense(1024, input_size=512)
    with pytest.raises(ValueError, match=r"^GRU: argument 'output_size' got 512; .*weight "
                       "'recurrent_kernel'"):
        nn.GRU(512, input_size=4)
    with pytest.raises(ValueError, match=r"^multihead_attention: argument 'input_size' got "
                       r"1024; .*weight 'weight'"):
        nn.multihead_attention(2, 1024)  # the error of its dense projection names it
    with pytest.raises(ValueError, match=r"^Transformer: argument 'dim_feedforward' got "
                       r"8192; "):
        nn.Transformer(64, 2, 1, 1, 8192)


def test_lazy_weight_larger_than_memory_is_refused_at_build(one_mib):
    layer = nn.conv1d(1024, 3)
    with pytest.raises(ValueError, match=r"^conv1d: argument 'filters' got 1024; .*weight "
                       "'weight'"):
        layer(mx.zeros((1, 5, 256)))
    with pytest.raises(ValueError, match=r"^layer_norm: argument 'data' got an input of size "
                       r"524288 \(input_size\); .*weight 'beta'"):
        nn.layer_norm()(mx.zeros((1, 2**19), mx.bfloat16))


def test_output_larger_than_memory_is_refused_before_compute(one_mib):
    x = mx.zeros((1, 4, 4, 1))
    assert nn.zeropadding2d(padding=2)(x).shape == (1, 8, 8, 1)
    with pytest.raises(ValueError, match=r"^zeropadding2d: argument 'padding' got 400; "
                       r"allowed: sizes whose output \(shape \(1, 804, 804, 1\)"):
        nn.zeropadding2d(padding=400)(x)
    with pytest.raises(ValueError, match=r"^conv2d_transpose: argument 'data' got an array "
                       r"of shape \(1, 4, 4, 1\); allowed: sizes whose output"):
        nn.conv2d_transpose(8, 3, strides=128, input_size=1)(x)
    with pytest.raises(ValueError, match=r"^dense: argument 'data' got an array of shape "
                       r"\(4096, 4\); allowed: sizes whose output"):
        nn.dense(128, input_size=4)(mx.zeros((4096, 4)))
    with pytest.raises(ValueError, match=r"^attention: argument 'query' got .*scores"):
        nn.attention()(mx.zeros((1, 1024, 2)), mx.zeros((1, 1024, 2)))
    with pytest.raises(ValueError, match=r"^LSTM: argument 'data' got .*input projection"):
        nn.LSTM(8, input_size=2)(mx.zeros((64, 1024, 2)))
    with pytest.raises(ValueError, match=r"^TransformerEncoderLayer: argument 'src' got "
                       r".*attention logits"):
        nn.TransformerEncoderLayer(4, 1, 8)(mx.zeros((1, 1024, 4)))


def test_sizes_at_the_32_bit_limit_name_the_argument():
    for make, arg in [(lambda: nn.conv2d(2**31, 3), "filters"),
                      (lambda: nn.conv2d(4, [2**31, 1]), "kernel_size"),
                      (lambda: nn.RNN(2**40), "output_size"),
                      (lambda: nn.multihead_attention(2, kdim=2**31), "kdim"),
                      (lambda: nn.Linformer_self_attention(8, 2**31), "seq_len")]:
        with pytest.raises(ValueError, match=rf": argument '{arg}' got .+; allowed: an int "
                           r"in \[1, 2147483647\] \(MLX's array sizes are 32-bit\)\.$"):
            make()
