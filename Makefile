# Every user-facing target implies `setup`, which is idempotent (a second run takes seconds).
SHELL := /bin/bash
PYTHON ?= python3
# The Python environment make uses; the image sets VENV=/opt/venv (its own, already installed).
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD := $(CURDIR)/build
# JupyterLab: loopback only unless told otherwise (LAB_IP=0.0.0.0 in the image).
LAB_IP ?= 127.0.0.1
LAB_PORT ?= 8888
# The notebooks' kernel, named for the package, installed into the environment itself.
KERNELSPEC := $(VENV)/share/jupyter/kernels/ukweb/kernel.json
KERNEL_INSTALL := $(PY) -m ipykernel install --sys-prefix --name ukweb --display-name "Python 3 (ukweb)" >/dev/null
PROFILE ?= quick
HOSTS ?=
RUN ?=
# System packages: the C toolchain, liburing for ktux, libfuse3 for the disk model, and the real
# peers used by tests and benchmarks (nginx as a baseline server, wrk as a baseline client);
# clang with its runtime for libFuzzer (make fuzz).
APT_PACKAGES := gcc make pkg-config liburing-dev zlib1g-dev nginx-light wrk procps iproute2 curl \
                libfuse3-dev fuse3 clang libclang-rt-14-dev openssh-server openssh-client

.PHONY: help setup system venv kernel lock build asan fuzz test reproduce report lab clean

.DEFAULT_GOAL := setup
# `make help`: every target with the text after its `##`.
help:  ## list the targets
	@awk -F ':.*## ' '/^[a-z][a-z_-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: system venv build  ## apt packages (as root), the locked Python environment, the C programs

# Install missing apt packages when root; otherwise stop with one line naming them.
system: .stamp-system  ## install the missing apt packages (root) or name them
.stamp-system: Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo -n "$$p "; done; \
	           $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || echo -n "python3-venv"); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make setup: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "make setup: missing system packages; install them with: sudo apt-get install $$missing" >&2; exit 1; \
	  fi; \
	fi
	@touch $@

# The exact environment: every package at the version and hash requirements.lock records, then
# the package itself without dependencies (the lock has them all).
venv: $(VENV)/.installed  ## the Python environment of requirements.lock, hashes checked
$(VENV)/.installed: requirements.lock pyproject.toml .stamp-system
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	$(KERNEL_INSTALL)
	@touch $@

kernel:  ## install the notebooks' Jupyter kernel (ukweb) into the environment
	$(KERNEL_INSTALL)

# requirements.lock again from pyproject.toml's ranges (newest matching releases, with hashes),
# with pip-tools from a throwaway environment.
lock:  ## regenerate requirements.lock from pyproject.toml (pip-tools, hashes)
	$(PYTHON) -m venv $(BUILD)/piptools && $(BUILD)/piptools/bin/pip install -q pip-tools
	$(BUILD)/piptools/bin/pip-compile --allow-unsafe --extra=dev --extra=lab --generate-hashes \
	  --no-emit-find-links --no-emit-index-url \
	  --output-file=requirements.lock --strip-extras pyproject.toml

# All C code, -Wall -Wextra -Werror. Binaries in build/.
build: .stamp-system  ## compile servers, loadgen and the disk model into build/
	$(MAKE) -s -C servers BUILD=$(BUILD)
	$(MAKE) -s -C loadgen BUILD=$(BUILD)
	$(MAKE) -s -C emul BUILD=$(BUILD)

# AddressSanitizer + UBSan build in build/asan; the tests use it with UKWEB_BIN=build/asan.
asan: .stamp-system  ## AddressSanitizer + UBSan build into build/asan
	$(MAKE) -s -C servers BUILD=$(BUILD)/asan SAN=1
	$(MAKE) -s -C loadgen BUILD=$(BUILD)/asan SAN=1
	$(MAKE) -s -C emul BUILD=$(BUILD)/asan SAN=1

