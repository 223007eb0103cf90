"""People, organisations and medications in a chunk's (already redacted) text: cue-based rules and a drug dictionary.

People are names introduced by an honorific, followed by a credential or given for a study role;
organisations end in a legal or institutional suffix; medications come from
drug_named_entity_recognition's DrugBank/MeSH dictionary. No model weights, no network.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from ray_rag_dagster.backends.enrich.base import dedupe

_NAME_WORD = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
_INITIAL = r"[A-Z]\."
_FULL_NAME = rf"{_NAME_WORD}(?:[ \t]+(?:{_INITIAL}|{_NAME_WORD})){{1,2}}"
_HONORIFIC = re.compile(
    rf"\b(?:Dr|Prof|Professor|Mr|Mrs|Ms)\.?[ \t]+(?P<name>{_NAME_WORD}(?:[ \t]+(?:{_INITIAL}|{_NAME_WORD})){{0,2}})"
)
_CREDENTIAL = re.compile(
    rf"(?P<name>{_FULL_NAME}),?[ \t]+(?:MD|M\.D\.|PhD|Ph\.D\.|DO|PharmD|MBBS|MBChB|RN|MPH|MSc|DrPH|FRCP|FACP)\b"
)
_ROLE = re.compile(
    r"\b(?:Principal Investigator|Sub-?[Ii]nvestigator|Investigator|Medical Monitor|Study Director|"
    r"Study Physician|Study Coordinator|Site Coordinator|Coordinator|Sponsor Contact|Contact Person|"
    r"Responsible Physician|Signatory)[ \t]*:[ \t]*(?:(?:Dr|Prof)\.?[ \t]+)?"
    rf"(?P<name>{_FULL_NAME})"
)
# Capitalised words that follow honorific-like patterns but are not names (e.g. "Medical Monitor, MD").
_NOT_NAME_WORDS = frozenset(
    "The This That Study Site Sponsor Medical Monitor Clinical Investigator Principal Director Officer "
    "Coordinator Contact Name Signature Date Protocol Page Table Section Visit Day Phone Email Fax "
    "Department University Hospital Institute Center Centre Clinic Research Trial Drug Dose".split()
)

_ORG_SUFFIX = (
    r"(?:Inc\.?|Incorporated|LLC|L\.L\.C\.|Ltd\.?|Limited|GmbH|AG|A/S|S\.A\.|plc|PLC|N\.V\.|K\.K\.?|Co\.|"
    r"Corp\.?|Corporation|Company|Pharmaceuticals?|Pharma|Therapeutics|Biosciences|Biotech|Biologics|"
    r"Laboratories|Labs|University|Hospital|Institutes?|Foundation|Medical Center|Health System|Clinic|"
    r"College|Agency|Association|Society|Organi[sz]ation)"
)
_ORG_WORD = rf"(?!{_ORG_SUFFIX}(?![A-Za-z]))(?:[A-Z][A-Za-z'\u2019\-]*|[A-Z]{{2,}})"
# Up to five capitalised words ending in a legal or institutional suffix ("Eli Lilly and Company",
# "Examplar Pharmaceuticals, Inc.", "National Institute on Aging"). A line break is crossed only after a
# connector or before the suffix, so a heading on the previous line is not pulled in.
_ORG_SUFFIXED = re.compile(
    rf"\b(?P<org>{_ORG_WORD}(?:[ \t]+(?:(?:and|&|of|for|the)\s+)?{_ORG_WORD}){{0,4}}"
    rf"(?:,?[ \t]*\n?[ \t]*|[ \t]+(?:and|&)\s+)(?<=[\s,]){_ORG_SUFFIX}"
    rf"(?:,?[ \t]+(?:Co\.,?[ \t]+Ltd\.?|Inc\.?|LLC|Ltd\.?))?"
    rf"(?:[ \t]+(?:of|on|for)[ \t]+(?:the[ \t]+)?{_ORG_WORD}(?:[ \t]+{_ORG_WORD}){{0,2}})?)(?![A-Za-z])"
)
_ORG_PREFIXED = re.compile(
    rf"\b(?P<org>(?:University|Institute|Hospital|College)[ \t]+of[ \t]+{_ORG_WORD}(?:[ \t]+{_ORG_WORD}){{0,2}})"
)
_ORG_LEADING_NOISE = frozenset(
    "The A An This That These Each Any Our Your Their Its Sponsor Participating Local Investigational "
    "Study Site Note Confidential Approved By And Or Of For In At To".split()
)
_ORG_GENERIC_SUFFIX_ONLY = re.compile(rf"^{_ORG_SUFFIX}$")

# Dictionary entries that are lab analytes or endogenous substances in a protocol, not medications.
_NOT_MEDICATIONS = frozenset(
    {"alkaline phosphatase", "uric acid", "thyrotropin", "follicle stimulating hormone", "histamine"}
)
_NOT_MEDICATION_TOKENS = frozenset({"vitae"})  # "curriculum vitae" -> tocopherols
_DRUG_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-'][A-Za-z0-9]+)*")


def _is_name(name: str) -> bool:
    return not any(word in _NOT_NAME_WORDS for word in name.split())


def find_people(text: str) -> list[str]:
    """Names introduced by an honorific, followed by a credential, or given for a named study role."""
    found: list[tuple[int, str]] = []
    for pattern in (_HONORIFIC, _CREDENTIAL, _ROLE):
        for m in pattern.finditer(text):
            name = " ".join(m.group("name").split())
            if _is_name(name):
                found.append((m.start("name"), name))
    found.sort()
    # "Dr. Jane Doe" and "Jane Doe, MD" are one person; a bare surname after "Dr." folds into a full name.
    names = dedupe([name for _, name in found])
    return [n for n in names if not any(o != n and o.endswith(" " + n) for o in names)]


def _clean_org(raw: str) -> str | None:
    words = " ".join(raw.split()).split(" ")
    while words and words[0].rstrip(",") in _ORG_LEADING_NOISE:
        words.pop(0)
    org = " ".join(words).strip(" ,")
    if not org or _ORG_GENERIC_SUFFIX_ONLY.match(org) or " " not in org:
        return None
    return org


def find_organizations(text: str) -> list[str]:
    """Organisations recognised by a legal/institutional suffix or a "University of X" form."""
    found: list[tuple[int, str]] = []
    for pattern in (_ORG_SUFFIXED, _ORG_PREFIXED):
        for m in pattern.finditer(text):
            org = _clean_org(m.group("org"))
            if org:
                found.append((m.start("org"), org))
    found.sort()
    orgs = dedupe([org for _, org in found])
    # Overlapping matches ("Lilly and Company" inside "Eli Lilly and Company"): keep the longest.
    return [o for o in orgs if not any(o != other and o in other for other in orgs)]


@functools.cache
def _drug_finder() -> Callable[..., list[tuple[dict[str, Any], int, int]]]:
    """Import once per process: loading the drug dictionary takes about a second."""
    from drug_named_entity_recognition import find_drugs

    return find_drugs


def find_medications(text: str) -> list[str]:
    """Lower-case canonical drug names from the DrugBank/MeSH dictionary, in order of appearance.

    Only entries with a DrugBank, MedlinePlus or NHS reference count: that drops drug classes ("Hypoglycemic
    Agents"), enzymes and antibodies the dictionary also holds.
    """
    tokens = _DRUG_TOKEN.findall(text)
    matches = sorted(_drug_finder()(tokens), key=lambda m: m[1])
    names = []
    for data, start, end in matches:
        if not (data.get("drugbank_id") or data.get("medline_plus_id") or data.get("nhs_url")):
            continue
        if any(t.lower() in _NOT_MEDICATION_TOKENS for t in tokens[start:end]):
            continue
        name = re.sub(r"\s*\(.*\)$", "", str(data.get("name") or " ".join(tokens[start:end]))).lower()
        if name not in _NOT_MEDICATIONS:
            names.append(name)
    return dedupe(names)
