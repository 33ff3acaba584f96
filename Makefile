# The two set-up commands: `make demo` and `make test`. Each installs only what is missing.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox libsndfile1
STAMP_PIP := $(VENV)/.pip-stamp

.PHONY: demo test install apt bench clean

demo: install
	$(BIN)/ceasr demo

test: install
	$(BIN)/python -m pytest -n 2 tests

install: apt $(STAMP_PIP)

# Debian packages the synthesizer and audio I/O use; a dpkg query (fast) decides whether apt-get runs.
apt:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing Debian packages: $(APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

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
