# The two commands a new machine needs:
#   make up     build the images, bring the platform up, create the first admin, serve a demo
#   make test   install the test dependencies, build the images, run every test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: up down test images lint venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

images:
	bash docker/build

up: venv images
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash docker/up

down:
	bash docker/down

# pytest exits 5 when it collected nothing: that is a failure, never a pass.
test: venv images
	@rc=0; PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
