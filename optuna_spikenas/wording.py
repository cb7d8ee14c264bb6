"""How counts read in the package's messages: ``plural(1, "epoch")`` is "1 epoch", never
"1 epochs"."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``count`` (with thousands separators) and ``noun``, in the plural unless the count is one
    (``plural_form`` for nouns whose plural is not NOUN + "s")."""
    word = noun if count == 1 else plural_form or f"{noun}s"
    return f"{count:,} {word}"
