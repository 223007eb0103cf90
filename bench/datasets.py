"""Real PDFs for the many-documents benchmarks (bulk, storm), fetched and cached outside the repository.

The committed manifest ``bench/datasets.json`` names every file: where it comes from (a Debian documentation
package, or the shared data folder next to the repo), its path there, its page count and its SHA-256. The PDFs
themselves are never committed: ``fetch(set_name)`` copies them into ``~/.cache/ray-rag-bench/pdfs/`` (override
with ``RAY_RAG_BENCH_CACHE``), downloading a package with ``apt-get download`` only when its ``.deb`` is not
cached yet, and checks every hash.

``python -m bench.datasets [bulk|storm|soak ...]`` fetches and prints the sets; ``--write-manifest`` rebuilds the
manifest from the selection below (run it only to change the selection).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import SHARED_DATA

MANIFEST = Path(__file__).with_name("datasets.json")
SHARED_PDFS = SHARED_DATA / "pdfs"
SHARED_SOURCE = "shared"  # the ``source`` of files under /work/shared/data/pdfs (path relative to it)


def cache_dir() -> Path:
    return Path(os.environ.get("RAY_RAG_BENCH_CACHE", Path.home() / ".cache" / "ray-rag-bench"))


@dataclass(frozen=True)
class DatasetFile:
    name: str  # file name in the cache and in the inbox (unique within the manifest)
    source: str  # Debian package name, or "shared"
    version: str  # Debian package version ("" for shared files)
    path: str  # path inside the package (or relative to the shared PDF folder)
    pages: int
    sha256: str
    kind: str  # what is in it, for the report


def load_manifest(path: Path = MANIFEST) -> tuple[dict[str, DatasetFile], dict[str, list[str]]]:
    data = json.loads(path.read_text())
    files = {entry["name"]: DatasetFile(**entry) for entry in data["files"]}
    return files, data["sets"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _deb(package: str, version: str) -> Path:
    """The cached ``.deb`` of ``package`` (downloaded with ``apt-get download`` when missing)."""
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    cached = sorted(debs.glob(f"{package}_*.deb"))
    wanted = [deb for deb in cached if not version or _deb_version(deb) == version]
    if wanted:
        return wanted[0]
    spec = f"{package}={version}" if version else package
    completed = subprocess.run(["apt-get", "download", spec], cwd=debs, capture_output=True, text=True)
    if completed.returncode != 0 and version:
        # The archive moved on: take the current version; the SHA-256 check says whether the PDF changed.
        completed = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(
            f"apt-get download {spec} failed (run `apt-get update` first?): {completed.stderr.strip()[-400:]}"
        )
    cached = sorted(debs.glob(f"{package}_*.deb"), key=lambda deb: deb.stat().st_mtime)
    if not cached:
        raise RuntimeError(f"apt-get download {spec} left no .deb in {debs}")
    return cached[-1]


def _deb_version(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _extract_from_deb(deb: Path, inner: str) -> bytes:
    """One file of a ``.deb`` (unpacked once per package under the cache's ``unpacked/``)."""
    unpacked = cache_dir() / "unpacked" / deb.stem
    if not (unpacked / ".done").exists():
        shutil.rmtree(unpacked, ignore_errors=True)
        unpacked.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        (unpacked / ".done").touch()
    data = (unpacked / inner.lstrip("/")).read_bytes()
    return gzip.decompress(data) if inner.endswith(".gz") else data


def _materialize(entry: DatasetFile, target: Path) -> None:
    if entry.source == SHARED_SOURCE:
        data = (SHARED_PDFS / entry.path).read_bytes()
    else:
        data = _extract_from_deb(_deb(entry.source, entry.version), entry.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)


def fetch(set_name: str, manifest: Path = MANIFEST) -> list[Path]:
    """The PDFs of one set (``bulk``, ``storm``, ``soak``), cached and verified; idempotent."""
    files, sets = load_manifest(manifest)
    if set_name not in sets:
        raise KeyError(f"no data set {set_name!r} in {manifest} (have {sorted(sets)})")
    pdfs = cache_dir() / "pdfs"
    paths = []
    for name in sets[set_name]:
        entry = files[name]
        target = pdfs / entry.name
        if not target.is_file() or _sha256(target) != entry.sha256:
            _materialize(entry, target)
            actual = _sha256(target)
            if actual != entry.sha256:
                raise RuntimeError(f"{entry.name} from {entry.source}:{entry.path}: SHA-256 {actual}, "
                                   f"manifest says {entry.sha256}")
        paths.append(target)
    return paths


def describe(set_name: str, manifest: Path = MANIFEST) -> dict[str, object]:
    """Count, pages and sources of a set, for results.json."""
    files, sets = load_manifest(manifest)
    entries = [files[name] for name in sets[set_name]]
    sources: dict[str, int] = {}
    for entry in entries:
        sources[entry.source] = sources.get(entry.source, 0) + 1
    return {"documents": len(entries), "pages": sum(e.pages for e in entries), "sources": sources}


def pages_of(paths: list[Path], manifest: Path = MANIFEST) -> int:
    files, _ = load_manifest(manifest)
    return sum(files[path.name].pages for path in paths)


# --- the selection (used only by --write-manifest) ------------------------------------------------------------

_TEX = "/usr/share/doc/texlive-doc/latex"
# (name, source, path inside the package or shared folder, kind)
_SELECTION: list[tuple[str, str, str, str]] = [
    ("CDISC_Pilot_Study.pdf", SHARED_SOURCE, "clinical/CDISC_Pilot_Study.pdf", "clinical protocol"),
    ("EliLilly_NCT03421379_Diabetes.pdf", SHARED_SOURCE, "clinical/EliLilly_NCT03421379_Diabetes.pdf",
     "clinical protocol"),
    ("Roche_BP30037_V3.pdf", SHARED_SOURCE, "clinical/Roche_BP30037_V3.pdf", "clinical protocol"),
    ("docling-multi_page.pdf", SHARED_SOURCE, "docling/multi_page.pdf", "docling test file"),
    ("R-data.pdf", "r-doc-pdf", "/usr/share/R/doc/manual/R-data.pdf", "manual: code"),
    ("R-FAQ.pdf", "r-doc-pdf", "/usr/share/R/doc/manual/R-FAQ.pdf", "manual: code"),
    ("liboctave.pdf", "octave-doc", "/usr/share/doc/octave/liboctave.pdf", "manual: code"),
    ("asy-latex.pdf", "asymptote-doc", "/usr/share/doc/asymptote/asy-latex.pdf", "manual: code, figures"),
    ("asy-CAD.pdf", "asymptote-doc", "/usr/share/doc/asymptote/CAD.pdf", "manual: figures"),
]
_TEX_DOCS: list[tuple[str, str]] = [  # texlive-latex-recommended-doc: LaTeX package manuals
    ("listings/listings.pdf", "code listings"), ("booktabs/booktabs.pdf", "tables"), ("ctable/ctable.pdf", "tables"),
    ("mathtools/mathtools.pdf", "math"), ("fancyvrb/fancyvrb-doc.pdf", "code"),
    ("beamer/beamerexample-conference-talk.pdf", "slides"), ("caption/subcaption.pdf", "figures"),
    ("float/float.pdf", "figures"), ("pdfpages/pdfpages.pdf", "figures"), ("eso-pic/eso-pic.pdf", "figures"),
    ("microtype/microtype.pdf", "tables"), ("ragged2e/ragged2e.pdf", "text"),
    ("euler/euler.pdf", "math"), ("cite/cite.pdf", "text"), ("everysel/everysel.pdf", "code"),
    ("newfloat/newfloat.pdf", "code"), ("crop/crop.pdf", "figures"), ("fancyref/fancyref.pdf", "text"),
    ("index/index.pdf", "text"), ("lineno/ulineno.pdf", "text"), ("mathtools/empheq.pdf", "math"),
    ("mathtools/mhsetup.pdf", "code"), ("mdwtools/at.pdf", "code"), ("mdwtools/cmtt.pdf", "code"),
    ("mdwtools/doafter.pdf", "code"), ("mdwtools/footnote.pdf", "code"), ("mdwtools/mdwlist.pdf", "code"),
    ("mdwtools/mdwmath.pdf", "math"), ("metalogo/metalogo.pdf", "figures"), ("ms/count1to.pdf", "code"),
    ("ms/multitoc.pdf", "code"), ("ntgclass/artdoc.pdf", "text"), ("ntgclass/a4.pdf", "text"),
    ("pdflscape/pdflscape.pdf", "code"), ("pdfcolfoot/pdfcolfoot.pdf", "code"), ("psfrag/pfgguide.pdf", "figures"),
    ("section/section-doc.pdf", "text"), ("seminar/semsamp2.pdf", "slides"), ("textcase/textcase.pdf", "code"),
    ("translator/translator.pdf", "tables"), ("l3experimental/xcoffins/xcoffins.pdf", "figures"),
    ("l3experimental/xgalley/xgalley.pdf", "text"), ("caption/bicaption.pdf", "figures"),
    ("footnotehyper/footnotehyper.pdf", "code"), ("grffile/grffile.pdf", "code"),
    ("beamer/beamerexample-lecture-print-version.pdf", "slides"), ("lineno/linenoamsmathdemo.pdf", "math"),
    ("breqn/mathstyle.pdf", "math"),
]
_SELECTION += [(f"tex-{Path(p).stem}.pdf", "texlive-latex-recommended-doc", f"{_TEX}/{p}", f"LaTeX manual: {k}")
               for p, k in _TEX_DOCS]

_BULK = [
    "CDISC_Pilot_Study.pdf", "EliLilly_NCT03421379_Diabetes.pdf", "Roche_BP30037_V3.pdf", "docling-multi_page.pdf",
    "R-data.pdf", "R-FAQ.pdf", "liboctave.pdf", "asy-latex.pdf", "asy-CAD.pdf", "tex-listings.pdf",
    "tex-booktabs.pdf", "tex-ctable.pdf", "tex-mathtools.pdf", "tex-fancyvrb-doc.pdf",
    "tex-beamerexample-conference-talk.pdf", "tex-subcaption.pdf", "tex-float.pdf", "tex-pdfpages.pdf",
    "tex-eso-pic.pdf", "tex-microtype.pdf", "tex-cite.pdf", "tex-newfloat.pdf",
]
# 50 documents of moderate total length: the bulk set without its five longest, plus shorter manuals.
_STORM_EXCLUDE = {"CDISC_Pilot_Study.pdf", "Roche_BP30037_V3.pdf", "tex-listings.pdf", "liboctave.pdf", "R-FAQ.pdf"}


def _page_count(data: bytes) -> int:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        return len(pdf)
    finally:
        pdf.close()


def write_manifest(path: Path = MANIFEST) -> dict[str, object]:
    entries = []
    for name, source, inner, kind in _SELECTION:
        if source == SHARED_SOURCE:
            data, version = (SHARED_PDFS / inner).read_bytes(), ""
        else:
            deb = _deb(source, "")
            data, version = _extract_from_deb(deb, inner), _deb_version(deb)
        pages = _page_count(data)
        if not 5 <= pages <= 120:
            raise ValueError(f"{name}: {pages} pages, outside 5..120")
        entries.append({"name": name, "source": source, "version": version, "path": inner, "pages": pages,
                        "sha256": hashlib.sha256(data).hexdigest(), "kind": kind})
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names), "file names must be unique"
    storm = [n for n in _BULK if n not in _STORM_EXCLUDE]
    storm += [n for n in names if n not in _BULK][: 50 - len(storm)]
    sets = {"bulk": _BULK, "storm": storm, "soak": names}  # soak: every file, topped up with generated PDFs
    manifest = {"description": __doc__.split("\n\n")[0], "files": entries, "sets": sets}
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.datasets", description=__doc__)
    parser.add_argument("sets", nargs="*", default=["bulk", "storm"])
    parser.add_argument("--write-manifest", action="store_true")
    args = parser.parse_args(argv)
    if args.write_manifest:
        write_manifest()
    for name in args.sets:
        paths = fetch(name)
        print(f"{name}: {describe(name)} in {paths[0].parent}")


if __name__ == "__main__":
    main()