# libFuzzer, FUZZ_SECONDS per harness: the request path both servers share (site_fuzz), the post
# log's recovery after a torn write (postlog_fuzz), loadgen's response parser (response_fuzz)
# and validator (validate_fuzz).  New inputs go to build/fuzz/corpus (site_fuzz) or
# build/fuzz/NAME-corpus, a failing input to build/fuzz/ (reproduce: build/fuzz/NAME FILE; kept
# as a regression in the harness's committed corpus, which `make test` replays).
# FUZZ_RUNS=N instead: N executions per harness, however long they take.
FUZZ_SECONDS ?= 60
FUZZ_LIMIT = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS))
fuzz: .stamp-system  ## libFuzzer, every harness for FUZZ_SECONDS (or FUZZ_RUNS executions) each
	$(MAKE) -s -C servers fuzz BUILD=$(BUILD)
	$(MAKE) -s -C loadgen fuzz BUILD=$(BUILD)
	@mkdir -p $(BUILD)/fuzz/corpus $(BUILD)/fuzz/postlog_fuzz-corpus $(BUILD)/fuzz/response_fuzz-corpus \
	  $(BUILD)/fuzz/validate_fuzz-corpus
	$(BUILD)/fuzz/site_fuzz $(FUZZ_LIMIT) -max_len=16384 -dict=servers/fuzz/http.dict \
	  -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus servers/fuzz/corpus
	$(BUILD)/fuzz/postlog_fuzz $(FUZZ_LIMIT) -max_len=4096 \
	  -artifact_prefix=$(BUILD)/fuzz/postlog_fuzz- $(BUILD)/fuzz/postlog_fuzz-corpus servers/fuzz/postlog_corpus
	$(BUILD)/fuzz/response_fuzz $(FUZZ_LIMIT) -max_len=4096 -dict=loadgen/fuzz/response.dict \
	  -artifact_prefix=$(BUILD)/fuzz/response_fuzz- $(BUILD)/fuzz/response_fuzz-corpus loadgen/fuzz/response_corpus
	$(BUILD)/fuzz/validate_fuzz $(FUZZ_LIMIT) -max_len=4096 -dict=loadgen/fuzz/response.dict \
	  -artifact_prefix=$(BUILD)/fuzz/validate_fuzz- $(BUILD)/fuzz/validate_fuzz-corpus loadgen/fuzz/validate_corpus

test: setup  ## the test suite (pytest)
	$(PY) -m pytest -q

# The paper, regenerated: notebooks run with papermill, outputs under data/processed/<run-id>/.
reproduce: setup  ## the paper end to end: PROFILE=smoke|quick|paper [HOSTS=hosts.yaml: a real testbed]
	$(if $(HOSTS),UKWEB_HOSTS=$(abspath $(HOSTS)) )$(VENV)/bin/ukweb reproduce --profile $(PROFILE)

# Figures and claims from an existing run directory, without servers: make report RUN=data/reference/<id>
report: setup  ## figures, claims, report.html from RUN=<run directory>, no servers
	@test -n "$(RUN)" || { echo "make report: give a run directory, e.g. make report RUN=data/reference/paper" >&2; exit 2; }
	$(VENV)/bin/ukweb report $(RUN)

# JupyterLab (in the lock: nothing to install) at the repository root, notebooks/ in front, so
# data/ (runs, reports, the reference run) is reachable too. --allow-root only when root.
lab: setup  ## JupyterLab on LAB_IP:LAB_PORT (127.0.0.1:8888), repository root
	@test -f $(KERNELSPEC) || $(KERNEL_INSTALL)
	$(VENV)/bin/jupyter lab --no-browser --ip=$(LAB_IP) --port=$(LAB_PORT) \
	  $$(test "$$(id -u)" = 0 && echo --allow-root) \
	  --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks

clean:  ## remove build/ and the setup stamp
	rm -rf $(BUILD) .stamp-system
	$(MAKE) -s -C servers clean BUILD=$(BUILD)
	$(MAKE) -s -C loadgen clean BUILD=$(BUILD)
	$(MAKE) -s -C emul clean BUILD=$(BUILD)
