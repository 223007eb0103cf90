# The two set-up commands (README): `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test dev clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU build; an unpinned resolve would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(BIN)/.installed  ## ingest the generated sample PDFs on the embedded default, then search them
	$(BIN)/ray-rag demo

CHROMIUM ?= /usr/bin/chromium

# tests/test_ui.py drives Debian's Chromium with Playwright.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else echo "tests/test_ui.py needs Chromium: sudo apt-get install -y --no-install-recommends chromium" >&2; exit 1; fi

test: $(BIN)/.installed $(CHROMIUM)  ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest

dev: $(BIN)/.installed  ## the Dagster UI and daemon on the same state folder
	$(BIN)/ray-rag dev

clean:
	rm -rf $(VENV)
