# The two set-up commands: `make demo` and `make test`. Each installs only what is missing.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := espeak-ng flite sox libsndfile1
STAMP_APT := $(VENV)/.apt-stamp
STAMP_PIP := $(VENV)/.pip-stamp

.PHONY: demo test install bench clean

demo: install
	$(BIN)/ceasr demo

test: install
	$(BIN)/python -m pytest -n 2 tests

install: $(STAMP_APT) $(STAMP_PIP)

# Debian packages the synthesizer and audio I/O use; skipped when every binary is already there.
$(STAMP_APT):
	@mkdir -p $(VENV)
	@if ! command -v espeak-ng >/dev/null || ! command -v flite >/dev/null || ! command -v sox >/dev/null; then \
		echo "installing Debian packages: $(APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@touch $@

# torch first, by its exact version, so pip takes the local CPU build and not a CUDA one.
$(STAMP_PIP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

bench: install
	$(BIN)/python bench/features.py
	$(BIN)/python bench/synth.py

clean:
	rm -rf $(VENV) runs
