"""An independent PII detector for the ``no_pii_left`` check: Microsoft Presidio's pattern recognizers.

The redactor (:mod:`ray_rag_dagster.backends.enrich.pii`) cannot audit itself: re-running it on its own
output finds nothing by construction. This module shares no code with it. It runs Presidio's recognizers
for e-mail addresses, phone numbers, US SSNs and credit-card numbers directly, without an
``AnalyzerEngine``: the engine insists on a spaCy NLP engine (a model download), and pattern recognizers
need none (their ``analyze`` takes ``nlp_artifacts=None``; only context-word score boosting is lost).

A value split by extraction or a table must be caught too, so every text is scanned three ways and
each kind counted by its best view:

1. as is;
2. with line breaks, blank lines, ``|`` cell separators and table separator rows turned into one space
   (``+1`` / ``617 555 0142`` and ``| +1 617 | 555 0142 |`` become ``+1 617 555 0142``);
3. as 2, with the space removed where a break cut a token: around ``@``, after ``123-45-``, and inside
   the local part or domain of an address (``john.smith@`` / ``example.org``).

Adjustments to Presidio's defaults, each for a reason:

- e-mail: its domain check (tldextract) is run offline on the bundled public-suffix snapshot (no
  network), and also accepts the reserved ``.example``/``.test``/``.invalid``/``.localhost`` domains;
- SSN: Presidio's five patterns, but only the ``123-45-6789`` shape on its own; the others (spaces,
  dots, no separator, 3-6 or 5-4 groups: any 9-digit identifier, or ``240 80 2024``, a row of counts)
  only after an SSN label, which is what Presidio's context words would have required with an NLP
  engine. Published sample numbers (``078-05-1120``) are *not* waved through: in a document they are
  still SSN-shaped data that should have been redacted;
- phone: Presidio's recognizer with "valid number" leniency for its default regions. Without a "+" or a
  phone label just before it, a number is dropped when it is one bare digit run (``1234567890``: an
  identifier), bare space-separated digit groups (``240 238 1500``: a row of counts), has fewer than 9
  digits (``1645–1650``: a page range), holds three lone digits or more (``1 -2 2 -.3 3 4 5 7 8 8``: a
  table's row of visit numbers), holds a section number (``36 9.2.2.1`` in a table of contents)
  or starts with a year (``2017-0045-12``); a "+" number that starts as a signed decimal (``+1.2 240 80``)
  is dropped too.
  Without these rules the detector's only findings on the three real protocols' text layer were a page
  range and section numbers in a table of contents (4, all false).

:func:`find_pii` returns counts per kind, never the values, so it is safe for logs and metadata.
"""

from __future__ import annotations

import functools
import re
import sys
from collections import Counter
from typing import Any

DETECTED_KINDS = ("email", "phone", "ssn", "credit_card")

_KIND_OF_ENTITY = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "US_SSN": "ssn", "CREDIT_CARD": "credit_card"}
_RESERVED_TLDS = ("example", "test", "invalid", "localhost")
_SAMPLE_SSNS = frozenset({"123456789", "987654320", "078051120"})

_SSN_DASHED = re.compile(r"\d{3}-\d{2}-\d{4}")
_SSN_LABEL = re.compile(r"(?:\bssn|\bss#|social\s+security)\D{0,16}$", re.IGNORECASE)
_PHONE_LABEL = re.compile(
    r"(?:phone|tel|telephone|fax|mobile|cell|call|contact)\W{0,5}(?:\+?\d{1,3}\W{0,2})?$", re.IGNORECASE
)
_BARE_DIGIT_GROUPS = re.compile(r"\d+(?: \d+)+")
# Digit runs that validate as a number in some region but are written as something else: a section number
# after a page number in a table of contents ("36 9.2.2.1"), a year-first code or date ("2017-0045-12").
_NOT_A_PHONE = re.compile(r"\d\.\d{1,2}\.\d|^(?:19|20)\d\d[-\u2010-\u2013/.]")
# "+1.2" followed by other numbers is a signed decimal from a table of changes, unless dots separate every
# group of the number ("+33.1.23.45.67.89").
_SIGNED_DECIMAL = re.compile(r"\+\d+[.,]\d+(?=.*[^\d.])")
_MIN_UNLABELLED_DIGITS = 9  # a bare national number shorter than this is a range or count ("1645–1650")
# Phone numbers are grouped in twos to fours; several lone digits are a row of visit or week numbers from a
# table header ("VISIT 1 -2 2 -.3 3 4 5 7 8 8").
_LONE_DIGIT = re.compile(r"(?<!\d)\d(?!\d)")
_LONE_DIGITS_OF_A_ROW = 3
_LABEL_WINDOW = 24

