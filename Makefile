# The two commands at the top of the README, plus stop. Each does its own idempotent setup.
.PHONY: demo test stop setup lint

setup:
	@scripts/setup

demo: setup
	@.venv/bin/kongstack up

# The tests run the Prefect server on both databases: setup installs PostgreSQL too.
test:
	@KONGSTACK_PREFECT_DB=postgresql scripts/setup
	@scripts/test

stop:
	@if [ -x .venv/bin/kongstack ]; then .venv/bin/kongstack down; fi

lint:
	@.venv/bin/ruff check . && .venv/bin/mypy .
