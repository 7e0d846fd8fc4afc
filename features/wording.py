"""Plural rules for every sentence a user reads: one place, pure text.

Counts of things are written with :func:`count_phrase` ("1 trial login", "3 trial logins",
"0 sales touches"); reason templates choose their ``[singular|plural]`` forms with
:func:`choose_forms`. Both decide "one" the same way (:func:`is_one`).
"""

from __future__ import annotations

import re

_FORMS = re.compile(r"\[([^\[\]|]*)\|([^\[\]|]*)\]")
_SIBILANT_ES = ("ches", "shes", "sses", "xes", "zes")


def is_one(value: object) -> bool:
    """Whether a count reads as singular: the value is 1 (to six decimals)."""
    try:
        return round(float(value), 6) == 1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def singular_of(plural: str) -> str:
    """The singular of an English plural noun phrase, by its last word: 'trial logins' -> 'trial
    login', 'sales touches' -> 'sales touch', 'replies' -> 'reply'. Phrases whose noun is not last
    ('webinars attended') need their singular given."""
    head, _, last = plural.rpartition(" ")
    lower = last.lower()
    if lower.endswith("ies") and len(last) > 4:
        word = last[:-3] + "y"
    elif lower.endswith(_SIBILANT_ES):
        word = last[:-2]
    elif lower.endswith("s") and not lower.endswith("ss"):
        word = last[:-1]
    else:
        word = last
    return f"{head} {word}" if head else word


def count_phrase(count: float, plural: str, *, singular: str | None = None) -> str:
    """'1 trial login', '2 trial logins', '0 trial logins' (counts are written whole)."""
    whole = round(count)
    if whole == 1:
        return f"1 {singular or singular_of(plural)}"
    return f"{whole} {plural}"


def choose_forms(text: str, *, one: bool) -> str:
    """Replace each ``[singular|plural]`` in ``text`` by its singular (``one``) or plural form."""
    return _FORMS.sub(lambda m: m.group(1) if one else m.group(2), text)
