"""The search page in a real browser: headless Debian Chromium, driven by Playwright, against ``ray-rag serve``.

The server runs as a user starts it (``ray-rag serve --port 0``, a subprocess) on a small real index (see
``conftest.py``). Each step saves a screenshot into ``$SERVE_ARTIFACTS`` (default ``tests/artifacts/serve/``);
a failing step saves ``<step>-FAILED.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.serve.conftest import INJECTION_FILE, INJECTION_TEXT, SearchState

VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def page(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium_profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            base_url=server,
        )
        context.set_default_timeout(30_000)
        browser_page = context.new_page()
        yield browser_page
        context.close()


@contextmanager
def step(page: Page, artifacts: Path, name: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        page.screenshot(path=artifacts / f"{name}-FAILED.png", full_page=True)
        raise
    page.screenshot(path=artifacts / f"{name}.png", full_page=True)


def test_a_question_shows_the_top_chunks_with_highlights_and_pdf_links(
    page: Page, artifacts: Path, search_state: SearchState
) -> None:
    with step(page, artifacts, "01-search-results"):
        page.goto("/")
        page.get_by_label("Question").fill("inclusion criteria age")
        page.get_by_role("button", name="Search").click()
        hits = page.locator("li.hit")
        expect(hits).to_have_count(5)
        expect(page.get_by_role("status")).to_contain_text("5 results")
        first = hits.first
        expect(first.locator(".doc")).to_have_text("synthetic_protocol_ABC-123.pdf")
        expect(first.locator(".heading")).to_have_text("Study ABC-123 > page 2")
        expect(first.locator(".passage")).to_contain_text("Age 18 to 75 years")
        marks = {text.lower() for text in first.locator(".passage mark").all_inner_texts()}
        assert {"inclusion", "criteria", "age"} <= marks
        expect(first.locator(".score")).to_have_text(re.compile(r"^score \d\.\d{3}$"))
        link = first.get_by_role("link", name="page 2")
        expect(link).to_have_attribute("href", f"pdf/{search_state.protocol_id}#page=2")
        assert page.url.endswith("?q=inclusion+criteria+age&k=5")  # the search is linkable

    # The link opens the source PDF, served from the object store.
    response = page.request.get(link.evaluate("a => a.href").split("#")[0])
    assert response.ok and response.headers["content-type"] == "application/pdf"
    assert response.body().startswith(b"%PDF-")


def test_chunk_text_is_shown_as_text_never_as_html(page: Page, artifacts: Path) -> None:
    with step(page, artifacts, "02-escaped-chunk"):
        page.goto("/?q=injection+probe+dosing+note&k=3")
        hit = page.locator("li.hit").filter(has_text=INJECTION_FILE)
        expect(hit).to_have_count(1)
        expect(hit.locator(".passage")).to_contain_text('<img src=x onerror="window.__injected = 1">')
        expect(hit.locator(".passage")).to_contain_text("<script>window.__injected = 2</script>")
        expect(hit.locator(".heading")).to_have_text("<i>Heading</i> & notes")
        assert page.locator("#results img, #results script, #results b, #results i").count() == 0
        assert page.evaluate("window.__injected") is None
        assert INJECTION_TEXT.startswith(hit.locator(".passage").inner_text().split(" <img")[0])


def test_openapi_docs_render_offline(page: Page, artifacts: Path) -> None:
    with step(page, artifacts, "03-api-docs"):
        page.goto("/docs")
        expect(page.get_by_text("/api/search", exact=True)).to_be_visible()
        expect(page.get_by_text("/pdf/{document_id}", exact=True)).to_be_visible()
