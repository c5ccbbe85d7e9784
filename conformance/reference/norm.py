"""References for the normalization layers.

* batch_norm: Keras ``BatchNormalization`` with the weights *and* moving statistics
  transferred (an ``axis`` list runs Keras on the input transposed so that those axes are
  last and merged into one). Keras 3 casts ``mask`` to bool; the documented moments
  (``note-semantics.md`` section 2) are ``mean = sum(w x) / (sum(w) + 1e-7)``,
  ``var = sum(w (w x - mean)^2) / (sum(w) + 1e-7)``, which agree with Keras for 0/1 masks
  and differ for fractional weights. Fractional weights (and a mask with an ``axis``
  list) are therefore checked against :class:`DocumentedBatchNorm`, written in TF from
  that formula.
* group_norm: Keras ``GroupNormalization``; with a mask (Keras has none), TF from the
  documentation: ``tf.nn.weighted_moments`` over the group's axes, then Keras's
  normalization.
* layer_norm: Keras ``LayerNormalization`` (``rms_scaling`` included).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import tensorflow as tf

from ..case import Reference

MASK_EPSILON = 1e-7


def _np(dtype: tf.DType):
    return np.float32 if dtype == tf.bfloat16 else dtype.as_numpy_dtype


def _compute(dtype: tf.DType) -> tf.DType:
    """Keras computes normalization statistics in at least float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def _input_shape(case) -> tuple[int, ...]:
    return tuple(case.inputs[0].shape)


def _axes(axis, ndim: int) -> list[int]:
    axes = [axis] if isinstance(axis, int) else list(axis)
    return sorted(a % ndim for a in axes)


def _mask_input(case):
    """The mask Input of a case (call-time), or None."""
    for i in case.inputs[1:]:
        if i.name == "mask":
            return i
    return None


# -- batch_norm ----------------------------------------------------------------------------
def _split_bn_weights(case, weights):
    kw = case.kwargs
    it = iter(weights)
    mm, mv = next(it), next(it)
    beta = next(it) if kw.get("center", True) else None
    gamma = next(it) if kw.get("scale", True) else None
    return mm, mv, beta, gamma


class DocumentedBatchNorm:
    """batch_norm written in TF from the documentation (Keras's formulas, with the
    documented weighted moments), for an int or list ``axis``."""

    def __init__(self, case, weights, dtype):
        kw = case.kwargs
        self.dtype, self.cdt = dtype, _compute(dtype)
        self.ndim = len(_input_shape(case))
        self.axes = _axes(kw.get("axis", -1), self.ndim)
        self.red = [i for i in range(self.ndim) if i not in self.axes]
        shape = _input_shape(case)
        self.bshape = [shape[i] if i in self.axes else 1 for i in range(self.ndim)]
        self.momentum = kw.get("momentum", 0.99)
        self.epsilon = kw.get("epsilon", 1e-3)
        self.trainable = kw.get("trainable", True)
        mm, mv, beta, gamma = _split_bn_weights(case, weights)
        var = lambda a: tf.Variable(tf.constant(a, dtype=dtype))  # noqa: E731
        self.moving_mean, self.moving_variance = var(mm), var(mv)
        self.beta = var(beta) if beta is not None else None
        self.gamma = var(gamma) if gamma is not None else None

    @property
    def trainable_variables(self):
        if not self.trainable:
            return []
        return [v for v in (self.beta, self.gamma) if v is not None]

    def __call__(self, x, mask=None, training=False):
        x = tf.cast(x, self.cdt)
        r = lambda v: tf.reshape(tf.cast(v, self.cdt), self.bshape)  # noqa: E731
        if training and self.trainable:
            if mask is None:
                mean, var = tf.nn.moments(x, self.red, keepdims=True)
            else:
                w = tf.broadcast_to(tf.expand_dims(tf.cast(mask, self.cdt), -1), tf.shape(x))
                den = tf.reduce_sum(w, self.red, keepdims=True) + MASK_EPSILON
                mean = tf.reduce_sum(w * x, self.red, keepdims=True) / den
                var = tf.reduce_sum(w * tf.square(w * x - mean), self.red, keepdims=True) / den
            m = self.momentum
            shape = self.moving_mean.shape
            self.moving_mean.assign(tf.cast(
                tf.cast(self.moving_mean, self.cdt) * m + tf.reshape(mean, shape) * (1 - m),
                self.dtype))
            self.moving_variance.assign(tf.cast(
                tf.cast(self.moving_variance, self.cdt) * m + tf.reshape(var, shape) * (1 - m),
                self.dtype))
        else:
            mean, var = r(self.moving_mean), r(self.moving_variance)
        y = tf.nn.batch_normalization(
            x, mean, var, r(self.beta) if self.beta is not None else None,
            r(self.gamma) if self.gamma is not None else None, self.epsilon)
        return tf.cast(y, self.dtype)

    def state(self):
        return {"moving_mean": self.moving_mean.numpy(),
                "moving_variance": self.moving_variance.numpy()}


