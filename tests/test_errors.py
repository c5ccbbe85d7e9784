"""Errors name the layer the user called, the argument, what was given and what is allowed.

The documented layers' bad arguments and bad inputs are part of their layer contract (the
``bad_args``/``bad_inputs`` of each family's contracts, run by tests/layer_contract.py);
what is here concerns the Transformer's inner blocks, which are not documented layers.
"""

from __future__ import annotations

import mlx.core as mx
import pytest

from mlxnote import nn


def test_encoder_is_causal_must_be_bool():
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model=8, nhead=2,
                                                           dim_feedforward=16), 1)
    with pytest.raises(TypeError, match="^TransformerEncoder: argument 'is_causal' got 'yes'"):
        enc(mx.zeros((2, 5, 8)), is_causal="yes")


def test_blocks_built_by_the_transformer_name_it():
    """The encoder/decoder blocks the Transformer builds name the Transformer; built by
    the user, they name themselves."""
    with pytest.raises(ValueError, match="^Transformer: argument 'dim_feedforward' got 0"):
        nn.Transformer(d_model=8, nhead=2, dim_feedforward=0)
    with pytest.raises(ValueError, match="^TransformerDecoderLayer: argument 'nhead' got 3"):
        nn.TransformerDecoderLayer(d_model=8, nhead=3)
