# The two set-up commands: `make demo` and `make test`. Each installs only what is missing.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festlex-cmu festlex-oald sox libsndfile1
STAMP_PIP := $(VENV)/.pip-stamp
# Opt-in (`make voices`, scripts/apt-voices.sh): recorded voices from Debian contrib/non-free for
# `ceasr synth --engines all`: MBROLA's US and British voices and the ones espeak-ng maps to English,
# RHVoice's English voices, SVOX Pico. Not in the default corpus (README: they cost WER at the demo's budget).
MBROLA_VOICES := us1 us2 us3 en1 af1 de1 de2 de3 de4 de5 de6 fr1 fr4 gr2 hu1 nl2 pl1 ro1 sw1 sw2
APT_VOICES := mbrola $(addprefix mbrola-,$(MBROLA_VOICES)) rhvoice rhvoice-english libttspico-utils

.PHONY: demo test install apt voices bench clean

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

voices:
	@bash scripts/apt-voices.sh $(APT_VOICES)

# torch first, by its exact version, so pip takes the local CPU build and not a CUDA one.
$(STAMP_PIP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

# Benchmarks (not tests): print tables; rtf.py needs the demo model (make demo) and .venv-peers for PocketSphinx.
bench: install .venv-peers/bin/python
	$(BIN)/python bench/features.py
	$(BIN)/python bench/synth.py
	$(BIN)/python bench/mfu.py
	$(BIN)/python bench/rtf.py --model runs/demo/model --manifest runs/demo/data/test.jsonl

# A separate venv for the peers bench/rtf.py compares against; never a dependency of ceasr.
.venv-peers/bin/python:
	$(PY) -m venv .venv-peers
	.venv-peers/bin/python -m pip install -q pocketsphinx==5.1.1

clean:
	rm -rf $(VENV) runs
