# vton_ros: the two commands for a fresh machine are `make demo` and `make test`
# (`make mirror`: the stack with the kiosk page).
# Both run `make setup` first (idempotent: venv, pinned packages, colcon build).
SHELL := /bin/bash
WEIGHTS ?= demo

.PHONY: setup test demo mirror clean

setup:
	@bash scripts/setup.sh

test: setup
	@bash scripts/test.sh

demo: setup
	@bash scripts/demo.sh $(WEIGHTS)

# The stack with the kiosk page on the demo model: prints the URL; Ctrl-C stops it all.
mirror: setup
	@bash scripts/mirror.sh

clean:
	rm -rf build install log .venv
