"""Layers work from any Python thread (issue 13, item 10, the layers' half).

MLX 0.32 gives each thread its own streams, and a lazy array can only be evaluated in the
thread that created it ('There is no Stream(cpu, 0) in current thread'). Every array a
layer keeps between calls is evaluated when it is stored: weights when they are built (or
set), random keys, batch_norm's moving statistics, FAVOR's features.

For a representative of each family: built in the main thread (eagerly, or lazily by a
first call) and called in a worker thread, and built in a worker thread (also lazily) and
then called in the main thread; the outputs equal those of the same layer used in one
thread. Random and stateful layers hand their state (keys, moving statistics) across.
"""

from __future__ import annotations

import threading

import mlx.core as mx
import numpy as np
import pytest

from mlxnote import nn


def in_thread(fn):
    """``fn()`` run in a fresh thread; its result, or the exception it raised."""
    out: dict = {}

    def work():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "the worker thread hung"
    if "error" in out:
        raise out["error"]
    return out["value"]


def leaves(out):
    if isinstance(out, mx.array):
        return [out]
    return [a for o in out for a in leaves(o)]


def evaluated(out):
    """The output leaves as NumPy arrays (evaluated in the calling thread)."""
    return [np.array(a.astype(mx.float32)) for a in leaves(out)]


def rand(*shape, seed=0):
    return mx.array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


# (id, factory (seeded), eager keywords, lazy keywords or None, inputs, call keywords)
FAMILIES = [
    ("dense", lambda **k: nn.dense(4, **k), dict(input_size=3), {}, [rand(2, 3)], {}),
    ("zeropadding2d", lambda **k: nn.zeropadding2d(padding=1, **k), {}, None,
     [rand(1, 2, 2, 3)], {}),
    ("conv2d", lambda **k: nn.conv2d(4, 3, **k), dict(input_size=2), {}, [rand(1, 5, 5, 2)],
     {}),
    ("conv1d_transpose", lambda **k: nn.conv1d_transpose(3, 3, strides=2, **k),
     dict(input_size=2), {}, [rand(2, 4, 2)], {}),
    ("layer_norm", lambda **k: nn.layer_norm(**k), dict(input_size=3), {}, [rand(2, 3)], {}),
    ("group_norm", lambda **k: nn.group_norm(2, **k), dict(input_size=4), {}, [rand(2, 4)],
     {}),
    ("LSTM", lambda **k: nn.LSTM(4, return_sequence=True, **k), dict(input_size=3), {},
     [rand(2, 5, 3)], {}),
    ("GRUCell", lambda **k: nn.GRUCell([3, 4], **k), {}, None, [rand(2, 3)], {}),
    ("multihead_attention", lambda **k: nn.multihead_attention(2, **k), dict(input_size=8), {},
     [rand(2, 5, 8)], {}),
    ("talking_heads_attention", lambda **k: nn.talking_heads_attention(**k),
     dict(num_heads=2), {}, [rand(1, 3, 2, 4, seed=i) for i in range(3)], {}),
    ("FAVOR_attention", lambda **k: nn.FAVOR_attention(4, m=3, redraw=False, **k), {}, None,
     [rand(2, 4, 5), rand(2, 3, 5), rand(2, 4, 5)], {}),
    ("Linformer_self_attention", lambda **k: nn.Linformer_self_attention(8, 5, k=3, heads=2,
                                                                         **k),
     {}, None, [rand(2, 5, 8)], {}),
    ("Transformer", lambda **k: nn.Transformer(8, 2, 1, 1, 16, **k), {}, None,
     [rand(2, 5, 8), rand(2, 4, 8, seed=1)], dict(train_flag=False)),
]
CASES = [pytest.param(make, kw, xs, ckw, id=f"{name}-{'lazy' if kw is lazy else 'eager'}")
         for name, make, eager, lazy, xs, ckw in FAMILIES
         for kw in ([eager] if lazy is None else [eager, lazy])]


def make_seeded(make, kw):
    mx.random.seed(0)
    return make(**kw)


@pytest.mark.parametrize("make, kw, xs, ckw", CASES)
def test_built_in_main_used_in_a_thread_and_back(make, kw, xs, ckw):
    want = evaluated(make_seeded(make, kw)(*xs, **ckw))
    layer = make_seeded(make, kw)
    if not kw:  # lazy: the first call (in the main thread) builds it
        layer(*xs, **ckw)
    got = in_thread(lambda: evaluated(layer(*xs, **ckw)))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert all(np.array_equal(a, b) for a, b in zip(evaluated(layer(*xs, **ckw)), want))


@pytest.mark.parametrize("make, kw, xs, ckw", CASES)
def test_built_in_a_thread_used_in_main(make, kw, xs, ckw):
    want = evaluated(make_seeded(make, kw)(*xs, **ckw))

    def build():
        layer = make_seeded(make, kw)
        if not kw:  # lazy: built by its first call, in the worker (its output unused)
            layer(*xs, **ckw)
        return layer

    layer = in_thread(build)
    got = evaluated(layer(*xs, **ckw))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_set_weights_in_a_thread():
    layer = nn.conv2d(2, 3, input_size=2)
    new = [w + 1.0 for w in layer.get_weights()]
    in_thread(lambda: layer.set_weights(new))
    assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), new))
    lstm = nn.LSTM(3, input_size=2)
    new = [w + 1.0 for w in lstm.get_weights()]
    in_thread(lambda: lstm.set_weights(new))  # fused storage written in the worker
    assert lstm(mx.zeros((1, 2, 2))).shape == (1, 3)


def test_load_weights_in_a_thread(tmp_path):
    path = str(tmp_path / "w.safetensors")
    src = nn.dense(3, input_size=2)
    src.save_weights(path)
    layer = in_thread(lambda: nn.dense(3, input_size=2).load_weights(path))
    assert np.array_equal(np.array(layer(mx.ones((1, 2)))), np.array(src(mx.ones((1, 2)))))


def test_random_and_stateful_layers_hand_their_state_across_threads():
    """A seeded dropout's key, batch_norm's moving statistics and FAVOR's features drawn in
    one thread are used by the next call in another (outputs not evaluated in between)."""
    x = rand(4, 6)
    ref = nn.dropout(0.5, seed=3)
    want = [np.array(ref(x, train_flag=True)) for _ in range(3)]
    layer = nn.dropout(0.5, seed=3)
    layer(x, train_flag=True)  # result dropped, never evaluated: the key is handed over
    got = in_thread(lambda: (layer(x, train_flag=True), np.array(layer(x, train_flag=True))))
    assert np.array_equal(got[1], want[2])
    assert np.array_equal(np.array(layer(x, train_flag=True)), np.array(ref(x, train_flag=True)))

    bn = nn.batch_norm(6, momentum=0.5)
    in_thread(lambda: bn(x, train_flag=True))  # moving statistics updated in the worker
    mean = np.array(bn.moving_mean)
    assert np.allclose(mean, 0.5 * np.array(x).mean(0), atol=1e-6)
    y = in_thread(lambda: np.array(bn(x, train_flag=False)))
    assert np.allclose(y, np.array(bn(x, train_flag=False)))

    favor = nn.FAVOR_attention(4, m=3, seed=1)  # redraws its features on every call
    ks, vs = rand(2, 4, 5), rand(2, 3, 5)
    in_thread(lambda: favor(ks, vs, ks))
    assert favor(ks, vs, ks).shape == (2, 3, 5)
    assert favor.get_weights()[0].shape == (3, 4)
