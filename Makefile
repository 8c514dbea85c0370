# pipeline_project: `make run` processes the songs in data/incoming, `make test` runs the suite.
#
# Every install comes from uv.lock, never from a resolver run on the day: `make run`/`make ui` install the
# runtime set, `make test` adds the dev extra, `make bench-setup` the bench extra. `make lock` refreshes the lock
# after a change to pyproject.toml (see README, "Setup").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export DAGSTER_HOME ?= $(CURDIR)/.dagster
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE ?= 1
# uv uses the interpreter named by PYTHON and never downloads one; the environment is .venv.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
# --frozen: install exactly what uv.lock says, without resolving (and offline once installed);
# --inexact: a target never removes what another target installed (the dev or bench extras).
SYNC := $(UV) sync --frozen --inexact --quiet
# Python caches each module's bytecode in __pycache__ the first time it imports it. Where
# PYTHONDONTWRITEBYTECODE is set, every process (each Dagster run and step) would compile every module it
# imports again, some 10 s each; compiling all of site-packages at install instead costs 45 s on 2 cores.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup setup-dev run test test-servers test-slow lint format ui label validate lock clean-data bench-setup soundfonts train-analysis train-separator reproduce-models

$(UV): scripts/uv-requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (the lock is made for it), found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --require-hashes --no-deps -r scripts/uv-requirements.txt
	@touch $@

# The runtime set: what running the pipeline and its UI needs.
setup: $(UV)
	$(SYNC)
	@scripts/ensure_system_packages.sh
	@$(MAKE) --no-print-directory $(VENV)/.kernels-compiled

# The runtime set plus the dev extra: the tests, and the cluster and S3 setups they exercise.
setup-dev: $(UV)
	$(SYNC) --extra dev
	@scripts/ensure_system_packages.sh
	@$(MAKE) --no-print-directory $(VENV)/.kernels-compiled

# librosa's numba kernels, compiled once and alone after an install (about a minute on 2 cores): processes
# that compile them at the same time can leave a cache that crashes (see pipeline_project/audio/kernels.py).
$(VENV)/.kernels-compiled: uv.lock pipeline_project/audio/kernels.py pipeline_project/analysis/decoding.py
	$(BIN)/python -m pipeline_project.audio.kernels
	@touch $@

run: setup
	$(BIN)/python -m pipeline_project run

# The tests start their own PostgreSQL and Redis servers on loopback, so those programs must be installed, and
# drive the labeling page in the system's Chromium.
test-servers:
	@scripts/ensure_system_packages.sh --servers
	@scripts/ensure_system_packages.sh --browser

# Lint and format check, the code location loaded by Dagster's `dg` (as the UI would), then the tests, which
# end with their ten slowest (the suite is kept well under 25 minutes on 2 cores).
test: setup-dev test-servers lint validate
	$(BIN)/python -m pytest -m "not slow" -q --durations=10

test-slow: setup-dev test-servers
	$(BIN)/python -m pytest -m slow -q

# ruff's settings are in pyproject.toml ([tool.ruff]); `make format` rewrites what `make lint` finds unformatted.
LINTED := pipeline_project tests benchmarks examples
lint: setup-dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check --quiet $(LINTED)

format: setup-dev
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

# Dagster's `dg` command line, on the project's environment ([tool.dg] in pyproject.toml names the code location).
DG := VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg
validate: setup
	@mkdir -p $(DAGSTER_HOME)
	$(DG) check defs
	$(DG) list defs > /dev/null

ui: setup
	$(DG) dev --host 127.0.0.1 --port 3000

# The labeling page for the review queues, on http://127.0.0.1:$(LABEL_PORT)/ (see README, "Labeling").
LABEL_PORT ?= 8765
label: setup
	$(BIN)/python -m pipeline_project label --port $(LABEL_PORT)

# Re-resolves every dependency set (runtime and every extra) into uv.lock. Run it after editing the
# dependencies in pyproject.toml; `make lock UPGRADE=1` also moves every package to its newest allowed release.
lock: $(UV)
	$(UV) lock $(if $(UPGRADE),--upgrade,)

# Benchmarks: the bench extra (audiomentations, Essentia), the fluidsynth program the render benchmark compares
# with, and Chromaprint's fpcalc, the retrieval benchmark's peer.
bench-setup: setup-dev
	$(SYNC) --extra dev --extra bench
	@scripts/ensure_system_packages.sh --program
	@scripts/ensure_system_packages.sh --chromaprint

# Optional General MIDI SoundFonts that rendering then uses beside the bundled one (Debian/Ubuntu packages).
soundfonts:
	@scripts/ensure_system_packages.sh --soundfonts

# The learned analysers shipped in pipeline_project/models (beat tracker, chord recognizer, key tracker),
# trained from the project's own renders through the training SoundFonts and validated through held-out ones;
# the same seed gives the same weights. The shipped set was made by this target (4800 steps) at the commit its
# cards name (make reproduce-models makes it again there); today's code makes a newer set. About 70 minutes on
# 2 cores the first time (20 of rendering, cached in data/analysis_corpus; 50 of training both networks at
# once, one core each). The module's and the training asset's default, 2400 steps, takes 28 minutes.
# Options: make train-analysis ANALYSIS_STEPS=2400 TRAIN_ANALYSIS_ARGS="--seed 1 --width 64" (see the module's help).
ANALYSIS_STEPS ?= 4800
train-analysis: setup soundfonts
	$(BIN)/python -m pipeline_project.training.train_analysis --steps $(ANALYSIS_STEPS) $(TRAIN_ANALYSIS_ARGS)

# Every shipped network made again from the commit and command its card records (source_commit, made_with),
# each in a checkout of that commit beside this one, and its weights compared with the card's version; fails
# naming any that differ. As long as the trainings themselves (about 75 minutes for the analysers on 2 cores);
# needs the same lock and the SoundFonts the cards name (make soundfonts). See README "Reproducing the shipped networks".
reproduce-models: setup soundfonts
	$(BIN)/python -m pipeline_project.training.reproduce

# The learned separator (model family stem_separator; it ships as pipeline_project/models/stem_separator.onnx
# once a version passes its gate, see README "The learned separator"), trained on the project's own multitrack
# renders (training pieces and SoundFonts; scored on held-out ones); the same seed gives the same weights.
# Writes to pipeline_project/models by default: about 50 minutes on 2 cores the first time (10 of rendering,
# cached in data/separator_corpus; 37 of training). Options: make train-separator
# TRAIN_SEPARATOR_ARGS="--out data/candidate_models/separator --steps 3000 --width 512" (see the module's help).
train-separator: setup soundfonts
	$(BIN)/python -m pipeline_project.training.train_separator $(TRAIN_SEPARATOR_ARGS)

clean-data:
	rm -rf data/incoming data/lake data/quarantine data/datasets data/mlflow data/ground_truth data/contributions data/.secrets
	find .dagster -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
