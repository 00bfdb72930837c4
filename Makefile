# Crucible — `make dev` runs the whole platform locally, `make test` runs every test.
# Both install what they need: a project venv (.venv) and MiniStack's own (.ministack),
# since MiniStack pins botocore to one exact version.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
MS := .ministack
MINISTACK_VERSION := 1.5.33
EXTRAS ?= api,analysis,local,infra,trainer,cli,dev
ENV ?= dev

.PHONY: install system-packages browser browser-tests console dev test test-busy synth deploy lint format unit integration e2e bench fuzz clean-data catalogue

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	@# the container packages as their images have them (tests, import-linter, the local runner)
	$(BIN)/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'crucible-trainer.pth').write_text('$(CURDIR)/containers/gpu-trainer\n$(CURDIR)/containers/evaluator\n')"
	touch $@

# The interpreter leaderboard submissions run with, inside the evaluator's sandbox: Debian's
# python3 (outside root's home, which the sandbox's uid cannot enter) and the scientific
# packages the evaluator image ships. Mounted read-only; nothing of the platform is in it.
SANDBOX := .sandbox
SANDBOX_PACKAGES := numpy==2.4.6 scipy==1.17.1 scikit-learn==1.9.1 pandas==3.1.1 pyyaml==6.0.4 \
	pillow==13.0.0 torch==2.14.1 torchvision==0.29.1
$(SANDBOX)/.installed: | system-packages
	rm -rf $(SANDBOX)
	/usr/bin/python3 -m venv $(SANDBOX)
	$(SANDBOX)/bin/pip install -q $(SANDBOX_PACKAGES)
	chmod -R a+rX $(SANDBOX)
	touch $@

# boto3 at MiniStack's botocore version: Lambdas it runs (e.g. CDK's custom resources in a
# local `cdk deploy`) find boto3 as they would in AWS's Python runtime.
$(MS)/.installed:
	$(PY) -m venv $(MS)
	$(MS)/bin/pip install -q "ministack==$(MINISTACK_VERSION)" "boto3==1.43.106"
	touch $@

# apt-get one at a time: `make -j` (.ci/run) runs the targets that install system packages
# together, and apt-get fails at once on a lock that another one holds.
APT_GET := flock /tmp/crucible-apt.lock apt-get

# System packages, as command:package: espeak-ng speaks the ASR and analysis test data;
# bubblewrap, setpriv and prlimit sandbox leaderboard submissions; Debian's python3 (with
# venv) runs them.
SYSTEM_PACKAGES := espeak-ng:espeak-ng bwrap:bubblewrap setpriv:util-linux prlimit:util-linux \
	/usr/bin/python3:python3-venv
