"""attention layers (being built)."""

__all__: list[str] = []
