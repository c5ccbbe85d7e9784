"""Errors name the layer the user called, the argument, what was given and what is allowed,
also where a layer delegates to sublayers."""

from __future__ import annotations

import mlx.core as mx
import pytest

from mlxnote import nn


def _transformer():
    return nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                          dim_feedforward=16)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(d_model=10, nhead=3), ValueError, r"^Transformer: argument 'nhead' got 3"),
    (dict(d_model=8, nhead=2, dropout=2.0), ValueError, r"^Transformer: argument 'dropout'"),
    (dict(d_model=8, nhead=2, activation="nope"), ValueError,
     r"^Transformer: argument 'activation'"),
    (dict(d_model=8, nhead=2, norm_first="yes"), TypeError, r"^Transformer: argument 'norm_first'"),
])
def test_transformer_constructor_errors_name_the_transformer(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nn.Transformer(**kwargs)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(tgt_is_causal="x"), TypeError, r"^Transformer: argument 'tgt_is_causal' got 'x'"),
    (dict(src_mask=mx.zeros((3, 3))), ValueError, r"^Transformer: argument 'src_mask'"),
    (dict(memory_mask=mx.zeros((3, 3))), ValueError, r"^Transformer: argument 'memory_mask'"),
])
def test_transformer_call_errors_name_the_transformer(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _transformer()(mx.zeros((2, 5, 8)), mx.zeros((2, 4, 8)), **kwargs)


def test_encoder_is_causal_must_be_bool():
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model=8, nhead=2,
                                                           dim_feedforward=16), 1)
    with pytest.raises(TypeError, match="argument 'is_causal' got 'yes'"):
        enc(mx.zeros((2, 5, 8)), is_causal="yes")


def test_talking_heads_names_the_tensor_with_wrong_heads():
    with pytest.raises(ValueError, match=r"argument 'key_tensor' got an array of shape "
                                         r"\(2, 6, 2, 4\)"):
        nn.talking_heads_attention()(mx.zeros((2, 5, 3, 4)), mx.zeros((2, 6, 2, 4)),
                                     mx.zeros((2, 6, 2, 4)))


@pytest.mark.parametrize("layer", [nn.batch_norm(4), nn.group_norm(2, 4)])
def test_complex_masks_rejected(layer):
    with pytest.raises(TypeError, match="argument 'mask' got an array of dtype"):
        layer(mx.zeros((2, 3, 4)), mask=mx.zeros((2, 3), dtype=mx.complex64))


def test_batch_norm_needs_an_axis_to_reduce():
    with pytest.raises(ValueError, match=r"batch_norm: argument 'data' got an array of shape "
                                         r"\(4,\)"):
        nn.batch_norm(4)(mx.zeros((4,)))
