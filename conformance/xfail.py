"""Expected failures: one registry, a reason for each entry.

Keys are case ids (``layer-key-dtype``) or ``fnmatch`` patterns over them. A case that
passes while listed here fails the run (an unexpected pass), and so does an entry that
matches no case at all.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

EXPECTED_FAILURES: dict[str, str] = {}


def reason_for(case_id: str, registry: dict[str, str] | None = None) -> str | None:
    reg = EXPECTED_FAILURES if registry is None else registry
    for pattern, reason in reg.items():
        if fnmatchcase(case_id, pattern):
            return reason
    return None


def unmatched(all_ids: list[str], registry: dict[str, str] | None = None) -> list[str]:
    """Entries that match no case of the whole suite (not only the selected tier)."""
    reg = EXPECTED_FAILURES if registry is None else registry
    return [p for p in reg if not any(fnmatchcase(i, p) for i in all_ids)]
