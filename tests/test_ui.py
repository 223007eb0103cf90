"""The Dagster UI in a real browser: headless Chromium, driven by Playwright, against the project's webserver.

The module ingests one generated PDF into a fresh state folder, then starts ``dagster-webserver`` and
``dagster-daemon`` on it as ``ray-rag dev`` does (the daemon dequeues runs launched from the UI), and checks
what a user sees: the asset graph and its lineage, a partition's metadata, and a run launched from the UI
that completes. Every step saves a screenshot into ``$UI_ARTIFACTS`` (default ``tests/artifacts/ui/``);
a failing step saves ``<step>-FAILED.png`` next to the webserver and daemon logs.

Chromium is Debian's ``chromium`` package (``/usr/bin/chromium``), not a Playwright download.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import ray
from playwright.sync_api import Page, expect, sync_playwright
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from ray_rag_dagster.ingest import ingest_paths
from ray_rag_dagster.samples import write_samples
from ray_rag_dagster.settings import Settings
from tests.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS") or REPO_ROOT / "tests" / "artifacts" / "ui")
# Wide enough that the graph fits five full asset nodes: a narrower canvas zooms out to "minimal" nodes
# whose names are truncated in the middle ("vector_in…_entries").
VIEWPORT = {"width": 2560, "height": 1200}
# On a fresh DAGSTER_HOME the UI opens a "Join the Dagster community" dialog over every page after 1 s;
# this is the browser-side flag its Skip button sets.
SKIP_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"
LINEAGE = (
    ("extracted_pages", "chunks"),
    ("chunks", "enriched_chunks"),
    ("enriched_chunks", "embeddings"),
    ("embeddings", "vector_index_entries"),
)
ASSETS = ("extracted_pages", "chunks", "enriched_chunks", "embeddings", "vector_index_entries")
RUN_TIMEOUT_MS = 300_000  # a run process starts, joins the session's shared Ray and runs on its warm workers


@dataclass(frozen=True)
class IngestedState:
    settings: Settings
    document_id: str


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in [*ARTIFACTS.glob("*.png"), *ARTIFACTS.glob("*.log")]:
        stale.unlink()
    # Printed past pytest's capture (what capsys.disabled() does), so a passing run shows it too.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nUI test screenshots and server logs: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestedState]:
    """A state folder with one document through all five assets, so the UI has a materialized partition."""
    home = tmp_path_factory.mktemp("ui_home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_RAG_HOME", str(home))
        env.setenv("DAGSTER_HOME", str(home / "dagster"))
        settings = Settings()
        protocol = write_samples(tmp_path_factory.mktemp("ui_inputs"))[0]
        try:
            [outcome] = ingest_paths(settings, [protocol])
        finally:
            ray.shutdown()
        assert outcome.status == "COMPLETED", outcome.detail
        yield IngestedState(settings=settings, document_id=outcome.document_id)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(base_url: str, webserver: subprocess.Popen[bytes], log: Path) -> None:
    def answers() -> None:
        if webserver.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {webserver.returncode}; see {log}")
        with urllib.request.urlopen(f"{base_url}/server_info", timeout=5) as response:
            response.read()

    for attempt in Retrying(
        stop=stop_after_delay(180), wait=wait_fixed(0.5), retry=retry_if_exception_type(OSError), reraise=True
    ):
        with attempt:
            answers()


@pytest.fixture(scope="module")
def dagster_ui(ingested: IngestedState, artifacts: Path) -> Iterator[str]:
    """``dagster-webserver`` and ``dagster-daemon`` on the ingested state folder; yields the UI's base URL."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RAY_RAG_HOME": str(ingested.settings.home),
        "DAGSTER_HOME": str(ingested.settings.dagster_home),
    }
    binaries = Path(sys.executable).parent
    module = ["-m", "ray_rag_dagster.defs"]
    commands = {
        "webserver": [str(binaries / "dagster-webserver"), *module, "-h", "127.0.0.1", "-p", str(port)],
        "daemon": [str(binaries / "dagster-daemon"), "run", *module],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            with (artifacts / f"{name}.log").open("wb") as log:
                processes[name] = subprocess.Popen(
                    command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
                )
        _wait_until_serving(base_url, processes["webserver"], artifacts / "webserver.log")
        yield base_url
    finally:
        # Both handle SIGTERM by shutting down their code servers (and any run they launched) themselves.
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def page(dagster_ui: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium_profile"),  # a fresh profile: no state from earlier runs
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            base_url=dagster_ui,
        )
        context.add_init_script(SKIP_COMMUNITY_DIALOG)
        context.set_default_timeout(60_000)  # generous: two cores shared with the run processes
        browser_page = context.new_page()
        yield browser_page
        context.close()


@contextmanager
def step(page: Page, artifacts: Path, name: str) -> Iterator[None]:
    """Screenshot the page after the step, or ``<name>-FAILED.png`` when it fails."""
    try:
        yield
    except Exception:
        page.screenshot(path=artifacts / f"{name}-FAILED.png")
        raise
    page.screenshot(path=artifacts / f"{name}.png")


def _graph_edges(page: Page) -> set[tuple[str, str]]:
    """The edges the graph draws, as (upstream, downstream) names, read from the SVG's geometry.

    Nodes are ``foreignObject`` boxes holding the asset name; edges are arrow paths. An edge goes from the
    node its first point touches to the node its arrowhead touches (both in the SVG's own coordinates).
    """
    boxes: dict[str, tuple[float, float, float, float]] = {}
    for name in ASSETS:
        node = page.locator("svg foreignObject").filter(has=page.get_by_text(name, exact=True))
        expect(node).to_have_count(1)
        x, y, width, height = (float(node.get_attribute(attr) or "nan") for attr in ("x", "y", "width", "height"))
        boxes[name] = (x, y, x + width, y + height)
    endpoints: list[dict[str, list[float]]] = page.evaluate(
        """() => [...document.querySelectorAll('svg path[marker-end]')].map(path => {
            const start = path.getPointAtLength(0), end = path.getPointAtLength(path.getTotalLength());
            return {start: [start.x, start.y], end: [end.x, end.y]};
        })"""
    )

    def node_at(point: list[float]) -> str:
        def distance(box: tuple[float, float, float, float]) -> float:
            dx = max(box[0] - point[0], 0.0, point[0] - box[2])
            dy = max(box[1] - point[1], 0.0, point[1] - box[3])
            return (dx * dx + dy * dy) ** 0.5

        name = min(boxes, key=lambda candidate: distance(boxes[candidate]))
        assert distance(boxes[name]) < 20, f"an edge ends at {point}, away from every asset node {boxes}"
        return name

    return {(node_at(edge["start"]), node_at(edge["end"])) for edge in endpoints}


def test_asset_graph_shows_the_five_assets_and_their_lineage(page: Page, artifacts: Path) -> None:
    with step(page, artifacts, "01-asset-graph"):
        page.goto("/asset-groups")
        for name in ASSETS:
            expect(page.locator("svg").get_by_text(name, exact=True)).to_be_visible()
        page.wait_for_function("n => document.querySelectorAll('svg path[marker-end]').length >= n", arg=len(LINEAGE))
        assert _graph_edges(page) == set(LINEAGE)

    for upstream, downstream in LINEAGE:
        with step(page, artifacts, f"02-lineage-{downstream}"):
            page.goto(f"/assets/{downstream}")
            section = page.get_by_text("Upstream assets", exact=True).locator("xpath=..")
            expect(section.locator(f'a[href="/assets/{upstream}"]')).to_be_visible()
            expect(section.get_by_role("link")).to_have_count(1)
            section.scroll_into_view_if_needed()  # for the screenshot: the section sits below the metadata


def test_materialized_partition_shows_its_metadata(page: Page, artifacts: Path, ingested: IngestedState) -> None:
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("extracted_pages"))
    assert event is not None and event.asset_materialization is not None
    materialization = event.asset_materialization
    assert materialization.partition == ingested.document_id
    recorded = {name: value.value for name, value in materialization.metadata.items()}

    with step(page, artifacts, "03-partition-metadata"):
        page.goto("/assets/extracted_pages")
        page.get_by_role("tab", name="Partitions").click()
        page.get_by_text(ingested.document_id, exact=True).first.click()
        expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
        for label in ("document_id", "source", "ray_node", "pages", "tables", "seconds"):
            row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=label, exact=True))
            shown = row.get_by_role("cell").nth(1)
            value = recorded[label]
            if isinstance(value, float):  # the UI may print 2.0 as "2"
                expect(shown).to_have_text(re.compile(r"^\d+(\.\d+)?$"))
                assert float(shown.inner_text()) == pytest.approx(value)
            else:
                expect(shown).to_have_text(str(value))
        assert recorded["pages"] > 0 and recorded["tables"] > 0


