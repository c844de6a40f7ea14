# Two commands set everything up on a fresh machine:  make run  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: setup run test graphviz clean

# torch first, pinned: the CPU build lies on this machine's disk, while an unpinned torch would
# pull a CUDA build of several GB. The package's own range (torch>=2.1) is then already met.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed graphviz

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

run: setup
	$(BIN)/resnet-inspect summary resnet50

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
