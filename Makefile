# gcsim: two commands on a fresh machine.  `make run` runs the main job, `make test` the tests.
# Each installs what it needs first: Debian's ngspice packages (through apt, when missing and
# possible) and the Python packages into .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gcsim-installed
NGSPICE_PACKAGES := ngspice libngspice0-dev

.PHONY: run test fits system-deps venv bench clean help

help:
	@echo "make run    - sweeps on the builtin models and a one-screen summary (reports/)"
	@echo "make test   - the test suite (real ngspice)"
	@echo "make fits   - regenerate fits/ from every spec (gcsim regen)"
	@echo "make bench  - gcsim bench sweep"

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
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: system-deps $(STAMP)
	$(BIN)/gcsim run --out reports

test: system-deps $(STAMP)
	$(BIN)/python -m pytest -q

fits: system-deps $(STAMP)
	$(BIN)/gcsim regen

bench: system-deps $(STAMP)
	$(BIN)/gcsim bench sweep --points 1000

clean:
	rm -rf reports .pytest_cache