def test_materialization_launched_from_the_ui_completes(page: Page, artifacts: Path, ingested: IngestedState) -> None:
    with step(page, artifacts, "04-materialize-dialog"):
        page.goto("/assets/chunks")
        # A substring match: accessible names start with the icon's name ("materialization Materialize…").
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog")
        title = dialog.get_by_text("Launch runs to materialize chunks")
        expect(title).to_be_visible()
        dialog.get_by_text("Select a partition or create one").click()
        page.get_by_role("menuitem", name=re.compile(re.escape(ingested.document_id))).click()
        title.click()  # closes the partition picker, keeps the dialog
        expect(page.get_by_placeholder("Filter partitions")).to_be_hidden()
        launch = dialog.get_by_role("button", name="Launch 1 run")
        expect(launch).to_be_enabled()

    with step(page, artifacts, "05-run-launched"):
        launch.click()
        toast = page.get_by_role("listitem").filter(has_text=re.compile(r"Launched run \w+"))
        # Read the run's link at once: the toast fades after a few seconds.
        run_path = toast.get_by_role("link", name="View").get_attribute("href") or ""
        assert re.fullmatch(r"/runs/[0-9a-f-]{36}", run_path), run_path
        run_id = run_path.rsplit("/", 1)[-1]

    with step(page, artifacts, "06-run-success"):
        page.goto(run_path)
        outcome = page.get_by_text("Success", exact=True).or_(page.get_by_text("Failure", exact=True)).first
        expect(outcome).to_be_visible(timeout=RUN_TIMEOUT_MS)
        expect(outcome).to_have_text("Success")

    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        latest = instance.get_latest_materialization_event(dg.AssetKey("chunks"))
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags.get("dagster/from_ui") == "true"
    assert run.tags.get("dagster/partition") == ingested.document_id
    assert latest is not None and latest.run_id == run_id
