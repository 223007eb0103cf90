"""Sample PDFs the project generates itself, so a first run needs no downloads and no committed binaries.

:func:`write_samples` writes a born-digital fake clinical-trial protocol (headings, a bulleted list,
tables, seeded fake PII) and an image-only "scanned" consent form that only OCR can read. Both are
byte-for-byte deterministic for a given reportlab/Pillow version, so their content hashes are stable
and re-running ingestion on them is a no-op.
"""

from __future__ import annotations

import pathlib
import re
from xml.sax.saxutils import escape

PROTOCOL_FILENAME = "synthetic_protocol_ABC-123.pdf"
SCANNED_FILENAME = "scanned_consent_form.pdf"

EMAIL = "jane.doe@example-trials.org"
EMAIL_SPONSOR = "medmon@examplar-tx.example"
PHONE = "(617) 555-0147"  # 555-01xx is reserved for fiction, and phonenumbers still accepts it as valid
PHONE_INTL = "+44 20 7946 0958"  # Ofcom's drama range
SSN = "078-05-1120"  # the well-known voided "Woolworth wallet" number
# In a section heading, so in the heading path of every chunk below it (search results, index metadata).
HEADING_EMAIL = "sae@example-trials.org"
HEADING_PHONE = "(617) 555-0163"
SEEDED_PII: tuple[str, ...] = (EMAIL, EMAIL_SPONSOR, PHONE, PHONE_INTL, SSN, HEADING_EMAIL, HEADING_PHONE)
"""Fake PII written whole (on one line) into the protocol's text layer; none of it may reach the vector index."""

SPLIT_PHONE_CELLS = ("+1 617", "555 0142")  # one number over two cells of a table row
SPLIT_EMAIL_CELLS = ("pv.reports@", "examplar-tx.example")  # one address over two cells
SPLIT_PHONE_LINES = ("+1", "617 555 0199")  # a line break after the country code
SPLIT_SSN_LINES = ("219-09-", "9999")  # a line break after the second hyphen
SPLIT_EMAIL_ELEMENTS = ("m.rivera@", "examplar-tx.example")  # the end of one paragraph and the start of the next
SEEDED_SPLIT_PII: dict[str, tuple[str, ...]] = {
    "+1 617 555 0142": SPLIT_PHONE_CELLS,
    "pv.reports@examplar-tx.example": SPLIT_EMAIL_CELLS,
    "+1 617 555 0199": SPLIT_PHONE_LINES,
    "219-09-9999": SPLIT_SSN_LINES,
    "m.rivera@examplar-tx.example": SPLIT_EMAIL_ELEMENTS,
}
"""Fake PII the protocol splits across table cells, lines and paragraphs: each value and its pieces.

A value is leaked if it appears rejoined (breaks and ``|`` removed) or if one of its pieces appears; see
:func:`seeded_pii_leaks`.
"""

KNOWN_SENTENCE = (
    "Examplumab is administered as a 150 mg subcutaneous injection once weekly for 24 weeks, "
    "on top of a stable dose of metformin."
)
"""A distinctive sentence from the protocol body, for retrieval tests."""

SCANNED_LINES: tuple[str, ...] = (
    "INFORMED CONSENT FORM - Study ABC-123",
    "",
    "I have read the information about this research study,",
    "or it has been read to me. I have had the chance to ask",
    "questions, and my questions have been answered to my",
    "satisfaction. I consent voluntarily to take part in this",
    "study of Examplumab, and I understand that I may withdraw",
    "at any time without affecting my medical care.",
    "",
    "Participant signature: ______________________",
    "Date: ______________",
)
"""The text drawn into the scanned form, for OCR tests."""

_SHORT_PIECE = 5  # pieces this short ("+1", "9999") are too common to count as a trace on their own


def _squeeze(text: str) -> str:
    """``text`` without whitespace, ``|``, hyphens and JSON-escaped breaks, to find a value however it was
    split (extraction may also drop a hyphen at a line end: ``219-09-`` / ``9999`` -> ``219-099999``)."""
    return re.sub(r"(?:\\[nrt]|[\s|\-\u2010-\u2013])+", "", text)


