# vton_ros: the two commands for a fresh machine are `make demo` and `make test`.
# Both run `make setup` first (idempotent: venv, pinned packages, colcon build).
SHELL := /bin/bash
WEIGHTS ?= demo

.PHONY: setup test demo clean

setup:
	@bash scripts/setup.sh

test: setup
	@bash scripts/test.sh

demo: setup
	@bash scripts/demo.sh $(WEIGHTS)

clean:
	rm -rf build install log .venv
