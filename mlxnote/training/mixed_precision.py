"""Mixed precision as Keras 3's dtype policies: float32 weights, 16-bit compute.

``mixed_bfloat16`` and ``mixed_float16`` keep every weight in float32 (the master copy the
optimizer updates) and run the forward and backward passes in bfloat16/float16: inside
``fit``/``evaluate``/``predict``'s compiled steps, :func:`autocast` casts the trainable
float32 weights (and float32 inputs) to the compute dtype and sets the mlxnote layers to
compute in it; the gradients come back to the float32 weights through the cast. State a
layer updates in the forward (batch norm's moving statistics) stays float32, as Keras's
non-autocast variables. Usage, as in Keras::

    from mlxnote.training import mixed_precision
    mixed_precision.set_global_policy("mixed_float16")  # models created now take it
    model = Net()                       # or: model.dtype_policy = "mixed_bfloat16"
    model.compile("adam", loss)         # mixed_float16: Adam in a LossScaleOptimizer
    model.fit(x, y)

``mixed_float16`` needs loss scaling (float16 gradients underflow): ``compile`` wraps the
optimizer in a :class:`LossScaleOptimizer` unless ``auto_scale_loss=False`` (Keras's
rule). It multiplies the loss by a dynamic scale (initially 2^15), divides the gradients
by it, and, when a gradient is inf or NaN, skips the step (weights, optimizer state and
step count unchanged) and halves the scale; after ``dynamic_growth_steps`` (2000) finite
steps in a row it doubles it. The scale is optimizer state: checkpoints save it.

A direct call ``model(x)`` outside those steps computes with the float32 weights (``with
autocast(model): model(x)`` computes as the steps do). ``'float32'`` is the default; a
pure 16-bit model is the layers' own ``dtype='bfloat16'`` (no float32 copy).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from .._validation import error, is_int, is_real

__all__ = ["Policy", "set_global_policy", "global_policy", "get_policy", "autocast",
           "forward", "LossScaleOptimizer", "POLICIES"]

#: Keras's policy names this supports and their (variable, compute) dtypes.
POLICIES: dict[str, tuple[mx.Dtype, mx.Dtype]] = {
    "float32": (mx.float32, mx.float32),
    "mixed_float16": (mx.float32, mx.float16),
    "mixed_bfloat16": (mx.float32, mx.bfloat16),
}


class Policy:
    """Keras's ``DTypePolicy`` for a model: ``name`` (one of :data:`POLICIES`),
    ``variable_dtype`` (float32) and ``compute_dtype``."""

    def __init__(self, name: str = "float32") -> None:
        if isinstance(name, Policy):
            name = name.name
        if not isinstance(name, str) or name not in POLICIES:
            hint = ("; a pure 16-bit model is the layers' dtype='bfloat16'/'float16'"
                    if name in ("float16", "bfloat16") else "")
            raise error("Policy", "name", name,
                        "one of " + ", ".join(repr(k) for k in POLICIES) + hint,
                        ValueError if isinstance(name, str) else TypeError)
        self.name = name
        self._variable, self._compute = POLICIES[name]

    @property
    def compute_dtype(self) -> mx.Dtype:
        return self._compute

    @property
    def variable_dtype(self) -> mx.Dtype:
        return self._variable

    @property
    def mixed(self) -> bool:
        return self._compute != self._variable

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Policy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f'<Policy "{self.name}">'


_GLOBAL: list[Policy] = [Policy("float32")]


def get_policy(spec: Any) -> Policy:
    """A :class:`Policy` from a name or a policy (``None``: the global one)."""
    return global_policy() if spec is None else Policy(spec)


def set_global_policy(policy: Any) -> None:
    """The policy of the models created from now on (Keras's
    ``keras.mixed_precision.set_global_policy``); ``None`` resets it to ``'float32'``."""
    _GLOBAL[0] = Policy("float32" if policy is None else policy)


def global_policy() -> Policy:
    """The policy new models take (``'float32'`` unless :func:`set_global_policy`)."""
    return _GLOBAL[0]


def _layers(model: Any) -> list[Any]:
    from ..nn.layer import Layer

    return [m for _, m in model.named_modules() if isinstance(m, Layer)]


@contextlib.contextmanager
def autocast(model: Any, policy: Any = None) -> Iterator[None]:
    """Run ``model`` in ``policy``'s compute dtype (default: ``model.dtype_policy``):
    the trainable float32 weights cast to it (differentiably), the mlxnote layers set to
    compute in it; on exit the weights, the layers' dtype and any state the forward wrote
    in 16 bits (moving statistics) are float32 again. Nothing for a float32 policy."""
    policy = get_policy(getattr(model, "dtype_policy", None) if policy is None else policy)
    if not policy.mixed:
        yield
        return
    unbuilt = model.unbuilt() if hasattr(model, "unbuilt") else []
    if unbuilt:
        raise RuntimeError(f"{type(model).__name__}: autocast needs built layers (a 16-bit "
                           f"build would make 16-bit weights); unbuilt: {unbuilt}")
    cdt = policy.compute_dtype
    dtypes = tree_map(lambda v: v.dtype, model.parameters())
    masters = model.trainable_parameters()
    layers = [m for m in _layers(model) if m.dtype == mx.float32]
    model.update(tree_map(lambda v: v.astype(cdt) if v.dtype == mx.float32 else v, masters))
    for m in layers:
        object.__setattr__(m, "dtype", cdt)
    try:
        yield
    finally:
        for m in layers:
            object.__setattr__(m, "dtype", mx.float32)
        model.update(masters)
        model.update(tree_map(lambda v, d: v if v.dtype == d else v.astype(d),
                              model.parameters(), dtypes))


def _cast_input(a: Any, dtype: mx.Dtype) -> Any:
    return a.astype(dtype) if isinstance(a, mx.array) and a.dtype == mx.float32 else a


def forward(model: Any, x: tuple[Any, ...]) -> Any:
    """``model(*x)`` under its policy (:func:`autocast`; float32 inputs cast to the
    compute dtype, as Keras's layers autocast theirs)."""
    policy = get_policy(getattr(model, "dtype_policy", None))
    if not policy.mixed:
        return model(*x)
    with autocast(model, policy):
        return model(*(_cast_input(a, policy.compute_dtype) for a in x))


def _select(node: Any, old: Any, keep: mx.array) -> None:
    """Every array leaf of ``node`` (dicts and lists, changed in place) that ``old`` has
    set to ``where(keep, leaf, old's leaf)``."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in list(items):
        if isinstance(node, dict) and k not in old:
            continue
        if isinstance(v, mx.array):
            node[k] = mx.where(keep, v, old[k])
        elif isinstance(v, (dict, list)):
            _select(v, old[k], keep)


class LossScaleOptimizer(optim.Optimizer):
    """Keras's ``LossScaleOptimizer``: dynamic loss scaling around ``inner_optimizer``.

    The train step multiplies the loss by :attr:`loss_scale` (:meth:`scale_loss`);
    :meth:`apply_gradients` divides the gradients by it and, if every gradient is finite,
    applies ``inner_optimizer`` (its clipping included) and counts a good step, doubling
    the scale after ``dynamic_growth_steps`` of them; otherwise it skips the step (the
    weights, the inner state and its step count are kept) and halves the scale.

    Args:
        inner_optimizer: an ``mlx.optimizers.Optimizer`` (a Keras-named one from
            :mod:`.optimizers`, ...).
        initial_scale (float): the first loss scale (Keras: ``2**15``).
        dynamic_growth_steps (int): finite steps before the scale doubles (2000).

    The state is the inner optimizer's with ``loss_scale`` (float32) and ``good_steps``
    (int32) added, so checkpoints save and restore them.
    """

    def __init__(self, inner_optimizer: Any, initial_scale: float = 2.0**15,
                 dynamic_growth_steps: int = 2000) -> None:
        owner = type(self).__name__
        if not isinstance(inner_optimizer, optim.Optimizer) \
                or isinstance(inner_optimizer, LossScaleOptimizer):
            raise error(owner, "inner_optimizer", inner_optimizer,
                        "an mlx.optimizers.Optimizer that is not a LossScaleOptimizer",
                        TypeError)
        if not is_real(initial_scale) or not (0 < initial_scale < math.inf):
            raise error(owner, "initial_scale", initial_scale, "a finite number > 0",
                        ValueError if is_real(initial_scale) else TypeError)
        if not is_int(dynamic_growth_steps) or dynamic_growth_steps < 1:
            raise error(owner, "dynamic_growth_steps", dynamic_growth_steps,
                        "an int >= 1", ValueError if is_int(dynamic_growth_steps)
                        else TypeError)
        self.inner_optimizer = inner_optimizer
        self.initial_scale = float(initial_scale)
        self.dynamic_growth_steps = int(dynamic_growth_steps)

    # the inner optimizer's state, schedules and step, with the scale added
    @property
    def state(self) -> dict:
        return self.inner_optimizer.state

    @state.setter
    def state(self, state: dict) -> None:
        self.inner_optimizer.state = state

    @property
    def _initialized(self) -> bool:
        return self.inner_optimizer._initialized and "loss_scale" in self.state

    @property
    def learning_rate(self) -> mx.array:
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self.inner_optimizer.learning_rate = value

    def init(self, parameters: dict) -> None:
        self.inner_optimizer.init(parameters)
        self.state.setdefault("loss_scale", mx.array(self.initial_scale, mx.float32))
        self.state.setdefault("good_steps", mx.array(0, mx.int32))

    @property
    def loss_scale(self) -> mx.array:
        """The current scale (``initial_scale`` before the state exists)."""
        return self.state.get("loss_scale", mx.array(self.initial_scale, mx.float32))

    def scale_loss(self, loss: mx.array) -> mx.array:
        """``loss * loss_scale`` (what the train step differentiates)."""
        return loss * self.loss_scale

    def apply_gradients(self, gradients: dict, parameters: dict) -> dict:
        if not self._initialized:
            self.init(gradients)
        st = self.state
        scale, good = st["loss_scale"], st["good_steps"]
        flat = [g for _, g in tree_flatten(gradients)]
        finite = mx.all(mx.stack([mx.all(mx.isfinite(g)) for g in flat])) if flat \
            else mx.array(True)
        old = tree_map(lambda v: v, {k: v for k, v in st.items()
                                     if k not in ("loss_scale", "good_steps")})
        unscaled = tree_map(lambda g: g / scale.astype(g.dtype), gradients)
        new = self.inner_optimizer.apply_gradients(unscaled, parameters)
        _select(st, old, finite)
        grow = finite & (good + 1 >= self.dynamic_growth_steps)
        st["loss_scale"] = mx.where(finite, mx.where(grow, scale * 2, scale), scale * 0.5)
        st["good_steps"] = mx.where(finite & ~grow, good + 1, mx.array(0, mx.int32))
        return tree_map(lambda n, p: mx.where(finite, n, p), new, parameters)

    def __repr__(self) -> str:
        return (f"LossScaleOptimizer({self.inner_optimizer!r}, initial_scale="
                f"{self.initial_scale}, dynamic_growth_steps={self.dynamic_growth_steps})")
