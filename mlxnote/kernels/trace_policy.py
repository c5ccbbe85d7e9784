"""How a recurrent scan is being traced (:func:`tracing`) and the code path that follows for
it (:func:`policy`): :func:`mlxnote.kernels.scan.scan` asks both on every call."""

from __future__ import annotations

import mlx.core as mx

from .._config import cpu_formulation

_probe_runs = 0


def _probe_body(x: mx.array) -> mx.array:
    global _probe_runs
    _probe_runs += 1
    return x


_probe = mx.compile(_probe_body)


def tracing(*arrays: mx.array) -> str:
    """How ``arrays`` are being traced right now: ``'none'``, ``'grad'`` (inside
    ``mx.grad``/``vjp``/``value_and_grad``) or ``'compile'`` (inside ``mx.compile``).

    Measured rather than assumed: a compiled probe retraces (runs its Python body) when its
    input is a tracer, and MLX refuses to evaluate inside a compile trace. It also retraces
    once for a plain array after tracer calls, so a retrace that evaluates is confirmed by a
    second call (a tracer retraces every time). Costs a few microseconds.
    """
    probe_in = sum(mx.sum(a.reshape(-1)[:1]) for a in arrays)  # an empty array: 0
    before = _probe_runs
    out = _probe(probe_in)
    if _probe_runs == before:
        return "none"
    try:
        mx.eval(out)
    except ValueError:
        return "compile"
    before = _probe_runs
    _probe(probe_in)
    return "none" if _probe_runs == before else "grad"


def policy(dtype: mx.Dtype, trace: str) -> tuple[bool, bool]:
    """``(compile the forward loop, fast activations)`` for the default device, a dtype
    and the kind of tracing (:func:`tracing`).

    In the CPU formulation in float32 (``docs/performance.md`` has the measurements),

    * untraced (inference): the compiled forward loop with the fast activations;
    * inside ``mx.compile`` (a compiled training step): the fast activations, which the
      outer compile fuses;
    * inside ``mx.grad`` without an outer compile: MLX's own activations, uncompiled (a
      compiled function is retraced on every call there, and the fast activations are
      many small ops until compiled).

    Other dtypes and devices (Metal, CUDA: not measured here) run MLX's own ops uncompiled.
    """
    if not cpu_formulation() or dtype != mx.float32:
        return False, False
    if trace == "none":
        return True, True
    return False, trace == "compile"
