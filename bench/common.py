"""Shared helpers: data paths, timing, spawned child processes, synthetic text."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    """``shared/data`` next to the repo (or next to an ancestor: a worktree under ``/work/wt/<name>``)."""
    if os.environ.get("RAY_RAG_BENCH_SHARED_DATA"):
        return Path(os.environ["RAY_RAG_BENCH_SHARED_DATA"])
    for folder in REPO.parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data()
DOCLING_PDFS = SHARED_DATA / "pdfs" / "docling"
DOCLING_GROUNDTRUTH = SHARED_DATA / "groundtruth" / "docling"
CDISC_PDF = SHARED_DATA / "pdfs" / "clinical" / "CDISC_Pilot_Study.pdf"
LILLY_PDF = SHARED_DATA / "pdfs" / "clinical" / "EliLilly_NCT03421379_Diabetes.pdf"
RESULTS_DIR = REPO / "bench" / "results"


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ``ru_maxrss``: that survives ``execve``, so a spawned
    child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def percentile(values: list[float], share: float) -> float:
    """Linear-interpolated percentile (``share`` in 0..1)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(share * 100) - 1]


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder removed afterwards (state homes, LanceDB tables)."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def in_child(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a fresh spawned Python process: cold caches, its own Ray, its own peak RSS."""
    # The executor's exit joins the child, so nothing it does while exiting races the caller's clean-up.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def pdf_text_pages(path: Path, first: int = 0, last: int | None = None) -> list[str]:
    """The raw text layer of each page (pypdfium2)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        texts = []
        for index in range(first, min(last if last is not None else len(pdf), len(pdf))):
            page = pdf[index]
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return texts
    finally:
        pdf.close()


def sentences_of(path: Path) -> list[str]:
    """Sentences of a PDF's text layer (at least 6 words each), in document order."""
    text = " ".join(" ".join(pdf_text_pages(path)).split())
    return [s for s in re.split(r"(?<=[.;:!?])\s+", text) if len(s.split()) >= 6]


def chunks_of(path: Path, low: int = 1000, high: int = 1500) -> list[str]:
    """Sentences packed into chunks of ``low``..``high`` characters, like the chunker's target size."""
    chunks: list[str] = []
    current = ""
    for sentence in sentences_of(path):
        candidate = f"{current} {sentence}".strip()
        if len(candidate) > high and len(current) >= low:
            chunks.append(current)
            current = sentence[:high]
        else:
            current = candidate[:high]
    if len(current) >= low:
        chunks.append(current)
    return chunks


def write_page_subset(source: Path, dest: Path, pages: int) -> Path:
    """The first ``pages`` pages of ``source`` as a new PDF (pypdfium2's page import)."""
    import pypdfium2 as pdfium

    src = pdfium.PdfDocument(str(source))
    out = pdfium.PdfDocument.new()
    try:
        out.import_pages(src, list(range(min(pages, len(src)))))
        dest.parent.mkdir(parents=True, exist_ok=True)
        out.save(str(dest))
    finally:
        out.close()
        src.close()
    return dest


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# The benchmark runner's rich Progress (bench/__main__.py sets it): a benchmark adds its own live line to it,
# since rich allows one live display at a time.
PROGRESS: Any = None


@contextmanager
def progress_line(description: str, total: float | None = None) -> Iterator[Callable[..., None]]:
    """A live progress line for a long step; yields ``update(description=..., completed=...)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    owner = None
    progress = PROGRESS
    if progress is None:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        owner = progress = Progress(*columns)
        owner.start()
    task = progress.add_task(description, total=total)
    try:
        yield lambda **fields: progress.update(task, **fields)
    finally:
        progress.remove_task(task)
        if owner is not None:
            owner.stop()
