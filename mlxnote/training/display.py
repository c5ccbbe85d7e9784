"""Rich output: the progress display and the model summary table.

:class:`Display` (behind :class:`~mlxnote.training.callbacks.ProgbarLogger`) shows one
run of batches (an epoch, an evaluation, a prediction) as a rich bar in a terminal, as an
HTML rendering of that bar updated in place in Jupyter, or as one plain line when it ends
(a log file, a pipe). :func:`summary_table` is ``Model.summary``'s table.
"""

from __future__ import annotations

import io
import sys
import time
from typing import Any

import numpy as np
from mlx.utils import tree_flatten

from .._validation import error
from ..nn import weights
from ..nn.layer import Layer

__all__ = ["Display", "in_jupyter", "format_logs", "style_for", "summary_table",
           "print_table", "table_html"]


def in_jupyter() -> bool:
    """Whether this runs in a Jupyter kernel (where output is HTML, not a terminal)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _value(v: Any) -> str:
    """A log value: 4 decimals; an array (a metric at several thresholds) as a list."""
    if np.ndim(v):
        return np.array2string(np.asarray(v), precision=4, separator=", ")
    return f"{v:.4f}"


def format_logs(logs: dict[str, Any]) -> str:
    return "  ".join(f"{k} {_value(v)}" for k, v in logs.items())


def style_for(verbose: Any, owner: str) -> str:
    """``'none'`` (0), ``'lines'`` (2), or for ``'auto'``/1 ``'jupyter'``, ``'bar'`` in a
    terminal and ``'lines'`` otherwise."""
    if verbose in (0, False):
        return "none"
    if verbose == 2:
        return "lines"
    if verbose in (1, True, "auto"):
        return "jupyter" if in_jupyter() else ("bar" if sys.stdout.isatty() else "lines")
    raise error(owner, "verbose", verbose, "'auto', 0, 1 or 2")


def _progress(console: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=30),
                    MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[logs]}"), console=console,
                    auto_refresh=False, transient=False)


class Display:
    """``begin(label, total)``, ``step(done, logs)`` per batch, ``end(done, logs)``.

    ``style``: ``'bar'`` (a rich Progress, refreshed at most every 0.1 s), ``'jupyter'``
    (an HTML display updated in place, at most every 0.25 s), ``'lines'`` (a line at
    the end) or ``'none'``. :meth:`close` stops a live bar (also when a run raised).
    """

    interval = {"bar": 0.1, "jupyter": 0.25}

    def __init__(self, style: str) -> None:
        self.style = style
        self.progress = self.handle = self.task = self.console = None
        self.label, self.t0, self.last = "", 0.0, 0.0

    def begin(self, label: str, total: int | None) -> None:
        self.label, self.t0 = label, time.perf_counter()
        if self.style == "bar":
            from rich.console import Console

            self.progress = _progress(Console(file=sys.stdout))
            self.progress.start()
        elif self.style == "jupyter":
            from IPython.display import HTML, display
            from rich.console import Console

            self.console = Console(file=io.StringIO(), record=True, width=120,
                                   force_terminal=True, force_jupyter=False,
                                   color_system="truecolor")
            self.progress = _progress(self.console)
            self.handle = display(HTML(""), display_id=True)
        if self.progress is not None:
            self.task = self.progress.add_task(self.label, total=total, logs="")

    def _render(self) -> None:
        if self.style == "bar":
            self.progress.refresh()
            return
        from IPython.display import HTML

        self.console.print(self.progress.get_renderable())
        html = self.console.export_html(inline_styles=True, code_format=(
            "<pre style=\"white-space:pre;line-height:normal;font-family:Menlo,"
            "'DejaVu Sans Mono',consolas,monospace\">{code}</pre>"))
        self.handle.update(HTML(html))

    def step(self, done: int, logs: dict[str, float]) -> None:
        if self.progress is None:
            return
        self.progress.update(self.task, completed=done, logs=format_logs(logs))
        now = time.perf_counter()
        if now - self.last >= self.interval[self.style]:
            self.last = now
            self._render()

    def end(self, done: int, logs: dict[str, float]) -> None:
        if self.style == "none":
            return
        if self.style == "lines":
            dt = time.perf_counter() - self.t0
            print(f"{self.label}: {done} steps, {dt:.1f}s  {format_logs(logs)}", flush=True)
            return
        if self.progress is None:
            return
        self.progress.update(self.task, completed=done, total=done, logs=format_logs(logs))
        self._render()
        self.close()

    def close(self) -> None:
        """Stop a live bar (also when the run raised)."""
        if self.style == "bar" and self.progress is not None:
            self.progress.stop()
        self.progress = None


def summary_table(model: Any) -> Any:
    """A rich table of ``model``'s layers: path, type, weight shapes (Note's layout) and
    parameter count, with the totals in the caption."""
    from rich.table import Table

    t = Table(title=f"{model.name}", title_justify="left")
    for c in ("layer", "type", "weights", "params"):
        t.add_column(c, justify="right" if c == "params" else "left")
    for p, e in weights.modules(model):
        ws = weights.collect(e)
        shapes = " ".join(str(w.note_shape) for w in ws) or "-"
        built = not isinstance(e, Layer) or e.built
        t.add_row(p, type(e).__name__, shapes,
                  f"{sum(int(np.prod(w.note_shape)) for w in ws):,}" if built else "unbuilt")
    trainable = sum(int(np.prod(v.shape)) for _, v in tree_flatten(model.trainable_parameters()))
    t.caption = f"total {model.count_params():,} params, {trainable:,} trainable"
    return t


def print_table(table: Any, print_fn: Any = None) -> None:
    """Print to the terminal, or pass the rendered text (120 columns) to ``print_fn``."""
    from rich.console import Console

    if print_fn is None:
        Console().print(table)
        return
    c = Console(file=io.StringIO(), width=120)
    c.print(table)
    print_fn(c.file.getvalue())


def table_html(table: Any) -> str:
    """The table as inline-styled HTML (Jupyter's ``_repr_html_``)."""
    from rich.console import Console

    c = Console(file=io.StringIO(), record=True, width=120)
    c.print(table)
    return c.export_html(inline_styles=True, code_format="<pre style='font-size:12px'>"
                         "{code}</pre>")
