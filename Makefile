# pipeline_project: `make run` processes the songs in data/incoming, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE ?= 1

.PHONY: setup run test test-servers test-slow ui validate clean-data bench-setup soundfonts

setup: $(VENV)/.installed
	@scripts/ensure_system_packages.sh

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

run: setup
	$(BIN)/python -m pipeline_project run

# The tests start their own PostgreSQL and Redis servers on loopback, so those programs must be installed.
test-servers:
	@scripts/ensure_system_packages.sh --servers

test: setup test-servers
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: setup test-servers
	$(BIN)/python -m pytest -m slow -q

validate: setup
	$(BIN)/dagster definitions validate -w workspace.yaml

ui: setup
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# Benchmarks: the bench extra (audiomentations, Essentia), the fluidsynth program the render benchmark compares
# with, and Chromaprint's fpcalc, the retrieval benchmark's peer.
bench-setup: setup
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@scripts/ensure_system_packages.sh --program
	@scripts/ensure_system_packages.sh --chromaprint

# Optional General MIDI SoundFonts that rendering then uses beside the bundled one (Debian/Ubuntu packages).
soundfonts:
	@scripts/ensure_system_packages.sh --soundfonts

clean-data:
	rm -rf data/incoming data/lake data/quarantine data/datasets data/mlflow data/ground_truth data/.secrets
	find .dagster -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