# --- views of the text -------------------------------------------------------------------------------

_TABLE_RULE = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|?)+[ \t]*$", re.MULTILINE)
_BREAKS = re.compile(r"[\s|]+")
_TOKEN_CUTS = (
    re.compile(r" ?@ ?"),  # john.smith@ example.org / john.smith @example.org
    re.compile(r"(?<=\d[-\u2010\u2011\u2012\u2013]) (?=\d)"),  # 123-45- 6789
    re.compile(r"(?<=[._-]) (?=[A-Za-z0-9][A-Za-z0-9._%+-]*@)"),  # john. smith@example.org
    re.compile(r"(@[A-Za-z0-9.-]*[.-]) (?=[A-Za-z0-9])"),  # jane@example- trials.org
)


def views(text: str) -> list[str]:
    """The three texts :func:`find_pii` scans: as is, breaks as spaces, and token cuts rejoined."""
    spaced = _BREAKS.sub(" ", _TABLE_RULE.sub(" ", text)).strip()
    joined = spaced
    for cut in _TOKEN_CUTS:
        joined = cut.sub(lambda m: m.group().replace(" ", ""), joined)
    return [text, spaced, joined]


# --- recognizers --------------------------------------------------------------------------------------


# Presidio's package imports its NLP engines eagerly, and through them spaCy, thinc, torch and transformers
# when those are installed (they are here: docling and the embedder need them): 20-40 s of imports on a busy
# machine for recognizers that use none of them. Both are optional to Presidio and thinc (each guards the
# import), so they are hidden while Presidio loads when this process has not imported them already, and
# visible again right after: a later ``import torch`` anywhere works as usual.
_OPTIONAL_HEAVY_IMPORTS = ("torch", "transformers")


def _import_presidio() -> Any:
    hidden = [name for name in _OPTIONAL_HEAVY_IMPORTS if name not in sys.modules]
    try:
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]  # makes ``import name`` raise ImportError
        from presidio_analyzer import predefined_recognizers
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
    return predefined_recognizers


@functools.cache
def _recognizers() -> tuple[Any, ...]:
    """Built once per process (importing Presidio loads spaCy's library, not a model: a few seconds)."""
    import tldextract

    recognizers = _import_presidio()
    CreditCardRecognizer = recognizers.CreditCardRecognizer  # noqa: N806
    EmailRecognizer = recognizers.EmailRecognizer  # noqa: N806
    PhoneRecognizer = recognizers.PhoneRecognizer  # noqa: N806
    UsSsnRecognizer = recognizers.UsSsnRecognizer  # noqa: N806

    offline_suffixes = tldextract.TLDExtract(
        cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True, extra_suffixes=_RESERVED_TLDS
    )

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_suffixes(pattern_text.rsplit("@", 1)[-1]).fqdn != ""

    class SampleNumbersSsnRecognizer(UsSsnRecognizer):
        def invalidate_result(self, pattern_text: str) -> bool:
            digits = "".join(ch for ch in pattern_text if ch.isdigit())
            if digits in _SAMPLE_SSNS:  # judged by the other rules only
                delimiters = {ch for ch in pattern_text if ch in ".- "}
                return len(delimiters) > 1
            return bool(super().invalidate_result(pattern_text))

    return (
        OfflineEmailRecognizer(),
        PhoneRecognizer(leniency=1),
        SampleNumbersSsnRecognizer(),
        CreditCardRecognizer(),
    )


