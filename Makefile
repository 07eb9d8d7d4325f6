# gpuqueue — the two commands a new user runs are `make demo` and `make test`.
# Everything installs into .venv (Python 3.11+) and node_modules (fauxqs, the local SQS server).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-fast lint bench bench-quick lambda-zip image image-test deploy-check deploy chaos chaos-quick chaos-broken gpu-wheels gpu-check sim-report docs docs-check clean

## install: the virtual environment with the worker, scaler and dev extras, and fauxqs
install: $(STAMP) node_modules/.package-lock.json

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned (==2.13.0) in the worker extra: a CPU wheel lies on these machines' disk.
	$(PY) -m pip install -q -e '.[worker,scaler,dev,cli]'
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

## demo: local SQS + CPU worker + bundled MiniLM, end to end, then stops everything
demo: install
	$(PY) -m worker.demo

## test: lint, type-check, the whole suite, the offline deploy checks, and the docs site
test: install lint
	$(PY) -m pytest -q -p no:cacheprovider
	$(MAKE) deploy-check
	$(MAKE) docs-check

## docs: the docs site, strictly: a broken link, a stale reference or a missing figure fails it
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

## docs-check: the built site opened in headless Chromium (every page loads, has a heading, no
##   broken internal link)
docs-check: docs
	$(PY) tools/docs_check.py build/site

lint: install
	$(VENV)/bin/ruff check gpuqueue worker scaler tests bench deploy tools
	$(VENV)/bin/mypy

## bench: side-by-side throughput ratios (BENCH_QUICK=1 for a shorter run)
bench: install
	$(PY) bench/worker_throughput.py

bench-quick: install
	BENCH_QUICK=1 $(PY) bench/worker_throughput.py

## sim-report: the scaler's comparison (KEDA's frontier vs the default policy on held-out seeds):
##   docs/results/sim-report.json, docs/img/*.png and the README table (docs/scaler.md renders its
##   tables from the JSON when the docs are built)
sim-report: install
	$(PY) -m scaler.report --jobs 2
	$(PY) -m scaler.report --markdown README.md

## lambda-zip: the scaler's Lambda bundle (no boto3, no torch)
lambda-zip: install
	$(PY) deploy/lambda/build_zip.py

## deploy-check: render and validate manifests, template and Dockerfile offline
deploy-check: install
	bash deploy/check.sh

## deploy: apply an overlay with the image pinned by digest, wait for the rollout
##   make deploy OVERLAY=gke-l4 IMAGE=REGISTRY/gpuqueue-worker@sha256:<digest>
deploy: install
	OVERLAY="$(OVERLAY)" IMAGE="$(IMAGE)" bash deploy/apply.sh

## image / image-test: build the two-stage image (Docker where a daemon answers, else buildah and
##   podman) and smoke-test it (podman)
image: install
	bash deploy/image/make_image.sh

image-test: install
	IMAGE_BUILDER=buildah bash deploy/image/make_image.sh
	bash deploy/image/test.sh

## chaos: crash, drain, fault and fuzz suites (chaos-quick: smaller numbers)
chaos: install
	CHAOS_SCALE=full $(PY) -m pytest -q -p no:cacheprovider --timeout=3600 tests/chaos -s

chaos-quick: install
	CHAOS_SCALE=quick $(PY) -m pytest -q -p no:cacheprovider --timeout=900 tests/chaos -s

## chaos-broken: every chaos test against the broken build it guards (each must fail)
chaos-broken: install
	$(PY) tests/chaos/support/broken_builds.py

## gpu-wheels: here, what gpu-check carries to a GPU machine (.whl/: wheels, MiniLM's tokenizer)
gpu-wheels: install
	bash deploy/gpu/wheels.sh

## gpu-check: on a GPU machine (its python3, no .venv): CUDA tests, fp16/bf16 vs sentence-
##   transformers, OOM split, generate; one JSON file, under 8 minutes (GPU_CHECK_ARGS=--quick ...)
gpu-check:
	bash deploy/gpu/check.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) node_modules build .pytest_cache .mypy_cache .ruff_cache
