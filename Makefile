# Two commands set everything up on a fresh machine:  make run  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup run test wheel bench graphviz chromium docs clean

# torch first, pinned: the CPU build lies on this machine's disk, while an unpinned torch would
# pull a CUDA build of several GB. The package's own range (torch>=2.1) is then already met.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed graphviz chromium

# Debian's graphviz provides the `dot` program that the graphviz Python package drives.
graphviz:
	@if command -v dot >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq graphviz >/dev/null; \
	else \
		echo "Graphviz's 'dot' program is missing and apt-get is not available."; \
		echo "Install Graphviz (https://graphviz.org/download/, e.g. 'brew install graphviz' or 'dnf install graphviz');"; \
		echo "resnet-inspect works without it, but 'graph' then writes only the .dot source."; \
	fi

# Debian's chromium and chromium-driver: the browser that tests/test_report.py drives through selenium
# (the `test` extra). Without them those tests skip and say why.
chromium:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "chromium and chromedriver are missing and apt-get is not available."; \
		echo "Install Chromium and its matching ChromeDriver (https://www.chromium.org/getting-involved/download-chromium/,"; \
		echo "e.g. 'brew install --cask chromium chromedriver' or 'dnf install chromium chromedriver');"; \
		echo "without them the browser tests of the HTML report (tests/test_report.py) skip."; \
	fi

run: setup
	$(BIN)/resnet-inspect summary resnet50

# The project's own shape snapshots first, so that pytest's summary is the run's closing line.
test: setup
	$(BIN)/resnet-inspect check shapes/
	$(BIN)/python -m pytest -q

# The sdist and wheel that `pip install .` would build, into dist/, checked as PyPI would read them
# (tests/test_packaging.py installs such a wheel in a fresh venv). Built in the venv, without a
# download: setuptools comes from the test extra.
wheel: setup
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/python -m twine check --strict dist/*

# The peers of issue 6 (torchinfo; fvcore is already a dependency), then the side-by-side timing.
$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $@

bench: setup $(BIN)/.bench-installed
	$(BIN)/python benchmarks/compare.py --output benchmarks/results.md

# The diagrams in docs/img/ and the output pasted into README.md and docs/*.md come from the tool
# itself (templates in docs/src/); re-run after any change to what the tool prints.
docs: setup
	mkdir -p docs/img
	$(BIN)/resnet-inspect graph resnet50 docs/img/resnet50.svg --force
	$(BIN)/resnet-inspect graph resnet50 --fpn retinanet docs/img/resnet50_fpn.svg --force
	$(BIN)/resnet-inspect graph resnet50 --depth 2 docs/img/resnet50_depth2.svg --force
	$(BIN)/resnet-inspect graph resnet152 --depth 2 docs/img/resnet152_depth2.svg --force
	$(BIN)/resnet-inspect graph retinanet_r50_fpn --input 800x1344 docs/img/retinanet_r50_fpn_800x1344.svg --force
	$(BIN)/python docs/screenshot_report.py resnet50 docs/img/report.png
	$(BIN)/python docs/generate.py docs/src/README.md.in README.md
	$(BIN)/python docs/generate.py docs/src/user-guide.md.in docs/user-guide.md
	$(BIN)/python docs/generate.py docs/src/memory.md.in docs/memory.md
	$(BIN)/python docs/generate.py docs/src/reading-the-summary.md.in docs/reading-the-summary.md
	$(BIN)/python docs/generate.py docs/src/python.md.in docs/python.md

clean:
	rm -rf $(VENV) build dist *.egg-info
