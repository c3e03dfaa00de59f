# Throughline: `make run` serves a demo, `make test` runs everything against real services.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
TEST_ENV := DJANGO_SETTINGS_MODULE=config.settings.test

.PHONY: run test lint format services bench-ingest bench-timeline bench-sessions bench-delivery bench-observability bench-conditions bench-decide bench-journeys clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	@mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py seed_demo
	exec $(PY) manage.py serve

services:
	@scripts/ensure-services

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(TEST_ENV) $(VENV)/bin/mypy .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(VENV)/.dev services lint
	scripts/node-clients
	scripts/browser-sdks
	$(TEST_ENV) $(VENV)/bin/pytest

bench-ingest: $(VENV)/.dev services
	$(PY) bench/ingest.py

bench-timeline: $(VENV)/.dev services
	$(PY) bench/timeline.py

bench-sessions: $(VENV)/.dev services
	$(PY) bench/sessions.py

bench-delivery: $(VENV)/.dev services
	$(PY) bench/delivery.py

bench-observability: $(VENV)/.dev services
	$(PY) bench/observability.py

bench-conditions: $(VENV)/.dev
	$(PY) bench/conditions.py

bench-decide: $(VENV)/.dev services
	$(PY) bench/decide.py

bench-journeys: $(VENV)/.dev services
	$(PY) bench/journeys.py

clean:
	@if [ -x $(PY) ]; then $(PY) -m config.embedded stop; fi
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