def seeded_pii_leaks(text: str) -> list[str]:
    """The seeded values of which ``text`` (any dump: JSON, Markdown, logs) holds a trace.

    A whole value of :data:`SEEDED_PII`; a split value of :data:`SEEDED_SPLIT_PII` rejoined (the text
    squeezed of whitespace, ``|`` and hyphens); or a piece of a split value of at least 5 characters.
    Empty when nothing leaked. Use it in end-to-end tests: ``assert seeded_pii_leaks(dump) == []``.
    """
    squeezed = _squeeze(text)
    leaks = [value for value in SEEDED_PII if value in text or _squeeze(value) in squeezed]
    for value, pieces in SEEDED_SPLIT_PII.items():
        if _squeeze(value) in squeezed or any(len(piece) >= _SHORT_PIECE and piece in text for piece in pieces):
            leaks.append(value)
    return leaks


_TITLE = "A Phase 2, Randomized, Double-Blind Study of Examplumab in Adults with Type 2 Diabetes"
_SCAN_DPI = 200
_LETTER_INCHES = (8.5, 11.0)


def write_samples(dest: pathlib.Path) -> list[pathlib.Path]:
    """Write both sample PDFs into ``dest`` (created if missing) and return their paths."""
    dest.mkdir(parents=True, exist_ok=True)
    protocol = dest / PROTOCOL_FILENAME
    scanned = dest / SCANNED_FILENAME
    _write_protocol(protocol)
    _write_scanned(scanned)
    return [protocol, scanned]


