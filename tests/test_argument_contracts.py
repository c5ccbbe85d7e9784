"""conformance/argument_contracts: every row passes on this code, a planted bug in an
argument check fails rows, and the layer fixes the rows found stay fixed."""

from __future__ import annotations

import mlx.core as mx
import pytest

from conformance import argument_contracts as A
from mlxnote import nn
from mlxnote.nn import conv_core, recurrent_core


def failed(*layers: str) -> list[str]:
    return [r.name for r in A.run(A.all_rows(*layers)) if not r.passed]


def test_every_row_passes():
    rows = A.run()
    assert len(rows) > 1200
    assert len({r.name for r in rows}) == len(rows)  # names are ids
    assert [r for r in rows if not r.passed] == []


def _spatial_or(self, arg, value):  # the mutant `v[0] == 1 or v[cax] == 1`
    v = list(value) if isinstance(value, (list, tuple)) else value
    if isinstance(v, list) and len(v) == self.rank + 2 and (v[0] == 1 or v[-1] == 1):
        value = v[1:-1]
    return self.check_ints(arg, value, self.rank)


def _momentum_open(self, arg, value, low, high, high_open=True):
    return nn.Layer.check_float(self, arg, value, low, high, high_open=True)


@pytest.mark.parametrize("target, attr, plant, layers, expect", [
    (conv_core._Conv, "_spatial", _spatial_or, ("conv1d",), "strides=[2, 2, 1]"),
    (nn.multihead_attention, "_check_width", lambda self, *a: None, ("multihead_attention",),
     "called on ([2, 5, 7])"),
    (recurrent_core._Recurrent, "_check_sizes", lambda self, x: None, ("LSTM",),
     "input projection"),
    (nn.batch_norm, "check_float", _momentum_open, ("batch_norm",), "momentum=1.0"),
    (nn.Bidirectional, "_check_pair", lambda self, *a: None, ("Bidirectional",),
     "backward_layer=GRU"),
])
def test_a_planted_bug_fails_rows(monkeypatch, target, attr, plant, layers, expect):
    assert failed(*layers) == []
    monkeypatch.setattr(target, attr, plant)
    bad = failed(*layers)
    assert any(expect in name for name in bad), bad


# -- the contract violations the rows found, fixed ---------------------------------------
X = mx.ones((4, 3, 5))


@pytest.mark.parametrize("layer", [nn.batch_norm, nn.layer_norm])
def test_mixed_sign_axes_with_input_size_refused(layer):
    # [-1, 1] on (4, 3, 5): the weights follow the sorted axes (1, 2), unknown before the
    # rank; the sizes [5, 3] (in the order given) were refused on a matching input, and
    # [3, 5] accepted on it with the weights on the wrong axes
    with pytest.raises(ValueError, match=rf"{layer.__name__}: argument 'axis'"):
        layer(input_size=[5, 3], axis=[-1, 1])
    assert layer(axis=[-1, 1])(X).shape == X.shape  # lazily: the sizes from the input
    assert layer(input_size=[3, 5], axis=[1, 2])(X).shape == X.shape


def test_favor_h_of_the_wrong_shape_named():
    k, v, q = mx.ones((2, 4, 6)), mx.ones((2, 3, 6)), mx.ones((2, 4, 5))
    wide = nn.FAVOR_attention(4, m=3, h=lambda x: mx.ones((*x.shape[:-1], 2)))
    with pytest.raises(ValueError, match=r"FAVOR_attention: argument 'h'.*\(2, 5, 2\)"):
        wide(k, v, q)
    row = nn.FAVOR_attention(4, m=3, h=lambda x: mx.full((*x.shape[:-1], 1), 2.0))
    two = nn.FAVOR_attention(4, m=3, h=lambda x: 2.0)
    two.set_weights(row.get_weights())
    assert mx.allclose(row(k, v, q), two(k, v, q)).item()


def test_favor_randomizer_without_dtype_named():
    with pytest.raises(TypeError, match=r"FAVOR_attention: argument 'randomizer'.*dtype"):
        nn.FAVOR_attention(4, m=3, randomizer=lambda shape: mx.random.normal(shape))


def test_bidirectional_refuses_layers_of_two_input_sizes():
    with pytest.raises(ValueError, match=r"Bidirectional: argument 'backward_layer'.*"
                                         r"input_size=4"):
        nn.Bidirectional(nn.GRU(5, 4), backward_layer=nn.GRU(5, 3, go_backwards=True))
    ok = nn.Bidirectional(nn.GRU(5, 4), backward_layer=nn.GRU(5, go_backwards=True))
    assert ok(mx.ones((2, 3, 4))).shape == (2, 10)


@pytest.mark.parametrize("stack, block", [(nn.TransformerEncoder, nn.TransformerEncoderLayer),
                                          (nn.TransformerDecoder, nn.TransformerDecoderLayer)])
def test_transformer_stack_refuses_a_norm_that_is_not_callable(stack, block):
    with pytest.raises(TypeError, match=rf"{stack.__name__}: argument 'norm'"):
        stack(block(8, 2, 16), 1, norm=3)
    assert stack(block(8, 2, 16), 1, norm=nn.layer_norm(8)).norm is not None


def test_decoder_layer_causal_flags_named_as_its_arguments():
    dec = nn.TransformerDecoderLayer(8, 2, 16)
    tgt, mem = mx.ones((2, 4, 8)), mx.ones((2, 5, 8))
    for arg in ("tgt_is_causal", "memory_is_causal"):  # were both named 'is_causal'
        with pytest.raises(TypeError, match=rf"TransformerDecoderLayer: argument '{arg}'"):
            dec(tgt, mem, **{arg: 1})
    assert dec(tgt, mem, tgt_is_causal=True).shape == (2, 4, 8)


def test_talking_heads_names_the_value_of_the_wrong_rank():
    q, k = mx.ones((2, 5, 3, 4)), mx.ones((2, 6, 3, 4))
    with pytest.raises(ValueError, match=r"talking_heads_attention: argument 'value_tensor'"):
        nn.talking_heads_attention()(q, k, mx.ones((2, 1, 6, 3, 4)))  # was 'key_tensor'
    with pytest.raises(ValueError, match=r"talking_heads_attention: argument 'key_tensor'"):
        nn.talking_heads_attention()(q, mx.ones((2, 1, 6, 3, 4)), k)
