"""References to a row by its id (a ULID) or by its short number (seed 003's `"user_id": 1`)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table

Ref = str | int
MAX_NUMBER_DIGITS = 18  # a string of digits this short is a number; a ULID is 26 characters
NO_ROW = -1  # the number of no row: what a number no column can hold stands for


def as_number(ref: Ref) -> int | None:
    """The number `ref` names, or None when it is an id."""
    if isinstance(ref, int):
        return ref if 0 <= ref < 2**63 else NO_ROW
    if ref.isascii() and ref.isdigit() and len(ref) <= MAX_NUMBER_DIGITS:
        return int(ref)
    return None


def ref_filter(table: Table, ref: Ref) -> ColumnElement[bool]:
    number = as_number(ref)
    if number is not None:
        return table.c.number == number
    return table.c.id == ref
