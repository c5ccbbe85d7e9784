"""The shared layer-contract helper (tests/layer_contract.py) catches broken layers: each
deliberately broken subclass below violates one clause of the contract, and the check
that covers the clause must fail on it while passing on the real layer. Also: every
documented layer has a contract in its family's test file."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import test_attention
import test_conv
import test_core_layers
import test_norm
import test_recurrent
from layer_contract import CHECKS, Contract, check_keys, check_layer, contract_params

from mlxnote import nn
from mlxnote.nn.layer import Desc


def dense(cls=nn.dense) -> Contract:
    return Contract(cls, dict(output_size=3, input_size=4, activation="tanh"), (2, 4),
                    lazy=dict(input_size=None), weights={"weight": (4, 3), "bias": (3,)},
                    bad_args=[(dict(use_bias="yes"), TypeError, "use_bias")],
                    bad_inputs=[((2, 5), ValueError, "data")])


def dropout(cls=nn.dropout) -> Contract:
    return Contract(cls, dict(rate=0.5), (4, 6), weights={}, random=dict(rate=0.0))


def batch_norm(cls=nn.batch_norm) -> Contract:
    return Contract(cls, dict(input_size=4), (3, 5, 4), lazy=dict(input_size=None),
                    stateful=True, frozen=("moving_mean", "moving_variance"))


# -- broken layers: each breaks one clause --------------------------------------------------
class LazyWrongShape(nn.dense):
    """Built lazily, it builds a different layer than the eager one."""

    def ensure_built(self, data, axis=-1, arg="data"):
        if not self.built:
            self._set("output_size", self.output_size + 1)
        super().ensure_built(data, axis, arg)


class SilentUnbuilt(nn.dense):
    """``set_weights`` on an unbuilt layer does nothing instead of raising."""

    def set_weights(self, weights_):
        if self.built:
            super().set_weights(weights_)


class WrongLayout(nn.dense):
    """``get_weights`` gives the kernel transposed (not Note's ``[in, out]``)."""

    def to_note(self, name, value):
        return value.T if name == "weight" else value


class CachedWeights(nn.dense):
    """``get_weights`` hands out the same arrays every time (not copies)."""

    def get_weights(self):
        if "_cache" not in self.__dict__:
            self._set("_cache", super().get_weights())
        return self._cache


class IgnoresSetWeights(nn.dense):
    """``set_weights`` validates and then drops the values."""

    def set_weights(self, weights_):
        before = super().get_weights()
        super().set_weights(weights_)
        super().set_weights(before)


class NotAtomic(nn.dense):
    """``set_weights`` writes each weight as it checks it."""

    def set_weights(self, weights_):
        if len(weights_) != len(self.weight_names):
            return super().set_weights(weights_)
        for name, value in zip(self.weight_names, weights_):
            if tuple(np.shape(value)) != tuple(self[name].shape):
                raise self.error("weights", Desc(f"shape {np.shape(value)} for '{name}'"),
                                 f"shape {tuple(self[name].shape)}")
            self[name] = mx.array(np.asarray(value, np.float32))


class ParamListsFrozen(nn.dense):
    """``param`` lists the weights even when ``trainable=False``."""

    @property
    def param(self):
        return [self.weight, self.bias]


class TrainingChangesOutput(nn.dense):
    """A deterministic layer whose output depends on the module's mode."""

    def __call__(self, data):
        y = super().__call__(data)
        return y * 2 if self.training else y


class AlwaysFloat32(nn.dense):
    """Returns float32 whatever its dtype."""

    def __call__(self, data):
        return super().__call__(data).astype(mx.float32)


class NotCompilable(nn.dense):
    """Evaluates an array inside the call (fails under ``mx.compile``)."""

    def __call__(self, data):
        y = super().__call__(data)
        return y * 0 if float(mx.abs(y).max()) > 1e9 else y


class NoGradient(nn.dense):
    """Blocks every gradient."""

    def __call__(self, data):
        return mx.stop_gradient(super().__call__(data))


class Unnamed(nn.dense):
    """Errors do not name the layer."""

    @property
    def error_name(self):
        return "layer"


class UncheckedArgs(nn.dense):
    """Accepts anything as ``use_bias``."""

    def __init__(self, output_size, input_size=None, use_bias=True, **kwargs):
        super().__init__(output_size, input_size, use_bias=bool(use_bias), **kwargs)


class UncheckedChannels(nn.dense):
    """Does not check the channel count after the build (MLX's matmul error surfaces)."""

    def ensure_built(self, data, axis=-1, arg="data"):
        if not self.built:
            super().ensure_built(data, axis, arg)


class DropsInEval(nn.dropout):
    """Drops in inference mode too."""

    def __call__(self, data, train_flag=None, training=None):
        return super().__call__(data, train_flag=True)


class IgnoresTheSeed(nn.dropout):
    """Draws from keys of its own, not reproducible from ``mx.random.seed``."""

    def __call__(self, data, train_flag=None, training=None):
        x = self.as_input(data)
        if not self.mode(train_flag, training):
            return x
        self._set("_n", self.__dict__.get("_n", 0) + 1)
        return x * mx.random.bernoulli(0.5, x.shape, key=mx.random.key(self._n)) * 2


class StatelessBatchNorm(nn.batch_norm):
    """Never updates its moving statistics."""

    def _update(self, mean, var):
        pass


BROKEN = [  # (contract, the check that must catch it)
    (dense(LazyWrongShape), "build"),
    (dense(SilentUnbuilt), "build"),
    (dense(WrongLayout), "weights"),
    (dense(CachedWeights), "weights"),
    (dense(IgnoresSetWeights), "round_trip"),
    (dense(NotAtomic), "set_weights_errors"),
    (dense(Unnamed), "set_weights_errors"),
    (dense(ParamListsFrozen), "param"),
    (dense(TrainingChangesOutput), "modes"),
    (dropout(DropsInEval), "modes"),
    (dropout(IgnoresTheSeed), "modes"),
    (batch_norm(StatelessBatchNorm), "modes"),
    (dense(AlwaysFloat32), "dtypes"),
    (dense(NotCompilable), "transforms"),
    (dense(NoGradient), "transforms"),
    (dense(Unnamed), "bad_args-dtype"),
    (dense(UncheckedArgs), "bad_args-use_bias"),
    (dense(Unnamed), "bad_inputs-data"),
    (dense(UncheckedChannels), "bad_inputs-data"),
    (dense(Unnamed), "bad_inputs-strings"),
]


@pytest.mark.parametrize("contract, key", [pytest.param(c, k, id=f"{c.layer.__name__}-{k}")
                                           for c, k in BROKEN])
def test_broken_layer_is_caught(contract, key):
    with pytest.raises(AssertionError, match=contract.id):
        check_layer(contract, key)


@pytest.mark.parametrize("contract", [dense(), dropout(), batch_norm()],
                         ids=["dense", "dropout", "batch_norm"])
def test_the_real_layers_pass(contract):
    """The control: every check passes on the layers the broken ones derive from."""
    check_layer(contract)


def test_every_check_is_exercised_by_a_broken_layer():
    caught = {k.split("-")[0] for _, k in BROKEN}
    assert caught == set(CHECKS) | {"bad_args", "bad_inputs"}


def test_params_ids_and_strict_xfails():
    c = dense()
    c.xfail = {"round_trip": "known defect"}
    params = contract_params([c])
    assert [p.id for p in params] == [f"dense-{k}" for k in check_keys(c)]
    assert "dense-bad_args-use_bias" in [p.id for p in params]
    marked = [p for p in params if p.marks]
    assert [p.id for p in marked] == ["dense-round_trip"]
    assert marked[0].marks[0].kwargs == {"strict": True, "reason": "known defect"}
    c.xfail = {"no_such_check": "stale"}
    with pytest.raises(AssertionError, match="no_such_check"):
        contract_params([c])


def test_every_documented_layer_has_a_contract():
    """All 32 documented layers (nn.__all__ less the base class, the tables and the
    Transformer's inner blocks) have a contract in their family's test file."""
    internal = {"Layer", "activations", "initializers", "TransformerEncoder",
                "TransformerDecoder", "TransformerEncoderLayer", "TransformerDecoderLayer"}
    documented = {getattr(nn, n) for n in nn.__all__ if n not in internal}
    covered = {c.layer for mod in (test_core_layers, test_conv, test_norm, test_recurrent,
                                   test_attention) for c in mod.CONTRACTS}
    assert len(documented) == 32
    assert covered == documented, sorted(getattr(c, "__name__", c) for c in
                                         documented ^ covered)
