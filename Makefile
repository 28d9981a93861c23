# vton_ros: the two commands for a fresh machine are `make demo` and `make test`
# (`make mirror`: the stack with the kiosk page).
# Both run `make setup` first (idempotent: venv, pinned packages, colcon build).
# `make check`: the unit and lint tests only, a few minutes.
SHELL := /bin/bash
WEIGHTS ?= demo

.PHONY: setup check test demo mirror clean

setup:
	@bash scripts/setup.sh

# The quick check after a change: unit and lint tests, no ROS node processes (pytest -m
# "not stack and not slow"); a test that starts nodes unmarked fails here (VTON_TEST_NO_STACK).
check: setup
	@VTON_TEST_NO_STACK=1 bash scripts/test.sh -n auto --maxprocesses 8 --dist loadfile \
		-m "not stack and not slow and not cuda"

# The whole suite on every core (pytest-xdist; each worker has its own ROS domains, and a
# module's stack stays in one worker: --dist loadfile). One worker more than cores: the
# tests wait on DDS, pages and processes, and two workers kept 2 cores 79 % busy, three 93 %
# (at most 8 workers, 25 domains each).
TEST_WORKERS ?= $(shell python3 -c 'import os; print(min(8, len(os.sched_getaffinity(0)) + 1))')
test: setup
	@bash scripts/test.sh -n $(TEST_WORKERS) --dist loadfile

demo: setup
	@bash scripts/demo.sh $(WEIGHTS)

# The stack with the kiosk page on the demo model: prints the URL; Ctrl-C stops it all.
mirror: setup
	@bash scripts/mirror.sh

clean:
	rm -rf build install log .venv