class KerasBatchNorm:
    """Keras ``BatchNormalization`` for an int ``axis``, or for an ``axis`` list through a
    transpose that puts those axes last, merged into one channel axis."""

    def __init__(self, case, weights, dtype):
        kw = case.kwargs
        shape = _input_shape(case)
        nd = len(shape)
        axis = kw.get("axis", -1)
        self.listed = not isinstance(axis, int)
        if self.listed:
            axes = _axes(axis, nd)
            self.perm = [i for i in range(nd) if i not in axes] + axes
            self.inv = list(np.argsort(self.perm))
            self.kept = [shape[i] for i in axes]
            self.lead = [shape[i] for i in range(nd) if i not in axes]
            k_axis, k_shape = -1, tuple(self.lead) + (int(np.prod(self.kept)),)
        else:
            k_axis, k_shape = axis, shape
        self.layer = keras.layers.BatchNormalization(
            axis=k_axis, momentum=kw.get("momentum", 0.99), epsilon=kw.get("epsilon", 1e-3),
            center=kw.get("center", True), scale=kw.get("scale", True),
            synchronized=kw.get("synchronized", False), dtype=dtype.name)
        self.layer.build(k_shape)
        self.layer.trainable = kw.get("trainable", True)
        mm, mv, beta, gamma = _split_bn_weights(case, weights)
        flat = lambda a: a.reshape(-1).astype(_np(dtype))  # noqa: E731
        self.layer.moving_mean.assign(flat(mm))
        self.layer.moving_variance.assign(flat(mv))
        if beta is not None:
            self.layer.beta.assign(flat(beta))
        if gamma is not None:
            self.layer.gamma.assign(flat(gamma))
        self.note_shape = mm.shape

    @property
    def trainable_variables(self):
        if not self.layer.trainable:
            return []
        return [v.value for v in (getattr(self.layer, "beta", None),
                                  getattr(self.layer, "gamma", None)) if v is not None]

    def __call__(self, x, mask=None, training=False):
        if not self.listed:
            return self.layer(x, training=training, mask=mask)
        xt = tf.reshape(tf.transpose(x, self.perm), self.lead + [-1])
        y = self.layer(xt, training=training)
        return tf.transpose(tf.reshape(y, self.lead + self.kept), self.inv)

    def grads_to_note(self, grads):
        return [np.reshape(g, self.note_shape) for g in grads]

    def state(self):
        return {"moving_mean": self.layer.moving_mean.numpy().reshape(self.note_shape),
                "moving_variance": self.layer.moving_variance.numpy().reshape(
                    self.note_shape)}


def batch_norm(case, weights, dtype):
    mask = _mask_input(case)
    listed = not isinstance(case.kwargs.get("axis", -1), int)
    documented = mask is not None and (mask.kind != "mask" or listed)
    bn = (DocumentedBatchNorm if documented else KerasBatchNorm)(case, weights, dtype)

    def fn(x, mask=None, training=False):
        return bn(x, mask=mask, training=training)

    grads = getattr(bn, "grads_to_note", None)
    return Reference(fn, bn.trainable_variables, grads, bn.state)


