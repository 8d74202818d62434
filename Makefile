.PHONY: run test lint schema bench
run:  ## the whole service: web, worker and beat, with demo data
	sh .ci/dev run
test: ## the whole test suite on PostgreSQL and Redis
	sh .ci/dev test
lint:
	sh .ci/dev python -m ruff check .
	sh .ci/dev python -m ruff format --check .
schema: ## regenerate docs/openapi.yaml from the code
	sh .ci/dev python manage.py spectacular --file docs/openapi.yaml --validate --fail-on-warn
