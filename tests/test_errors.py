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


# -- issue 13, item 8: bad arguments fail at construction, naming the layer called --------
CONVS = [(nn.conv1d, dict(filters=2, kernel_size=3)), (nn.conv2d, dict(filters=2, kernel_size=3)),
         (nn.conv3d, dict(filters=2, kernel_size=3)),
         (nn.conv1d_transpose, dict(filters=2, kernel_size=3)),
         (nn.conv2d_transpose, dict(filters=2, kernel_size=3)),
         (nn.conv3d_transpose, dict(filters=2, kernel_size=3)),
         (nn.depthwise_conv1d, dict(kernel_size=3)), (nn.depthwise_conv2d, dict(kernel_size=3)),
         (nn.separable_conv1d, dict(filters=2, kernel_size=3)),
         (nn.separable_conv2d, dict(filters=2, kernel_size=3))]
LAZY_INITS = [(make, kw, arg) for make, kw in CONVS
              for arg in ("weight_initializer", "bias_initializer")] + [
    (nn.talking_heads_attention, {}, "initializer"),
    (nn.multihead_attention, dict(n_head=2), "weight_initializer"),
    (nn.multihead_attention, dict(n_head=2), "bias_initializer")]


@pytest.mark.parametrize("make, kw, arg", LAZY_INITS,
                         ids=[f"{m.__name__}-{a}" for m, _, a in LAZY_INITS])
def test_lazy_layers_reject_a_bad_initializer_at_construction(make, kw, arg):
    with pytest.raises(ValueError, match=rf"^{make.__name__}: argument '{arg}' got 'nope'; "
                       "allowed: one of"):
        make(**kw, **{arg: "nope"})


@pytest.mark.parametrize("arg", ["weight_initializer", "bias_initializer"])
def test_multihead_attention_initializer_errors_name_it(arg):
    """Built eagerly, its dense projections check the initializer; the error names the
    layer called, not 'dense'."""
    with pytest.raises(ValueError, match=rf"^multihead_attention: argument '{arg}' got ''"):
        nn.multihead_attention(2, 8, **{arg: ""})


RANK1 = [(nn.dense, dict(output_size=2), "bias_initializer"),
         (nn.conv2d, dict(filters=2, kernel_size=3), "bias_initializer"),
         (nn.depthwise_conv1d, dict(kernel_size=3), "bias_initializer"),
         (nn.batch_norm, {}, "beta_initializer"), (nn.batch_norm, {}, "gamma_initializer"),
         (nn.batch_norm, {}, "moving_mean_initializer"),
         (nn.batch_norm, {}, "moving_variance_initializer"),
         (nn.layer_norm, {}, "beta_initializer"), (nn.layer_norm, {}, "gamma_initializer"),
         (nn.group_norm, {}, "beta_initializer"), (nn.group_norm, {}, "gamma_initializer"),
         (nn.RNN, dict(output_size=2), "bias_initializer"),
         (nn.LSTM, dict(output_size=2), "bias_initializer"),
         (nn.GRUCell, dict(weight_shape=[2, 3]), "bias_initializer"),
         (nn.multihead_attention, dict(n_head=2), "bias_initializer")]


@pytest.mark.parametrize("make, kw, arg", RANK1,
                         ids=[f"{m.__name__}-{a}" for m, _, a in RANK1])
@pytest.mark.parametrize("init", ["Orthogonal", ["Orthogonal", 2.0]], ids=["name", "list"])
def test_orthogonal_for_a_rank_1_weight_fails_at_construction(make, kw, arg, init):
    with pytest.raises(ValueError, match=rf"^{make.__name__}: argument '{arg}' got "
                       r".*Orthogonal.*; allowed: an initializer for a weight of rank 1 "):
        make(**kw, **{arg: init})


def test_orthogonal_where_rank_allows_still_works():
    assert nn.dense(3, 4, weight_initializer="Orthogonal").get_weights()[0].shape == (4, 3)
    nn.batch_norm(axis=[1, 2], beta_initializer="Orthogonal")  # beta has rank 2 here


@pytest.mark.parametrize("make, kw", CONVS, ids=[m.__name__ for m, _ in CONVS])
def test_unhashable_data_format_is_a_type_error_naming_the_layer(make, kw):
    with pytest.raises(TypeError, match=rf"^{make.__name__}: argument 'data_format' got "
                       r"\['NHWC'\]; allowed: "):
        make(**kw, data_format=["NHWC"])


@pytest.mark.parametrize("name", ["zeropadding1d", "zeropadding2d", "zeropadding3d"])
def test_unknown_keyword_names_the_public_layer(name):
    with pytest.raises(TypeError, match=rf"^{name}\.__init__\(\) got an unexpected keyword"):
        getattr(nn, name)(pading=2)


