"""PII redaction: emails, phone numbers, SSNs and labelled dates of birth become ``[REDACTED]``.

:func:`redact_pii` runs in two passes:

1. Over a *flattened* view of the text, in which line breaks, blank lines (element boundaries), ``|``
   cell separators and table separator rows are joined (to a space, or to nothing where the break sits
   inside a token: after ``@``, between ``123-45-`` and ``6789``), so a value that extraction or a table
   split over several lines or cells (``+1`` / ``617 555 0142``, ``john.smith@`` / ``example.org``,
   ``| +1 617 | 555 0142 |``) is found too. Each piece of such a value is replaced in place, keeping
   every ``|`` and line break, so tables keep their shape.
2. Cell by cell (``|``-separated) on the result, as before the flattened pass existed, so a value the
   joins hid (a neighbouring cell's digits glued to it) is still found inside its own cell. (Text with
   line breaks but no ``|`` has one cell, which the first pass saw whole: it is not scanned twice.)

The rules stay conservative on clinical text: digit groups separated only by spaces (a flattened row of
counts: ``240 238 1500``) are a phone number or SSN only next to a label (``Phone``, ``SSN``), and only
dates labelled as birth dates are redacted. :func:`redact_fields` applies the same to every string in a
nested value (heading paths, entity lists, key phrases).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import phonenumbers

from ray_rag_dagster.backends.enrich.base import REDACTED

PII_KINDS = ("email", "phone", "ssn", "dob")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_DASH = "[-\u2010\u2011\u2012\u2013]"
# Area 000 / group 00 / serial 0000 are never issued, so those shapes are left alone.
_SSN_DIGITS = r"(?!000|666)\d{3}(?P<sep>%s)(?!00)\d{2}(?P=sep)(?!0000)\d{4}(?![\w\-/]|\.\d)"
_SSN = re.compile(r"(?<![\w.\-/])" + _SSN_DIGITS % _DASH)
# Space-separated digits ("240 80 2024") are common in flattened tables: an SSN only when labelled. After a
# label any grouping counts: extraction may drop a line-end hyphen ("219-09-" / "9999" -> "219-099999").
_SSN_LABELLED = re.compile(
    r"(?P<label>\b(?:SSN|SS#|Social Security(?: [Nn]umber| [Nn]o\.?)?)(?:[ \t]+on file)?\s*[:#]?\s*)"
    rf"(?!000|666)\d{{3}}(?:{_DASH}|[ ])?(?!00)\d{{2}}(?:{_DASH}|[ ])?(?!0000)\d{{4}}(?![\w\-/]|\.\d)"
)
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_DATE = (
    r"(?:\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}"
    r"|\d{4}[/.\-]\d{1,2}[/.\-]\d{1,2}"
    rf"|\d{{1,2}}[ \-]{_MONTH}[ \-,]*\d{{4}}"
    rf"|{_MONTH} \d{{1,2}},? \d{{4}})"
)
# Only a date that is labelled as a birth date is PII; visit and approval dates stay.
_DOB = re.compile(
    rf"(?P<label>\b(?:DOB|D\.O\.B\.?|[Dd]ate of [Bb]irth|[Bb]irth ?[Dd]ate|[Bb]orn(?: on)?)\s*[:#-]?\s*)"
    rf"{_DATE}"
)
# A North American number written in 3-3-4 groups, e.g. (555) 201-4477, even with a fictional area code.
# Groups split only by spaces ("240 238 1500") are as likely a flattened table row, so they need a label.
_NANP_GROUPED = re.compile(
    r"(?:1[\s.-]?)?(?:\([2-9]\d\d\)\s?[2-9]\d\d[.\s-]|[2-9]\d\d(?P<sep>[.-])[2-9]\d\d(?P=sep))\d{4}"
)
_NANP_SPACED = re.compile(r"(?:1 )?[2-9]\d\d [2-9]\d\d \d{4}")
# National formats with a trunk "0" and dashes ("02-788-4582", "03-1234-5678"): how numbers outside North
# America are written; no dose, date or lab value takes this shape.
_TRUNK_DASHED = re.compile(r"(?<![\w.\-/])0\d{1,3}-\d{3,4}-\d{4}(?![\w\-/]|\.\d)")
# Any number written after a phone label ("Tel. 02 788 4510", "Fax: 0049 30 1234567"), at least 7 digits.
_LABELLED_PHONE = re.compile(
    r"(?P<label>\b(?:[Tt]el|TEL|[Tt]elephone|[Pp]hone|PHONE|[Ff]ax|FAX|[Mm]obile|[Cc]ell)\b\.?[ \t]*[:#.]?[ \t]*)"
    r"\+?(?:\(\d{1,4}\)[ \t]?)?\d+(?:[ \t.\-]\d{2,})*(?![\w\-/]|\.\d)"
)
_MIN_PHONE_DIGITS = 7
_PHONE_LABEL = re.compile(r"(?:phone|tel|telephone|fax|mobile|cell|call|contact)\b\W{0,4}$", re.IGNORECASE)
_SEVEN_DIGITS = re.compile(r"(?:\d\D{0,3}){7}")
# "+1.2" then other numbers ("| +1.2 | 240 | 80 |", a row of changes from baseline): a signed decimal, not a
# "+" phone number, unless dots separate every group ("+33.1.23.45.67.89").
_SIGNED_DECIMAL = re.compile(r"\+\d+[.,]\d+(?=.*[^\d.])")

# --- detection on one string -----------------------------------------------------------------------


def _phone_spans(text: str) -> list[tuple[int, int]]:
    if not _SEVEN_DIGITS.search(text):
        return []
    spans = []
    for match in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.POSSIBLE):
        # POSSIBLE also finds digit runs that merely parse as numbers ("2017-0045-12" is a valid US
        # number): keep international "+" numbers and national ones grouped the way phones are written.
        raw = match.raw_string
        if (
            (raw.startswith("+") and not _SIGNED_DECIMAL.match(raw))
            or _NANP_GROUPED.fullmatch(raw)
            or (_NANP_SPACED.fullmatch(raw) and _PHONE_LABEL.search(text[max(0, match.start - 16) : match.start]))
        ):
            spans.append((match.start, match.end))
    return spans


def _find(text: str) -> list[tuple[int, int, str]]:
    """Spans (start, end, kind) of the values to replace, not overlapping, in order.

    Detectors run in a fixed order (email, ssn, dob, labelled and trunk-prefixed phones, other phones) and
    a later one never claims characters an earlier one did, so ``john@x.org`` is one email, not two values.
    """
    spans: list[tuple[int, int, str]] = []
    taken = [False] * len(text)

    def claim(start: int, end: int, kind: str) -> None:
        if start < end and not any(taken[start:end]):
            spans.append((start, end, kind))
            taken[start:end] = [True] * (end - start)

    for m in _EMAIL.finditer(text):
        claim(m.start(), m.end(), "email")
    for m in _SSN.finditer(text):
        claim(m.start(), m.end(), "ssn")
    for m in _SSN_LABELLED.finditer(text):
        claim(m.end("label"), m.end(), "ssn")
    for m in _DOB.finditer(text):
        claim(m.end("label"), m.end(), "dob")
    for m in _LABELLED_PHONE.finditer(text):
        if sum(ch.isdigit() for ch in m.group()[len(m.group("label")) :]) >= _MIN_PHONE_DIGITS:
            claim(m.end("label"), m.end(), "phone")
    for m in _TRUNK_DASHED.finditer(text):
        claim(m.start(), m.end(), "phone")
    # Phones are matched on the text with claimed spans blanked, so a digit run of an SSN is not reused.
    blanked = text
    for start, end, _ in spans:
        blanked = blanked[:start] + " " * (end - start) + blanked[end:]
    for start, end in _phone_spans(blanked):
        claim(start, end, "phone")
    return sorted(spans)


# --- pass 2: cell by cell --------------------------------------------------------------------------


def _redact_cells(text: str, counts: Counter[str]) -> str:
    cells = text.split("|")
    for i, cell in enumerate(cells):
        spans = _find(cell)
        for start, end, kind in reversed(spans):
            cell = cell[:start] + REDACTED + cell[end:]
            counts[kind] += 1
        cells[i] = cell
    return "|".join(cells)


# --- pass 1: across line breaks, element boundaries and table cells -------------------------------

# A Markdown table separator row ("|---|:--:|"): structure only, joined like a line break.
_SEPARATOR_ROW = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+(?:[ \t]*:?-{3,}:?[ \t]*)?[ \t]*$", re.MULTILINE)
_GAP = re.compile(r"[ \t\r\n|\f\v]+")
_STRUCTURAL = frozenset("\r\n|\f\v")
_TOKEN_END = re.compile(r"[^\s|]*$")
_TOKEN_START = re.compile(r"[^\s|]*")
_TOKEN_REACH = 80  # an address's local part or domain is shorter than this


def _joins_inside_token(text: str, i: int, j: int, *, structural: bool = True) -> bool:
    """Whether the break ``text[i:j]`` sits inside one token.

    ``john.smith@`` | ``example.org``, ``123-45-`` | ``6789`` and, across a line break or cell
    (``structural``), ``john.`` | ``smith@x.org`` and ``jane@example-`` | ``trials.org``: such a break is
    removed in the flattened view. A plain space qualifies only next to ``@`` or inside hyphenated digits:
    extraction joins a wrapped line with one (``john.smith@ example.org``), and ``end. smith@x.org`` is
    two words.
    """
    if i == 0 or j >= len(text):
        return False
    before, after = text[i - 1], text[j]
    if before == "@" or after == "@":
        return True
    if before in ".-_" and after.isalnum():
        # Digit groups hyphenated across a break: "123-45-" / "6789", "617-555-" / "0142".
        if before == "-" and i >= 2 and text[i - 2].isdigit() and after.isdigit():
            return True
        if structural:
            left_token = _TOKEN_END.search(text, max(0, i - _TOKEN_REACH), i).group()  # type: ignore[union-attr]
            right_token = _TOKEN_START.match(text, j, j + _TOKEN_REACH).group()  # type: ignore[union-attr]
            return "@" in left_token or "@" in right_token
    return False


def _flatten(text: str) -> tuple[str, list[int]]:
    """The flattened view of ``text`` and, for each of its characters, the index it came from."""
    # A separator row becomes "|" of the same length, so it is one more gap and indices still line up.
    marked = _SEPARATOR_ROW.sub(lambda row: "|" * len(row.group()), text)
    out: list[str] = []
    origin: list[int] = []
    position = 0
    for gap in _GAP.finditer(marked):
        i, j = gap.span()
        out.append(text[position:i])
        origin.extend(range(position, i))
        run = marked[i:j]
        structural = any(ch in _STRUCTURAL for ch in run)
        if _joins_inside_token(text, i, j, structural=structural):
            pass  # the break is dropped: the two sides are one token
        elif structural:
            out.append(" ")
            origin.append(i)
        else:
            out.append(run)
            origin.extend(range(i, j))
        position = j
    out.append(text[position:])
    origin.extend(range(position, len(text)))
    return "".join(out), origin


_SPACED_JOIN = re.compile(r"@[ \t]|[ \t]@|\d-[ \t]+\d")
_PIECE = re.compile(r"[^|\r\n]+")
_SEPARATOR_CELL = re.compile(r"\s*:?-{3,}:?\s*")


def _replace_pieces(segment: str) -> str:
    """``segment`` with each cell/line piece that holds text replaced, keeping ``|``, breaks and padding."""

    def one(m: re.Match[str]) -> str:
        piece = m.group()
        core = piece.strip()
        if not core or _SEPARATOR_CELL.fullmatch(piece):
            return piece
        lead = piece[: len(piece) - len(piece.lstrip())]
        trail = piece[len(piece.rstrip()) :]
        return f"{lead}{REDACTED}{trail}"

    return _PIECE.sub(one, segment)


def _redact_across(text: str, counts: Counter[str]) -> str:
    if not any(ch in _STRUCTURAL for ch in text) and not _SPACED_JOIN.search(text):
        return text
    flat, origin = _flatten(text)
    spans = _find(flat)
    for start, end, kind in reversed(spans):
        a, b = origin[start], origin[end - 1] + 1
        segment = text[a:b]
        if not any(ch in _STRUCTURAL for ch in segment):
            segment = REDACTED
        else:
            segment = _replace_pieces(segment)
        text = text[:a] + segment + text[b:]
        counts[kind] += 1
    return text


# --- public ---------------------------------------------------------------------------------------


def redact_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace emails, SSNs, labelled dates of birth and phone numbers with ``[REDACTED]``.

    Returns the redacted text and the count per kind found (absent kinds omitted). Values split across
    line breaks, blank lines or table cells are found as well (see the module docstring); Markdown table
    structure survives: every ``|`` and line break stays where it was.
    """
    counts: Counter[str] = Counter()
    text = _redact_across(text, counts)
    if "|" in text or not any(ch in _STRUCTURAL for ch in text):
        text = _redact_cells(text, counts)
    return text, {kind: counts[kind] for kind in PII_KINDS if counts[kind]}


def redact_fields(value: Any) -> tuple[Any, dict[str, int]]:
    """:func:`redact_pii` over every string in ``value`` (a string, or lists/tuples/dicts of them, nested).

    Dict keys and non-string leaves are kept as they are. Returns the redacted copy and the summed counts.
    """
    counts: Counter[str] = Counter()

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            redacted, found = redact_pii(item)
            counts.update(found)
            return redacted
        if isinstance(item, dict):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return type(item)(walk(inner) for inner in item)
        return item

    return walk(value), {kind: counts[kind] for kind in PII_KINDS if counts[kind]}


def has_pii(text: str) -> bool:
    """Whether :func:`redact_pii` would change ``text`` (for dropping an entity or phrase that holds PII)."""
    return bool(redact_pii(text)[1])
