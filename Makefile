# The two commands a newcomer needs: `make run` and `make test`.
.DEFAULT_GOAL := run
PY := .venv/bin/python

# Tests and CI run on the real PostgreSQL and Redis of this machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/switchboard
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	DEBUG=false SECRET_KEY=test-only-not-secret

.PHONY: venv run test lint typecheck format bench

venv:
	@bash scripts/bootstrap.sh

## Embedded run: SQLite, in-memory channel layer, eager Celery, demo model without a key.
run: venv
	@$(PY) manage.py migrate --noinput
	@$(PY) manage.py load_demo
	@$(PY) manage.py create_local_admin
	@$(PY) manage.py runserver 127.0.0.1:8000

## The whole test suite on PostgreSQL and Redis (started when installed but stopped).
test: venv
	@bash scripts/services.sh
	@env $(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .

## mypy with the Django plugin, which imports the settings (no database or Redis is reached).
typecheck: venv
	@env $(TEST_ENV) .venv/bin/mypy

format: venv
	@.venv/bin/ruff check --fix .
	@.venv/bin/ruff format .
