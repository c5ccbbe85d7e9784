"""``python -m mlxnote.launch``: ``mlx.launch`` that exits non-zero as soon as a rank fails
and ends the others (:mod:`mlxnote.training.launch`)."""

from .training.launch import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