def _labelled(text: str, start: int, label: re.Pattern[str]) -> bool:
    return label.search(text[max(0, start - _LABEL_WINDOW) : start]) is not None


def _phone_shaped(text: str, start: int, value: str) -> bool:
    """Whether a national (no "+") number Presidio found is written like a phone number, or labelled as one."""
    if _labelled(text, start, _PHONE_LABEL):
        return True
    digits = sum(ch.isdigit() for ch in value)
    return not (
        value.isdigit()
        or _BARE_DIGIT_GROUPS.fullmatch(value)
        or _NOT_A_PHONE.search(value)
        or digits < _MIN_UNLABELLED_DIGITS
        or len(_LONE_DIGIT.findall(value)) >= _LONE_DIGITS_OF_A_ROW
    )


# Where a phone number could be: a digit run with the separators phone numbers are written with. Presidio's
# recognizer runs libphonenumber's matcher once per region (8 of them) over whatever it is given; given only
# these runs (and a margin, for the matcher's own look at what surrounds a number), it finds the same numbers
# about 10x faster than over a whole chunk.
_PHONE_CANDIDATE = re.compile(r"[+\uff0b(\uff08]?\d[\d\s\-\u2010-\u2015\u2212.()/~\[\]\uff08\uff09]*\d")
_MIN_CANDIDATE_DIGITS = 5
_CANDIDATE_MARGIN = 8


def _phone_windows(text: str) -> list[tuple[int, int]]:
    windows: list[tuple[int, int]] = []
    for match in _PHONE_CANDIDATE.finditer(text):
        if sum(ch.isdigit() for ch in match.group()) < _MIN_CANDIDATE_DIGITS:
            continue
        start, end = max(0, match.start() - _CANDIDATE_MARGIN), min(len(text), match.end() + _CANDIDATE_MARGIN)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def _analyze(recognizer: Any, text: str) -> list[Any]:
    """The recognizer's results on ``text``; the phone recognizer only looks at the phone-shaped runs."""
    if "PHONE_NUMBER" not in recognizer.supported_entities:
        return recognizer.analyze(text, recognizer.supported_entities, None)
    results = []
    for start, end in _phone_windows(text):
        for result in recognizer.analyze(text[start:end], recognizer.supported_entities, None):
            result.start, result.end = result.start + start, result.end + start
            results.append(result)
    return results


def _detect(text: str) -> Counter[str]:
    found: Counter[str] = Counter()
    spans: set[tuple[int, int, str]] = set()
    for recognizer in _recognizers():
        for result in _analyze(recognizer, text):
            kind = _KIND_OF_ENTITY[result.entity_type]
            value = text[result.start : result.end]
            if kind == "ssn" and not _SSN_DASHED.fullmatch(value) and not _labelled(text, result.start, _SSN_LABEL):
                continue
            if kind == "phone" and (
                _SIGNED_DECIMAL.match(value) if value.startswith("+") else not _phone_shaped(text, result.start, value)
            ):
                continue
            spans.add((result.start, result.end, kind))
    # An SSN's digits are also a valid phone number in some region: one value, counted once, as the SSN.
    ssns = [(s, e) for s, e, k in spans if k == "ssn"]
    for start, end, kind in spans:
        if kind == "phone" and any(s < end and start < e for s, e in ssns):
            continue
        found[kind] += 1
    return found


def find_pii(text: str) -> Counter[str]:
    """PII left in ``text``, as counts per kind (``email``, ``phone``, ``ssn``, ``credit_card``).

    Each kind is counted in whichever view of the text (see the module docstring) shows most of it, so a
    value is not counted twice for being found both as is and rejoined. Never returns the values.
    """
    if not text or not any(ch.isdigit() or ch == "@" for ch in text):
        return Counter()
    total: Counter[str] = Counter()
    for view in views(text):
        total |= _detect(view)
    return total
