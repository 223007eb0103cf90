"""Small generated PDFs (reportlab) for the overhead and backfill benchmarks: 1–2 pages each, distinct text.

Orchestration cost per document is what those benchmarks measure, so the documents are deliberately cheap to
extract: a heading, a few paragraphs of seeded pseudo-protocol prose and a small table per page.
"""

from __future__ import annotations

import random
from pathlib import Path

_WORDS = (
    "patient dose visit baseline screening randomised placebo cohort endpoint adverse event serum glucose insulin "
    "protocol investigator consent criteria inclusion exclusion week month arm treatment safety efficacy plasma "
    "laboratory sample analysis primary secondary interim follow-up withdrawal monitoring site sponsor regimen "
    "tablet infusion oral daily weekly threshold hba1c renal hepatic cardiac blood pressure weight height"
).split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(9, 18))]
    return " ".join(words).capitalize() + "."


def write_small_pdfs(folder: Path, count: int, prefix: str = "small", pages: tuple[int, int] = (1, 2),
                     seed: int = 8) -> list[Path]:
    """``count`` PDFs named ``<prefix>-0001.pdf`` …, each ``pages[0]``..``pages[1]`` pages long."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table

    folder.mkdir(parents=True, exist_ok=True)
    styles = getSampleStyleSheet()
    paths = []
    for index in range(1, count + 1):
        rng = random.Random(f"{seed}-{prefix}-{index}")
        path = folder / f"{prefix}-{index:04d}.pdf"
        story = []
        for page in range(rng.randint(*pages)):
            if page:
                story.append(PageBreak())
            story.append(Paragraph(f"{prefix} document {index}, section {page + 1}: "
                                   f"{' '.join(rng.choice(_WORDS) for _ in range(4))}", styles["Heading1"]))
            for _ in range(4):
                body = " ".join(_sentence(rng) for _ in range(rng.randint(4, 7)))
                story += [Paragraph(f"Record {index}-{page}-{rng.randint(1000, 9999)}. {body}", styles["BodyText"]),
                          Spacer(1, 6)]
            rows = [["Visit", "Day", "Measure", "Value"]]
            rows += [[f"V{v}", str(rng.randint(-14, 90)), rng.choice(_WORDS), f"{rng.uniform(0, 200):.1f}"]
                     for v in range(1, 5)]
            story.append(Table(rows))
        SimpleDocTemplate(str(path), pagesize=A4, title=f"{prefix} {index}").build(story)
        paths.append(path)
    return paths