system-packages:
	@missing=""; for cp in $(SYSTEM_PACKAGES); do c=$${cp%%:*}; p=$${cp#*:}; \
	  if [ "$$c" = /usr/bin/python3 ]; then /usr/bin/python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing $$p"; \
	  else command -v $$c >/dev/null || missing="$$missing $$p"; fi; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then $(APT_GET) update -qq && $(APT_GET) install -y -qq $$missing >/dev/null; \
	  else echo "please install:$$missing (e.g. sudo apt-get install$$missing)"; exit 1; fi; fi

install: $(VENV)/.installed $(MS)/.installed $(SANDBOX)/.installed

# The web console (console/): TypeScript, Vite and Preact at the lockfile's versions,
# built into console/dist, which the local stack serves at / (and CDK uploads to S3).
NPM := $(shell command -v npm 2>/dev/null)
console/node_modules/.package-lock.json: console/package-lock.json
	@if [ -z "$(NPM)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then $(APT_GET) update -qq && $(APT_GET) install -y -qq nodejs npm >/dev/null; \
	  else echo "please install Node.js >= 20.19 and npm (e.g. sudo apt-get install nodejs npm)"; exit 1; fi; fi
	cd console && npm ci --no-audit --no-fund --loglevel=error
console/dist/index.html: console/node_modules/.package-lock.json console/index.html console/vite.config.ts \
		console/tsconfig.json $(shell find console/src -type f 2>/dev/null)
	cd console && npm run build --silent
console: console/dist/index.html

# Headless Chromium from Debian for the browser tests (Playwright never downloads one).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then $(APT_GET) update -qq && $(APT_GET) install -y -qq chromium >/dev/null; \
	  else echo "please install chromium (e.g. sudo apt-get install chromium)"; exit 1; fi; }

dev: install console  ## API on http://127.0.0.1:8000 (/docs), WebSockets, AWS emulator, dispatcher, MLflow UI on :5010
	$(BIN)/python -m functions.local

# The tests spread over TEST_WORKERS pytest-xdist workers, each with an emulator and a local
# stack of its own: most of a test's time is spent waiting on a server or a trainer, so two
# workers on two cores take about half the time. tests/conftest.py keeps each worker's
# browser tests last and the tests that share a costly fixture on one worker.
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadgroup

test: install lint console browser  ## every test: unit, integration (emulator), end-to-end (local stack), browser (the console in headless Chromium)
	$(BIN)/pytest $(XDIST)

# The same tests with every core kept busy by stress-ng (one CPU hog a core, started first,
# stopped on exit): a test waits for a condition with a deadline, never for a moment, so
# it passes here as it does on a quiet machine (about twice as slow).
test-busy: install lint console browser  ## make test beside `stress-ng --cpu 0` (every core busy)
	@command -v stress-ng >/dev/null || { if [ "$$(id -u)" = 0 ]; then $(APT_GET) update -qq && \
	  $(APT_GET) install -y -qq stress-ng >/dev/null; \
	  else echo "please install stress-ng (e.g. sudo apt-get install stress-ng)"; exit 1; fi; }
	stress-ng --cpu 0 --timeout 3h >/dev/null 2>&1 & hog=$$!; \
	  trap 'kill $$hog' EXIT; trap 'exit 130' INT TERM; sleep 1; \
	  kill -0 $$hog || { echo "stress-ng did not start"; exit 1; }; \
	  $(BIN)/pytest $(XDIST)

lint: $(VENV)/.installed  ## ruff, and the architecture contracts in pyproject.toml (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: install
	$(BIN)/pytest $(XDIST) tests/unit

integration: install
	$(BIN)/pytest $(XDIST) tests/integration

e2e: install
	$(BIN)/pytest $(XDIST) tests/e2e

browser-tests: install console browser  ## the console in headless Chromium (screenshots in build/screenshots/)
	$(BIN)/pytest tests/browser

# CDK (Python app, offline synth; the CLI comes from npm, pinned to what this library accepts)
CDK := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 npx --yes aws-cdk@2.1148.1
synth: $(VENV)/.installed  ## templates for ENV=dev|staging|prod (cdk-nag runs; findings fail it)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) synth --quiet -c env=$(ENV)

deploy: $(VENV)/.installed console  ## needs AWS credentials and Docker (image assets); uploads the console build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) deploy --all -c env=$(ENV) --require-approval broadening

catalogue: $(VENV)/.installed  ## regenerate shared/catalogue_timm.json from timm's registry (commit it)
	$(BIN)/python -m crucible_trainer.gen_catalogue

# schemathesis against a local stack of its own (rate limits off): the whole OpenAPI,
# authenticated, stateful through its links; any 5xx or answer outside the schema fails.
FUZZ_SECONDS ?= 240
fuzz: install  ## fuzz the API for FUZZ_SECONDS (make test runs 45 s of it)
	CRUCIBLE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/pytest tests/e2e/test_fuzz.py -s -q

bench: install
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/analysis.py
	$(BIN)/python bench/trainer_overhead.py
	$(BIN)/python bench/evaluator.py
	$(BIN)/python bench/intent.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/push.py
	$(BIN)/python bench/inference.py

# Everything the local stack keeps is under its data directory: the emulator's state,
# S3 objects and credentials (aws/), the secrets, MLflow and the jobs' output.
DATA_DIR ?= $(or $(CRUCIBLE_DATA_DIR),.crucible)
clean-data:  ## forget all local data (users, projects, objects): asks first
	@pid=$$(cat "$(DATA_DIR)/aws/ministack.pid" 2>/dev/null); \
	if [ -n "$$pid" ] && kill -0 "$$pid" 2>/dev/null; then \
	  echo "the local stack on $(DATA_DIR) is running: stop it (Ctrl-C in make dev) first"; exit 1; fi
	@read -p "Delete $(DATA_DIR)/ (all local data)? [y/N] " a && [ "$$a" = y ] && rm -rf "$(DATA_DIR)"
	@if [ -d /tmp/ministack-data ]; then echo "note: /tmp/ministack-data holds objects of stacks \
	from before their data moved into the data directory (and any other MiniStack's): delete it \
	yourself if nothing else uses it"; fi