# -- group_norm ----------------------------------------------------------------------------
def _documented_group_norm(x, w, groups, axis, epsilon, gamma, beta, dtype):
    """GroupNormalization with frequency weights ``w`` (broadcastable to ``x``):
    ``tf.nn.weighted_moments`` over every axis but the batch and group axes."""
    cdt = _compute(dtype)
    nd = len(x.shape)
    axis = axis % nd
    c = x.shape[axis]
    gshape = list(x.shape[:axis]) + [groups, c // groups] + list(x.shape[axis + 1:])
    xg = tf.reshape(tf.cast(x, cdt), gshape)
    wg = tf.reshape(tf.broadcast_to(tf.cast(w, cdt), x.shape), gshape)
    red = [i for i in range(1, nd + 1) if i != axis]
    mean, var = tf.nn.weighted_moments(xg, red, wg, keepdims=True)
    pshape = [1] * (nd + 1)
    pshape[axis], pshape[axis + 1] = groups, c // groups
    inv = tf.math.rsqrt(var + epsilon)
    if gamma is not None:
        inv = inv * tf.reshape(tf.cast(gamma, cdt), pshape)
    res = -mean * inv
    if beta is not None:
        res = res + tf.reshape(tf.cast(beta, cdt), pshape)
    return tf.cast(tf.reshape(xg * inv + res, x.shape), dtype)


def group_norm(case, weights, dtype):
    kw = case.kwargs
    center, scale = kw.get("center", True), kw.get("scale", True)
    it = iter(weights)
    gamma = tf.Variable(tf.constant(next(it), dtype=dtype)) if scale else None
    beta = tf.Variable(tf.constant(next(it), dtype=dtype)) if center else None
    variables = [v for v in (gamma, beta) if v is not None]
    shape = _input_shape(case)
    axis = kw.get("axis", -1)
    groups = kw.get("groups", 32)
    groups = shape[axis] if groups == -1 else groups
    eps = kw.get("epsilon", 1e-3)
    ctor_mask = kw.get("mask")
    if ctor_mask is None and _mask_input(case) is None:
        layer = keras.layers.GroupNormalization(groups=groups, axis=axis, epsilon=eps,
                                                center=center, scale=scale, dtype=dtype.name)
        layer.build(shape)
        if scale:
            layer.gamma.assign(weights[0].astype(_np(dtype)))
        if center:
            layer.beta.assign(weights[-1].astype(_np(dtype)))
        return Reference(lambda x, training: layer(x),
                         [v.value for v in (getattr(layer, "gamma", None),
                                            getattr(layer, "beta", None)) if v is not None])

    def fn(x, mask=None, training=False):
        w = mask if mask is not None else tf.constant(np.asarray(ctor_mask, np.float64))
        return _documented_group_norm(x, w, groups, axis, eps, gamma, beta, dtype)

    return Reference(fn, variables)


# -- layer_norm ----------------------------------------------------------------------------
def layer_norm(case, weights, dtype):
    kw = case.kwargs
    rms = kw.get("rms_scaling", False)
    axis = kw.get("axis", -1)
    axis = list(axis) if not isinstance(axis, int) else axis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rms_scaling is deprecated in Keras 3
        layer = keras.layers.LayerNormalization(
            axis=axis, epsilon=kw.get("epsilon", 1e-3), center=kw.get("center", True),
            scale=kw.get("scale", True), rms_scaling=rms, dtype=dtype.name)
    layer.build(_input_shape(case))
    it = iter(weights)
    beta = next(it) if kw.get("center", True) and not rms else None
    gamma = next(it) if kw.get("scale", True) or rms else None
    if beta is not None:
        layer.beta.assign(beta.astype(_np(dtype)))
    if gamma is not None:
        layer.gamma.assign(gamma.astype(_np(dtype)))
    variables = [v.value for v in (layer.beta, layer.gamma) if v is not None]

    def fn(x, training=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the rms_scaling deprecation, again per call
            return layer(x)

    return Reference(fn, variables)