def _write_protocol(path: pathlib.Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import inch
    from reportlab.platypus import ListFlowable, ListItem, PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

    styles = getSampleStyleSheet()
    body, cell = styles["BodyText"], styles["BodyText"].clone("cell", fontSize=9, leading=11)

    def p(text: str) -> Paragraph:
        return Paragraph(escape(text), body)

    def h1(text: str) -> Paragraph:
        return Paragraph(escape(text), styles["Heading1"])

    def h2(text: str) -> Paragraph:
        return Paragraph(escape(text), styles["Heading2"])

    def lines(*parts: str) -> Paragraph:
        """One paragraph whose parts are on lines of their own (a hard line break between them)."""
        return Paragraph("<br/>".join(escape(part) for part in parts), body)

    def bullets(items: list[str]) -> ListFlowable:
        return ListFlowable([ListItem(p(item)) for item in items], bulletType="bullet", start="\u2022")

    def table(rows: list[list[str]], widths: list[float]) -> Table:
        data = [[Paragraph(escape(text), cell) for text in row] for row in rows]
        t = Table(data, colWidths=[w * inch for w in widths], repeatRows=1, spaceBefore=6, spaceAfter=6)
        t.setStyle(
            TableStyle(
                [
                    ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return t

    story = [
        Paragraph(escape(_TITLE), styles["Title"]),
        p("Protocol Number: ABC-123. Version 2.0, 15 March 2024. Sponsor: Examplar Therapeutics, Inc."),
        p(
            "This document is entirely synthetic. It was generated by the ray_rag_dagster project to "
            "demonstrate document ingestion; every name, number and address in it is fictitious."
        ),
        h1("1. Synopsis"),
        p(
            "Type 2 diabetes remains inadequately controlled in many adults despite metformin therapy. "
            "Examplumab is an investigational monoclonal antibody that enhances glucose-dependent insulin "
            "secretion. This multicenter, randomized, double-blind, placebo-controlled Phase 2 study will "
            "evaluate the efficacy, safety and tolerability of examplumab over 24 weeks in adults whose "
            "glycemia is not at target on a stable dose of metformin."
        ),
        p(
            "Approximately 240 participants will be randomized in a 1:1:1 ratio to examplumab 75 mg, "
            "examplumab 150 mg or matching placebo, stratified by baseline HbA1c (below 8.5% or 8.5% and "
            "above) and by region. The study comprises a 2-week screening period, a 24-week double-blind "
            "treatment period and a 4-week safety follow-up period."
        ),
        h2("1.1 Background and Rationale"),
        p(
            "Many adults with type 2 diabetes do not reach an HbA1c target below 7.0% on metformin alone, and "
            "adding a second agent often brings hypoglycemia or weight gain. In Phase 1 studies in healthy "
            "volunteers and in participants with type 2 diabetes, single and repeated doses of examplumab up "
            "to 300 mg lowered post-meal glucose without hypoglycemia and were well tolerated; the most "
            "common adverse events were mild injection-site reactions and transient nausea."
        ),
        p(
            "The pharmacokinetic half-life of about 9 days supports once-weekly dosing. The 75 mg and 150 mg "
            "doses were chosen to span the range in which glucose lowering approached its plateau in the "
            "Phase 1b study, while keeping exposure well below the no-observed-adverse-effect level."
        ),
        h2("1.2 Study Design"),
        p(
            "After screening, eligible participants enter a 2-week single-blind placebo run-in to confirm "
            "adherence to injections and to glucose self-monitoring. Participants who complete the run-in "
            "with at least 80% adherence are randomized on Day 1 through an interactive web response system. "
            "Investigators, site staff, participants and the sponsor study team remain blinded to treatment "
            "assignment until the database is locked."
        ),
        h1("2. Objectives and Endpoints"),
        table(
            [
                ["Objective", "Endpoint"],
                [
                    "Primary: to compare the effect of examplumab with placebo on glycemic control.",
                    "Change from baseline in HbA1c at Week 24.",
                ],
                [
                    "Secondary: to compare the effect on fasting plasma glucose.",
                    "Change from baseline in fasting plasma glucose at Week 12 and Week 24.",
                ],
                [
                    "Secondary: to compare the proportion of participants reaching target.",
                    "Proportion of participants with HbA1c below 7.0% at Week 24.",
                ],
                [
                    "Secondary: to evaluate body weight.",
                    "Percent change from baseline in body weight at Week 24.",
                ],
                [
                    "Safety: to evaluate the safety and tolerability of examplumab.",
                    "Incidence of adverse events, hypoglycemia and injection-site reactions.",
                ],
            ],
            [3.2, 3.3],
        ),
        h1("3. Study Population"),
        h2("3.1 Inclusion Criteria"),
        p("Participants are eligible to be included in the study only if all of the following apply:"),
        bullets(
            [
                "Age 18 to 75 years inclusive at the time of signing the informed consent.",
                "Diagnosis of type 2 diabetes for at least 6 months before screening.",
                "HbA1c of 7.0% to 10.5% inclusive at screening.",
                "Stable dose of metformin of at least 1500 mg per day for at least 3 months.",
                "Body mass index of 25 to 40 kg/m2 inclusive.",
                "Willing and able to self-inject study drug and to perform glucose self-monitoring.",
            ]
        ),
        h2("3.2 Exclusion Criteria"),
        p("Participants are excluded from the study if any of the following apply:"),
        bullets(
            [
                "Type 1 diabetes, or a history of diabetic ketoacidosis.",
                "Use of any glucose-lowering medication other than metformin within 3 months before screening.",
                "Estimated glomerular filtration rate below 45 mL/min/1.73 m2.",
                "History of pancreatitis or of medullary thyroid carcinoma.",
                "Severe hypoglycemia within 6 months before screening.",
                "Pregnancy, breastfeeding, or intention to become pregnant during the study.",
            ]
        ),
        h1("4. Study Drug and Dosing"),
        p(
            KNOWN_SENTENCE + " The 75 mg arm receives half the dose in the same volume, and placebo is "
            "identical in appearance. Injections are given in the abdomen or thigh, rotating sites."
        ),
        p(
            "Background metformin continues unchanged throughout the study at the dose taken at screening. "
            "Participants who meet the protocol-defined criteria for persistent hyperglycemia receive rescue "
            "therapy with insulin glargine, started at 10 units once daily and titrated weekly to a fasting "
            "glucose target of 5.0 to 7.2 mmol/L. Rescue therapy does not end study participation."
        ),
        h2("4.1 Hypoglycemia and Safety Monitoring"),
        p("Participants record every glucose value below 3.9 mmol/L and classify each event as follows:"),
        bullets(
            [
                "Level 1: glucose below 3.9 mmol/L and at or above 3.0 mmol/L.",
                "Level 2: glucose below 3.0 mmol/L.",
                "Level 3: a severe event requiring the assistance of another person.",
            ]
        ),
        p(
            "An independent data monitoring committee reviews unblinded safety data every 3 months and may "
            "recommend stopping a treatment arm. Study drug is permanently discontinued after any Level 3 "
            "event judged related to study drug, or after confirmed acute pancreatitis."
        ),
        h2("4.2 Statistical Considerations"),
        p(
            "The primary analysis compares the change from baseline in HbA1c at Week 24 between each "
            "examplumab arm and placebo with a mixed model for repeated measures, including treatment, visit, "
            "stratification factors and baseline HbA1c as covariates. With 80 participants per arm, the study "
            "has 90% power to detect a difference of 0.5% in HbA1c at a two-sided alpha of 0.05, assuming a "
            "standard deviation of 1.0% and a 15% dropout rate."
        ),
        h1("5. Schedule of Activities"),
        table(
            [
                ["Procedure", "Screening", "Day 1", "Week 4", "Week 12", "Week 24", "Follow-up"],
                ["Informed consent", "X", "", "", "", "", ""],
                ["Inclusion and exclusion criteria", "X", "X", "", "", "", ""],
                ["Physical examination", "X", "X", "", "X", "X", "X"],
                ["Vital signs and body weight", "X", "X", "X", "X", "X", "X"],
                ["HbA1c", "X", "X", "X", "X", "X", ""],
                ["Fasting plasma glucose", "X", "X", "X", "X", "X", "X"],
                ["Study drug dispensing", "", "X", "X", "X", "", ""],
                ["Adverse event review", "", "X", "X", "X", "X", "X"],
            ],
            [2.0, 0.8, 0.7, 0.7, 0.75, 0.75, 0.8],
        ),
        p("Week 4, Week 12 and Week 24 visits have a window of plus or minus 3 days."),
        h1("6. Contact Information"),
        p("Questions about this protocol should be directed to the site or sponsor contacts below."),
        table(
            [
                ["Role", "Name", "Phone", "Email"],
                ["Site coordinator", "Dr. Jane Doe", PHONE, EMAIL],
                ["Sponsor medical monitor", "Prof. Alan Example, MD", PHONE_INTL, EMAIL_SPONSOR],
            ],
            [1.4, 1.5, 1.3, 2.3],
        ),
        p(
            f"Site coordinator identification on file: SSN {SSN}. Site: Riverside Clinical Research Institute. "
            "Site staff keep the delegation log, the screening and enrolment log and the drug accountability "
            "records current, and make them available to the monitor at every monitoring visit. Source "
            "documents are kept at the site for at least 15 years after the end of the study."
        ),
        # PII that extraction and chunking carry in awkward places: a heading (at the top of a page, where the
        # layout model reliably finds headings, so it is in the heading path of the chunks below), table cells
        # that each hold part of one value, and values broken across lines and paragraphs.
        PageBreak(),
        h1(f"7. SAE Desk {HEADING_EMAIL} {HEADING_PHONE}"),  # short enough for one line
        p(
            "Serious adverse events are reported to the safety desk within 24 hours of awareness, by e-mail "
            "or by telephone, on the serious adverse event report form. The desk confirms receipt within one "
            "working day and forwards each report to the sponsor's pharmacovigilance group."
        ),
        table(
            [
                ["Service", "Contact", "Contact (continued)"],
                ["Emergency unblinding line", *SPLIT_PHONE_CELLS],
                ["Pharmacovigilance mailbox", *SPLIT_EMAIL_CELLS],
            ],
            [2.3, 2.1, 2.1],
        ),
        lines(f"Out-of-hours medical monitor: {SPLIT_PHONE_LINES[0]}", SPLIT_PHONE_LINES[1]),
        lines(f"Back-up coordinator identification on file: SSN {SPLIT_SSN_LINES[0]}", SPLIT_SSN_LINES[1]),
        p(f"Back-up e-mail for the medical monitor: {SPLIT_EMAIL_ELEMENTS[0]}"),
        p(f"{SPLIT_EMAIL_ELEMENTS[1]} (read on weekdays only)."),
    ]
    doc = SimpleDocTemplate(
        str(path),
        pagesize=letter,
        title="Protocol ABC-123",
        author="ray_rag_dagster samples",
        creator="ray_rag_dagster",
        invariant=1,
    )
    doc.build(story)


def _write_scanned(path: pathlib.Path) -> None:
    """Draw the text into a bitmap and place only that bitmap on the page: there is no text layer."""
    from PIL import Image, ImageDraw, ImageFont
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen.canvas import Canvas

    width, height = (round(side * _SCAN_DPI) for side in _LETTER_INCHES)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=32)
    y = _SCAN_DPI  # one-inch margins
    for line in SCANNED_LINES:
        draw.text((_SCAN_DPI, y), line, fill=0, font=font)
        y += 52
    canvas = Canvas(str(path), pagesize=letter, invariant=1)
    canvas.setTitle("Scanned consent form")
    canvas.drawImage(ImageReader(image), 0, 0, width=letter[0], height=letter[1])
    canvas.showPage()
    canvas.save()
