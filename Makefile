# Stabilizer: `make` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CATALOGS := stabilizer/translations
MO_FILES := $(patsubst %.po,%.mo,$(wildcard $(CATALOGS)/*/LC_MESSAGES/messages.po))
DEMO_WUZAPI_PORT ?= 8081
DEMO_ADMIN_TOKEN ?= demo-admin-token
DEMO_USER_TOKEN ?= demo-user-token

.DEFAULT_GOAL := help
.PHONY: help venv translations extract-messages update-catalogs run demo test lint bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(STAMP) ## Create .venv and install the pinned dependencies

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

translations: $(MO_FILES) ## Compile the pt_BR and en message catalogs

$(CATALOGS)/%/LC_MESSAGES/messages.mo: $(CATALOGS)/%/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile -f -i $< -o $@

extract-messages: $(STAMP) ## Extract translatable strings into messages.pot
	$(BIN)/pybabel extract -F babel.cfg -o $(CATALOGS)/messages.pot --no-location --sort-output .

update-catalogs: extract-messages ## Merge new strings from messages.pot into each catalog
	$(BIN)/pybabel update -i $(CATALOGS)/messages.pot -d $(CATALOGS) --no-fuzzy-matching

run: venv translations ## Start gunicorn on BIND, 127.0.0.1:8000 by default (SQLite unless DATABASE_URL is set)
	@if [ -n "$$DATABASE_URL$$SUPABASE_URL" ]; then FLASK_APP=stabilizer $(BIN)/flask sessions init-db; fi
	exec $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

demo: venv translations ## Start a fake WUZAPI and the app together, and print a token to log in with
	@$(BIN)/python -m tests.fake_wuzapi --port $(DEMO_WUZAPI_PORT) --admin-token $(DEMO_ADMIN_TOKEN) \
		--user demo:$(DEMO_USER_TOKEN) --connect-hold-ms 2000 & fake=$$!; \
	trap 'kill $$fake 2>/dev/null' EXIT INT TERM; \
	echo "Fake WUZAPI on http://127.0.0.1:$(DEMO_WUZAPI_PORT)"; \
	echo "Log in at http://$${BIND:-127.0.0.1:8000}/login with the user token $(DEMO_USER_TOKEN) or the admin token $(DEMO_ADMIN_TOKEN)"; \
	echo "  curl -c cookies.txt -H 'Content-Type: application/json' -d '{\"token\":\"$(DEMO_USER_TOKEN)\",\"role\":\"user\"}' http://$${BIND:-127.0.0.1:8000}/api/auth/login"; \
	WUZAPI_BASE_URL=http://127.0.0.1:$(DEMO_WUZAPI_PORT) WUZAPI_ADMIN_TOKEN=$(DEMO_ADMIN_TOKEN) \
		$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: venv translations ## Run the test suite (PostgreSQL tests use 127.0.0.1:5432 when reachable)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv translations ## Measure the performance targets and rewrite docs/benchmarks.md
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: venv ## Check the code with ruff
	$(BIN)/python -m pip install --disable-pip-version-check -q ruff==0.17.5
	$(BIN)/ruff check stabilizer tests bench wsgi.py gunicorn.conf.py

clean: ## Remove the virtualenv, compiled catalogs and caches
	rm -rf $(VENV) .pytest_cache $(MO_FILES)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
