# The two commands a new machine needs:
#   make up     build the images, bring the platform up, create the first admin, serve a demo
#   make test   install the test dependencies, build the images, run every test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: up down test images lint venv build

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The proxy's compiled modules, rebuilt in place when a source or .pxd changed, so a test
# never runs a stale extension in place of edited Python.
build: venv
	$(PY) setup.py --quiet build_ext --inplace --parallel 4

images:
	bash docker/build

up: venv images
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash docker/up

down:
	bash docker/down

# pytest exits 5 when it collected nothing: that is a failure, never a pass.
test: build images
	@rc=0; PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