def test_other_unchecked_arguments():
    """Found looking for the same patterns: a non-string score_mode, train_flag, a seed
    mx.random.key cannot take, the causal mask helper's arguments."""
    with pytest.raises(TypeError, match=r"^attention: argument 'score_mode' got \['dot'\]"):
        nn.attention(score_mode=["dot"])
    with pytest.raises(TypeError, match=r"^dropout: argument 'train_flag' got 'no'"):
        nn.dropout(0.5)(mx.zeros((2, 3)), train_flag="no")
    with pytest.raises(TypeError, match=r"^batch_norm: argument 'training' got 1"):
        nn.batch_norm()(mx.zeros((2, 3)), training=1)
    with pytest.raises(ValueError, match=r"^FAVOR_attention: argument 'seed' got 2\*\*64|"
                       r"^FAVOR_attention: argument 'seed' got 18446744073709551616"):
        nn.FAVOR_attention(4, m=2, seed=2**64)
    gen = nn.Transformer.generate_square_subsequent_mask
    with pytest.raises(TypeError, match=r"^Transformer\.generate_square_subsequent_mask: "
                       r"argument 'dtype' got \['float32'\]"):
        gen(3, dtype=["float32"])
    with pytest.raises(TypeError, match=r"^Transformer\.generate_square_subsequent_mask: "
                       r"argument 'sz' got 2\.5"):
        gen(2.5)
    assert gen(3).shape == (3, 3)


def test_inner_layers_of_composites_name_the_composite():
    """The dense projections of multihead_attention and Linformer, and every layer inside
    the Transformer's blocks, name the layer the user called."""
    with pytest.raises(ValueError, match=r"^multihead_attention: argument 'x' got an array "
                       r"of shape \(2, 3, 0\)"):
        nn.multihead_attention(1)(mx.zeros((2, 3, 0)))
    layer = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                           dim_feedforward=16)
    assert layer.encoder.layers[0].self_attn.query.error_name == "Transformer"
    assert layer.decoder.layers[0].linear1.error_name == "Transformer"
    assert nn.multihead_attention(2, 8).query.error_name == "multihead_attention"
    assert nn.Linformer_self_attention(8, 4, k=2, heads=2).to_q.error_name == \
        "Linformer_self_attention"
    assert nn.dense(2).error_name == "dense"


# -- found by tests/test_fuzz.py: one regression test each ---------------------------------
def test_fuzz_found_unchecked_arguments():
    with pytest.raises(ValueError, match=r"^group_norm: argument 'groups' got 2\*\*64|"
                       r"^group_norm: argument 'groups' got 18446744073709551616; "):
        nn.group_norm(2**64)
    with pytest.raises(TypeError, match=r"^dense: argument 'name' got \['a'\]; allowed: None or "
                       "a str"):
        nn.dense(2, name=["a"])
    with pytest.raises(ValueError, match=r"^stochastic_depth: argument 'noise_shape' got "
                       r"\[2147483648\]"):
        nn.stochastic_depth(0.5, noise_shape=[2**31])
    with pytest.raises(ValueError, match=r"^layer_norm: argument 'input_size' got \[0\]; "):
        nn.layer_norm(input_size=[0], axis=[1])


def test_fuzz_found_bad_calls_of_empty_inputs_are_still_checked():
    """An empty input is no reason to skip checking the rest of the call."""
    empty = mx.zeros((0, 3, 4))
    with pytest.raises(TypeError, match=r"^multihead_attention: argument 'train_flag' got 'y'"):
        nn.multihead_attention(2, 4)(empty, train_flag="y")
    with pytest.raises(TypeError, match=r"^Linformer_self_attention: argument 'train_flag' "):
        nn.Linformer_self_attention(4, 3, k=2, heads=2)(empty, train_flag=2)
    with pytest.raises(TypeError, match=r"^talking_heads_attention: argument 'train_flag' "):
        nn.talking_heads_attention()(*[mx.zeros((0, 3, 2, 4))] * 3, train_flag="no")
    with pytest.raises(ValueError, match=r"^dropout: argument 'noise_shape' got \(1, 1\); "):
        nn.dropout(0.5, noise_shape=[1, 1])(mx.zeros((0, 2, 3)), train_flag=True)


def test_fuzz_found_masks_of_a_transformer_without_layers_are_checked():
    t = nn.Transformer(4, 2, num_encoder_layers=0, num_decoder_layers=0, dim_feedforward=8)
    src, tgt = mx.zeros((2, 3, 4)), mx.zeros((2, 5, 4))
    assert t(src, tgt).shape == (2, 5, 4)
    with pytest.raises(ValueError, match=r"^Transformer: argument 'src_key_padding_mask' got "
                       r"an array of shape \(3, 3\)"):
        t(src, tgt, src_key_padding_mask=mx.zeros((3, 3), mx.bool_))
    with pytest.raises(ValueError, match=r"^Transformer: argument 'memory_mask' got "):
        t(src, tgt, memory_mask=mx.zeros((5, 4)))
    custom = nn.Transformer(4, 2, 1, 0, 8, custom_decoder=lambda tgt, memory, **kw: tgt)
    assert custom(src, tgt, memory_mask=mx.zeros((9, 9))).shape == (2, 5, 4)  # its own masks
