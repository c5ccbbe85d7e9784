"""Functional Keras models as mlxnote models, and back.

:class:`KerasGraph` is a :class:`~mlxnote.training.Model` holding the converted layers in
Keras's order (``model.layers``: the order of the weights in both layouts) and the graph's
nodes, run in a dependency order. Weightless Keras layers of a graph (merges,
``Activation``) run as :class:`KerasOp`; they hold no weights, so the Keras layout of the
model is the one of its layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as mnn

from .. import nn
from .._validation import Desc, error
from ..nn.layer import Layer
from ..training import Model
from . import convert, layers

# -- weightless Keras layers -----------------------------------------------------------
_MERGES: dict[str, Callable[[list[mx.array]], mx.array]] = {
    "Add": lambda xs: sum(xs[1:], xs[0]),
    "Subtract": lambda xs: xs[0] - xs[1],
    "Multiply": lambda xs: _product(xs),
    "Average": lambda xs: sum(xs[1:], xs[0]) / len(xs),
    "Maximum": lambda xs: _fold(mx.maximum, xs),
    "Minimum": lambda xs: _fold(mx.minimum, xs),
}


def _product(xs: list[mx.array]) -> mx.array:
    return _fold(lambda a, b: a * b, xs)


def _fold(fn: Callable[[mx.array, mx.array], mx.array], xs: list[mx.array]) -> mx.array:
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


class KerasOp(mnn.Module):
    """A weightless Keras layer (``Add``, ``Subtract``, ``Multiply``, ``Average``,
    ``Maximum``, ``Minimum``, ``Concatenate``, ``Activation``) on MLX arrays; ``config``
    holds its Keras arguments."""

    KINDS = (*_MERGES, "Concatenate", "Activation")

    def __init__(self, kind: str, config: dict[str, Any],
                 fn: Callable[[mx.array], mx.array] | None = None) -> None:
        super().__init__()
        self._kind, self._cfg, self._fn = kind, dict(config), fn

    def __call__(self, inputs: Any) -> mx.array:
        if self._kind == "Activation":
            return self._fn(inputs)
        if self._kind == "Concatenate":
            return mx.concatenate(list(inputs), axis=self._cfg["axis"])
        return _MERGES[self._kind](list(inputs))

    def to_keras(self) -> Any:
        return getattr(convert.keras().layers, self._kind)(**self._cfg)

    def _extra_repr(self) -> str:
        return f"{self._kind}, {self._cfg}"


def op_from_keras(klayer: Any) -> KerasOp:
    o = layers.Options(klayer)
    kind = type(klayer).__name__
    fn = None
    if kind == "Activation":
        fn = nn.activations.get(layers.act_from_keras(o), o.where, "activation")
        cfg = {"activation": o["activation"]}
    else:
        cfg = {"axis": o["axis"]} if kind == "Concatenate" else {}
    o.finish()
    return KerasOp(kind, cfg, fn)


# -- the graph -------------------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    """A tensor of the graph: output ``tensor`` of node ``node`` of layer ``layer``."""

    layer: str
    node: int
    tensor: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.layer, self.node, self.tensor)


@dataclass(frozen=True)
class Node:
    """Layer ``index`` (in ``KerasGraph.layers``) called as Keras called it: ``args``
    (the first is its inputs: a tensor or a list) and ``kwargs``, :class:`Ref` for the
    tensors; its outputs are ``(name, call, 0..)``."""

    index: int
    name: str
    call: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def refs(self) -> list[Ref]:
        return _refs((self.args, self.kwargs))


def _refs(tree: Any) -> list[Ref]:
    if isinstance(tree, Ref):
        return [tree]
    if isinstance(tree, (list, tuple)):
        return [r for t in tree for r in _refs(t)]
    if isinstance(tree, dict):
        return [r for t in tree.values() for r in _refs(t)]
    return []


def _resolve(tree: Any, env: dict[tuple[str, int, int], Any]) -> Any:
    if isinstance(tree, Ref):
        return env[tree.key]
    if isinstance(tree, (list, tuple)):
        return type(tree)(_resolve(t, env) for t in tree)
    if isinstance(tree, dict):
        return {k: _resolve(v, env) for k, v in tree.items()}
    return tree


def _call(layer: Any, inputs: Any, kwargs: dict[str, Any]) -> Any:
    """Call ``layer`` as Keras called its counterpart (Attention takes ``[q, v(, k)]``)."""
    if isinstance(layer, nn.attention):
        return layer(*inputs, **kwargs)
    return layer(inputs, **kwargs)


class KerasGraph(Model):
    """A functional Keras model on mlxnote layers: ``model(x)`` (or ``model(x1, x2)`` /
    ``model([x1, x2])`` for several inputs) runs its nodes; several outputs come back as
    a list. ``input_shapes`` (batch axis excluded) let :func:`mlxnote.to_keras` rebuild
    it."""

    def __init__(self, layers: list[Any], nodes: list[Node], inputs: list[Ref],
                 outputs: list[Ref], input_shapes: list[tuple[Any, ...]]) -> None:
        super().__init__()
        self.layers = list(layers)
        for name, value in (("nodes", list(nodes)), ("inputs", list(inputs)),
                            ("outputs", list(outputs)), ("input_shapes", list(input_shapes))):
            self._set(name, value)

    def __call__(self, *xs: Any) -> Any:
        if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
            xs = tuple(xs[0])
        if len(xs) != len(self.inputs):
            raise error(self.name, "inputs", Desc(f"{len(xs)} arrays"),
                        f"{len(self.inputs)} arrays (the model's inputs)", TypeError)
        env = {r.key: x for r, x in zip(self.inputs, xs)}
        for n in self.nodes:
            out = _call(self.layers[n.index], _resolve(n.args[0], env),
                        _resolve(n.kwargs, env))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for t, o in enumerate(outs):
                env[(n.name, n.call, t)] = o
        res = [env[r.key] for r in self.outputs]
        return res[0] if len(res) == 1 else res


def _parse(tree: Any) -> Any:
    """Keras's serialized call arguments with :class:`Ref` for its tensors."""
    if isinstance(tree, dict):
        if tree.get("class_name") == "__keras_tensor__":
            return Ref(*tree["config"]["keras_history"])
        return {k: _parse(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_parse(t) for t in tree)
    return tree


def _ref_list(spec: Any) -> list[Ref]:
    spec = [spec] if spec and isinstance(spec[0], str) else spec
    return [Ref(*s) for s in spec]


def _check_kwargs(layer: Any, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """The call's keywords the mlxnote layer takes (``None``, Keras's default, and
    ``training`` for a layer without a mode are dropped); any other is an error naming
    it."""
    import inspect

    params = inspect.signature(layer.__call__).parameters
    out = {}
    for k, v in kwargs.items():
        if k in params:
            out[k] = v
        elif v is not None and k != "training":
            raise error(where, k, v, f"the call arguments of {type(layer).__name__}: "
                        f"{[p for p in params if p not in ('self',)]}")
    return out


def _sorted(nodes: list[Node], inputs: list[Ref], where: str) -> list[Node]:
    """``nodes`` in an order where each runs after the nodes it reads."""
    done = {(r.layer, r.node) for r in inputs}
    out, todo = [], list(nodes)
    while todo:
        ready = [n for n in todo if all((r.layer, r.node) in done for r in n.refs())]
        if not ready:
            raise error(where, "obj", Desc("a graph with a cycle or a missing tensor"),
                        "a functional model whose every tensor comes from its inputs")
        for n in ready:
            out.append(n)
            todo.remove(n)
            done.add((n.name, n.call))
    return out


def from_functional(model: Any) -> Model:
    """The mlxnote model of a functional Keras model: a :class:`Sequential` when it is a
    chain of single-input layers, else a :class:`KerasGraph`."""
    cfg = model.get_config()
    where = f"from_keras ({model.name})"
    shapes, members, nodes = {}, [], []
    for entry in cfg["layers"]:
        name, kind = entry["name"], entry["class_name"]
        if kind == "InputLayer":
            shapes[name] = tuple(entry["config"]["batch_shape"][1:])
            continue
        member = _member(model.get_layer(name))
        for call, node in enumerate(entry["inbound_nodes"]):
            args = _parse(node["args"])
            if len(args) != 1:
                raise error(f"{where}, {name}", "args", Desc(f"{len(args)} positional "
                            "arguments"), "one (the layer's inputs)", TypeError)
            kwargs = _check_kwargs(member, _parse(node["kwargs"]), f"{where}, {name}")
            nodes.append(Node(len(members), name, call, tuple(args), kwargs))
        members.append(member)
    inputs, outputs = _ref_list(cfg["input_layers"]), _ref_list(cfg["output_layers"])
    order = _sorted(nodes, inputs, where)
    in_shapes = [shapes[r.layer] for r in inputs]
    if _is_chain(order, inputs, outputs, len(members)):
        from ..training import Sequential

        seq = Sequential(members)
        seq._set("input_shapes", in_shapes)
        return seq.eval()
    return KerasGraph(members, order, inputs, outputs, in_shapes).eval()


def _member(klayer: Any) -> Any:
    """A graph member: a converted layer, a :class:`KerasOp`, or a nested model."""
    k = convert.keras()
    if isinstance(klayer, k.Model):
        from . import from_keras

        return from_keras(klayer)
    if type(klayer).__name__ in KerasOp.KINDS and type(klayer).__module__.startswith("keras."):
        return op_from_keras(klayer)
    return convert.layer_from_keras(klayer)


def _is_chain(nodes: list[Node], inputs: list[Ref], outputs: list[Ref], n: int) -> bool:
    if len(inputs) != 1 or len(outputs) != 1 or len(nodes) != n or n == 0:
        return False
    prev = inputs[0]
    for i, node in enumerate(nodes):
        if node.index != i or node.kwargs or node.args[0] != prev or len(node.args) != 1:
            return False
        prev = Ref(node.name, node.call, 0)
    return outputs[0] == prev


def to_functional(model: KerasGraph) -> Any:
    """The functional Keras model of a :class:`KerasGraph`, with its weights."""
    k = convert.keras()
    from . import to_keras

    members = [m.to_keras() if isinstance(m, KerasOp) else
               to_keras(m) if isinstance(m, Model) else convert.layer_to_keras(m)
               for m in model.layers]
    xs = [k.Input(shape) for shape in model.input_shapes]
    env = {r.key: x for r, x in zip(model.inputs, xs)}
    for n in model.nodes:
        out = members[n.index](*_resolve(n.args, env), **_resolve(n.kwargs, env))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for t, o in enumerate(outs):
            env[(n.name, n.call, t)] = o
    outs = [env[r.key] for r in model.outputs]
    kmodel = k.Model(xs[0] if len(xs) == 1 else xs, outs[0] if len(outs) == 1 else outs)
    for m, km in zip(model.layers, members):
        if isinstance(m, Layer):
            convert.build(km, m)
    return kmodel
