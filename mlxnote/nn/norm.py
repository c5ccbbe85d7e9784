"""Normalization layers: batch_norm, group_norm and layer_norm, with Keras semantics.

* :class:`batch_norm` is Keras ``BatchNormalization`` (momentum weights the old moving value,
  biased batch variance, any rank, ``axis`` an int or a list, masked moments,
  ``synchronized`` moments over the ``mx.distributed`` group).
* :class:`group_norm` is Keras ``GroupNormalization`` (any ``axis``), with Note's optional
  frequency-weight ``mask``.
* :class:`layer_norm` is Keras ``LayerNormalization`` (``axis`` an int or a list,
  ``rms_scaling``), on ``mx.fast.layer_norm`` when the normalized axes are trailing (on the
  GPU; on the CPU, where that is a plain composition, a faster one with its own VJP).

As in Keras, statistics are computed in float32 when the layer's dtype is float16 or
bfloat16, and the output is rounded once to the layer's dtype.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from .._config import to_float32 as _f32
from .._validation import MAX_DIM
from .._validation import is_int as _is_int
from ..kernels import norm as K
from .layer import Desc, Layer, materialize
from .norm_args import (
    broadcast_shape,
    build_from,
    check_axis,
    check_input_size,
    check_mask,
    resolve_axes,
    sorted_axes,
    weight_shape,
)
from .typing import ArrayLike, DTypeLike, Initializer, IntOrSeq, MaskLike

__all__ = ["batch_norm", "group_norm", "group_normalization", "layer_norm",
           "layer_normalization"]



# -- batch_norm ------------------------------------------------------------------------------
class batch_norm(Layer):
    """Batch normalization, as Keras ``BatchNormalization``.

    Training mode (and ``trainable``) normalizes with the batch's mean and biased
    variance over every axis but ``axis`` and updates
    ``moving = moving * momentum + batch * (1 - momentum)``; inference mode (or
    ``trainable=False``) normalizes with the moving statistics. The output is
    ``(x - mean) * rsqrt(var + epsilon) * gamma + beta``.

    Args:
        input_size (int, optional): channels on ``axis`` (a list, one per axis, when
            ``axis`` is a list); built from the first input if ``None``.
        axis (int or list): the channel axis or axes kept. Default ``-1``.
        momentum (float): weight of the old moving value. Default ``0.99``.
        epsilon (float): added to the variance. Default ``0.001``.
        center, scale (bool): use ``beta`` / ``gamma``.
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: initializers (``'zeros'``, ``'ones'``, ``'zeros'``,
            ``'ones'``).
        synchronized (bool): reduce the moments over the ``mx.distributed`` group (all
            ranks then normalize with the statistics of the concatenated batch; a no-op
            for a group of one).
        trainable (bool): ``False`` freezes ``beta``/``gamma`` and always uses the moving
            statistics.
        dtype (str): ``'float32'``, ``'float16'`` or ``'bfloat16'``.

    Call: ``(data, train_flag=None, mask=None)``; ``training=`` is accepted too. ``mask``
    (the input's shape without the last axis) gives weighted moments in training:
    ``mean = sum(w x) / (sum(w) + 1e-7)``,
    ``var = sum(w (w x - mean)^2) / (sum(w) + 1e-7)``.

    Shapes: any rank, unchanged. Weights in creation order: ``moving_mean [C]``,
    ``moving_variance [C]`` (state: not trainable, in ``model.state``, so
    ``mx.compile(..., inputs=model.state, outputs=model.state)`` carries their updates),
    ``beta [C]``, ``gamma [C]``: the order of ``get_weights()`` (Note's layout). With
    ``layout="keras"``, Keras's order: ``gamma, beta, moving_mean, moving_variance``.
    """

    _STATE = ("moving_mean", "moving_variance")

    def __init__(self, input_size: IntOrSeq | None = None, axis: IntOrSeq = -1,
                 momentum: float = 0.99, epsilon: float = 0.001, center: bool = True,
                 scale: bool = True, beta_initializer: Initializer = "zeros",
                 gamma_initializer: Initializer = "ones",
                 moving_mean_initializer: Initializer = "zeros",
                 moving_variance_initializer: Initializer = "ones", synchronized: bool = False,
                 trainable: bool = True, dtype: DTypeLike = "float32") -> None:
        super().__init__(dtype=dtype, trainable=trainable)
        axis = check_axis(self, axis)
        inits = dict(beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
                     moving_mean_initializer=moving_mean_initializer,
                     moving_variance_initializer=moving_variance_initializer)
        rank = 1 if isinstance(axis, int) else len(axis)  # of every weight
        for arg, init in inits.items():
            self.check_initializer(arg, init, rank)
        axis, size = sorted_axes(axis, check_input_size(self, input_size, axis))
        self.config(input_size=size, axis=axis,
                    momentum=self.check_float("momentum", momentum, 0.0, 1.0, high_open=False),
                    epsilon=self.check_float("epsilon", epsilon, 0.0, float("inf")),
                    center=self.check_bool("center", center),
                    scale=self.check_bool("scale", scale),
                    synchronized=self.check_bool("synchronized", synchronized))
        for arg, init in inits.items():
            self._set(arg, init)
        self._set("_group", None)
        if self.input_size is not None:
            self.build(self.input_size)

    def build(self, input_size: int | tuple[int, ...]) -> None:
        self._set("input_size", input_size)
        shape = weight_shape(input_size)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer,
                        "moving_mean_initializer", trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer,
                        "moving_variance_initializer", trainable=False)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer, "beta_initializer")
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer, "gamma_initializer")
        self._set("built", True)

    def unfreeze(self, *args: Any, **kwargs: Any) -> batch_norm:
        """As :meth:`mlx.nn.Module.unfreeze`; the moving statistics stay frozen."""
        super().unfreeze(*args, **kwargs)
        if self.built:
            self.freeze(keys=list(self._STATE), recurse=False)
        return self

    def _group_size(self) -> int:
        if self._group is None:
            self._set("_group", mx.distributed.init() if mx.distributed.is_available()
                      else None)
        return 1 if self._group is None else self._group.size()

    def __call__(self, data: ArrayLike, train_flag: bool | None = None,
                 mask: MaskLike | None = None, training: bool | None = None) -> mx.array:
        x = self.as_input(data, min_ndim=1)
        axes = resolve_axes(self, self.axis, x)
        build_from(self, x, axes)
        if mask is not None:
            mask = check_mask(self, mask, tuple(x.shape), expand=True)
        bshape = broadcast_shape(x, axes)
        red = tuple(i for i in range(x.ndim) if i not in axes)
        if not red:
            raise self.error("data", Desc(f"an array of shape {tuple(x.shape)}"),
                             f"an axis to take the statistics over besides axis={self.axis} "
                             "(e.g. a batch axis)")
        train = self.mode(train_flag, training) and self.trainable
        if x.size == 0 and not (train and self.synchronized and self._group_size() > 1):
            # The empty result; an empty batch leaves the moving statistics as they are
            # (MLX's CPU sum over an empty axis can loop forever: none is built).
            return mx.zeros(x.shape, self.dtype)
        x32 = _f32(x)
        g = _f32(self.gamma).reshape(bshape) if self.scale else None
        b = _f32(self.beta).reshape(bshape) if self.center else None
        if train:
            sync = self.synchronized and self._group_size() > 1
            if mask is None and not sync:
                y, mean, var = K.batch_norm_train(
                    x32, g if g is not None else mx.ones(bshape),
                    b if b is not None else mx.zeros(bshape), red, self.epsilon)
            else:
                mean, var = K.moments(x32, red, mask, K.all_sum if sync else None)
                y = K.normalize(x32, mean, var, self.epsilon, g, b)
            self._update(mx.stop_gradient(mean), mx.stop_gradient(var))
        else:
            mean = _f32(self.moving_mean).reshape(bshape)
            var = _f32(self.moving_variance).reshape(bshape)
            y = K.normalize(x32, mean, var, self.epsilon, g, b)
        return y if y.dtype == self.dtype else y.astype(self.dtype)

    def _update(self, mean: mx.array, var: mx.array) -> None:
        m, shape = self.momentum, self.moving_mean.shape
        mm = _f32(self.moving_mean) * m + mean.reshape(shape) * (1.0 - m)
        mv = _f32(self.moving_variance) * m + var.reshape(shape) * (1.0 - m)
        self.moving_mean = mm.astype(self.dtype)
        self.moving_variance = mv.astype(self.dtype)
        # evaluated (not waited for): another thread can use the layer next
        materialize(self.moving_mean, self.moving_variance, wait=False)


# -- group_norm ------------------------------------------------------------------------------
class group_norm(Layer):
    """Group normalization (Wu and He, 2018), as Keras ``GroupNormalization``.

    The ``C`` channels on ``axis`` are split into ``groups`` groups of ``C / groups``
    consecutive channels; each sample is normalized with the mean and biased variance of
    each group over all its other axes (all but the batch axis 0), then scaled by
    ``gamma [C]`` and shifted by ``beta [C]``.

    Args:
        groups (int): number of groups, dividing ``C`` (``-1``: one per channel).
            Default ``32``.
        input_size (int, optional): ``C``; built from the first input if ``None``.
        axis (int): the channel axis (not the batch axis 0). Default ``-1``.
        epsilon (float): added to the variance. Default ``1e-3``.
        center, scale (bool): use ``beta`` / ``gamma``.
        beta_initializer, gamma_initializer: initializers (``'zeros'``, ``'ones'``).
        mask (array, optional): frequency weights broadcastable to the input: the
            moments become ``tf.nn.weighted_moments``'s,
            ``mean = sum(w x) / sum(w)``, ``var = sum(w (x - mean)^2) / sum(w)``
            (0 where ``sum(w) = 0``). A call-time ``mask=`` overrides it.
        dtype (str): ``'float32'``, ``'float16'`` or ``'bfloat16'``.

    Call: ``(data, mask=None)``. Shapes: ``(B, ..., C, ...)`` unchanged. Weights in
    creation order: ``gamma [C]``, ``beta [C]``, in both layouts (Note's and
    ``layout="keras"``).
    """

    def __init__(self, groups: int = 32, input_size: int | None = None, axis: int = -1,
                 epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 beta_initializer: Initializer = "zeros", gamma_initializer: Initializer = "ones",
                 mask: MaskLike | None = None, dtype: DTypeLike = "float32") -> None:
        super().__init__(dtype=dtype)
        if not _is_int(groups) or (groups < 1 and groups != -1) or groups > MAX_DIM:
            raise self.error("groups", groups, f"an int in [1, {MAX_DIM}], or -1 (one group "
                             "per channel)", TypeError if not _is_int(groups) else ValueError)
        if not _is_int(axis):
            raise self.error("axis", axis, "an int (not the batch axis 0)", TypeError)
        if axis == 0:
            raise self.error("axis", axis, "an int other than the batch axis 0")
        self.check_initializer("beta_initializer", beta_initializer, rank=1)
        self.check_initializer("gamma_initializer", gamma_initializer, rank=1)
        if mask is not None and not isinstance(mask, mx.array):
            arr = np.asarray(mask)
            if arr.dtype.kind not in "biuf":
                raise self.error("mask", Desc(f"an array of dtype {arr.dtype}"),
                                 "a bool or numeric array broadcastable to the input",
                                 TypeError)
            mask = mx.array(arr)
        self.config(groups=int(groups),
                    input_size=self.check_int("input_size", input_size, allow_none=True),
                    axis=int(axis), epsilon=self.check_float("epsilon", epsilon, 0.0,
                                                             float("inf")),
                    center=self.check_bool("center", center),
                    scale=self.check_bool("scale", scale))
        self._set("beta_initializer", beta_initializer)
        self._set("gamma_initializer", gamma_initializer)
        self._set("mask", mask)
        if self.input_size is not None:
            self.build(self.input_size)

    def build(self, input_size: int) -> None:
        if input_size < 1:
            raise self.error("data", Desc(f"an input with {input_size} channels"),
                             "at least one channel (groups divide the channels, as Keras)")
        groups = input_size if self.groups == -1 else self.groups
        if input_size % groups:
            raise self.error("groups", self.groups,
                             f"a divisor of the {input_size} channels (input_size)")
        self._set("input_size", input_size)
        self._set("n_groups", groups)
        if self.scale:
            self.add_weight("gamma", (input_size,), self.gamma_initializer,
                            "gamma_initializer")
        if self.center:
            self.add_weight("beta", (input_size,), self.beta_initializer, "beta_initializer")
        self._set("built", True)

    def __call__(self, data: ArrayLike, mask: MaskLike | None = None) -> mx.array:
        x = self.as_input(data, min_ndim=2)
        (axis,) = resolve_axes(self, self.axis, x)
        if axis == 0:
            raise self.error("axis", self.axis, f"a channel axis of a rank-{x.ndim} input "
                             "other than the batch axis 0")
        self.ensure_built(x, axis)
        mask = self.mask if mask is None else mask
        if mask is not None:
            mask = check_mask(self, mask, tuple(x.shape), expand=False)
        if x.size == 0:  # the empty result (no sum over an empty axis: it can hang MLX)
            return mx.zeros(x.shape, self.dtype)
        y = K.group_norm(_f32(x), self.n_groups, axis, self.epsilon,
                                    self.gamma if self.scale else None,
                                    self.beta if self.center else None, mask)
        return y if y.dtype == self.dtype else y.astype(self.dtype)


# -- layer_norm ------------------------------------------------------------------------------
class layer_norm(Layer):
    """Layer normalization (Ba et al., 2016), as Keras ``LayerNormalization``.

    Each sample is normalized with the mean and biased variance over ``axis``, then
    ``y = (x - mean) * rsqrt(var + epsilon) * gamma + beta``. When the normalized axes
    are the trailing ones this runs on ``mx.fast.layer_norm`` (GPU) or a CPU kernel with
    its own VJP.

    Args:
        input_size (int, optional): size of the normalized axis (a list, one per axis,
            when ``axis`` is a list); built from the first input if ``None``.
        axis (int or list): the normalized axis or axes. Default ``-1``.
        momentum (float): accepted for Note's signature; unused (as in Note and Keras).
        epsilon (float): added to the variance. Default ``0.001``.
        center, scale (bool): use ``beta`` / ``gamma``.
        rms_scaling (bool): Keras's ``rms_scaling``: ``y = x * rsqrt(var + epsilon) *
            gamma`` (``x`` not centred, ``var`` centred; ``gamma`` always, no ``beta``).
        beta_initializer, gamma_initializer: initializers (``'zeros'``, ``'ones'``).
        dtype (str): ``'float32'``, ``'float16'`` or ``'bfloat16'``.

    Call: ``(data)``. Shapes unchanged. Weights in creation order (Note's layout):
    ``beta``, ``gamma``, of the input's sizes on ``axis``; with ``layout="keras"``, Keras's
    order ``gamma, beta``.
    """

    def __init__(self, input_size: IntOrSeq | None = None, axis: IntOrSeq = -1,
                 momentum: float = 0.99, epsilon: float = 0.001, center: bool = True,
                 scale: bool = True, rms_scaling: bool = False,
                 beta_initializer: Initializer = "zeros", gamma_initializer: Initializer = "ones",
                 dtype: DTypeLike = "float32") -> None:
        super().__init__(dtype=dtype)
        axis = check_axis(self, axis)
        rank = 1 if isinstance(axis, int) else len(axis)  # of beta and gamma
        self.check_initializer("beta_initializer", beta_initializer, rank)
        self.check_initializer("gamma_initializer", gamma_initializer, rank)
        rms = self.check_bool("rms_scaling", rms_scaling)
        axis, size = sorted_axes(axis, check_input_size(self, input_size, axis))
        self.config(input_size=size, axis=axis,
                    momentum=self.check_float("momentum", momentum, 0.0, 1.0, high_open=False),
                    epsilon=self.check_float("epsilon", epsilon, 0.0, float("inf")),
                    center=self.check_bool("center", center),
                    scale=self.check_bool("scale", scale), rms_scaling=rms)
        self._set("beta_initializer", beta_initializer)
        self._set("gamma_initializer", gamma_initializer)
        self._set("use_beta", self.center and not rms)
        self._set("use_gamma", self.scale or rms)
        if self.input_size is not None:
            self.build(self.input_size)

    def build(self, input_size: int | tuple[int, ...]) -> None:
        self._set("input_size", input_size)
        shape = weight_shape(input_size)
        if self.use_beta:
            self.add_weight("beta", shape, self.beta_initializer, "beta_initializer")
        if self.use_gamma:
            self.add_weight("gamma", shape, self.gamma_initializer, "gamma_initializer")
        self._set("built", True)

    def __call__(self, data: ArrayLike) -> mx.array:
        x = self.as_input(data, min_ndim=1)
        axes = resolve_axes(self, self.axis, x)
        build_from(self, x, axes)
        if x.size == 0:  # the empty result (no sum over an empty axis: it can hang MLX)
            return mx.zeros(x.shape, self.dtype)
        half = self.dtype != mx.float32
        g = self.gamma if self.use_gamma else None
        b = self.beta if self.use_beta else None
        nd, k = x.ndim, len(axes)
        if not self.rms_scaling and axes == tuple(range(nd - k, nd)):
            # Trailing axes, flattened into one. Half inputs are normalized in float32 and
            # rounded once (as Keras).
            flat = x.reshape(*x.shape[:nd - k], -1) if k > 1 else x
            g = None if g is None else (_f32(g) if half else g).reshape(-1)
            b = None if b is None else (_f32(b) if half else b).reshape(-1)
            y = K.layer_norm(flat, g, b, self.epsilon)
            y = y.reshape(x.shape) if k > 1 else y
        else:
            bshape = broadcast_shape(x, axes)
            x32 = _f32(x)
            mean = mx.mean(x32, axes, keepdims=True)
            xc = x32 - mean
            inv = mx.rsqrt(mx.mean(mx.square(xc), axes, keepdims=True) + self.epsilon)
            if self.rms_scaling:
                y = x32 * inv * _f32(g).reshape(bshape)
            else:
                if g is not None:
                    inv = inv * _f32(g).reshape(bshape)
                y = xc * inv
                if b is not None:
                    y = y + _f32(b).reshape(bshape)
        return y if y.dtype == self.dtype else y.astype(self.dtype)


group_normalization = group_norm
layer_normalization = layer_norm
