# Two commands: `make demo` and `make test`. Both create .venv on first use.
# make test: --dist loadgroup keeps a module marked xdist_group (the browser tests) on one worker,
# so its network and browser start once; every other test is spread as with the default.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_STAMP := $(VENV)/.installed-torch

.PHONY: demo test setup torch bench clean data

$(STAMP): requirements.txt requirements-test.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON): install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	touch $(STAMP)

# the optional PyTorch backend: its tests run in make test; make demo does not need it
$(TORCH_STAMP): $(STAMP) requirements-torch.txt
	$(PY) -m pip install --quiet -r requirements-torch.txt
	touch $(TORCH_STAMP)

setup: $(STAMP)

torch: $(TORCH_STAMP)

demo: $(STAMP)
	$(PY) node.py demo

test: $(STAMP) $(TORCH_STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=40 tests

bench: $(STAMP)
	for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

data: $(STAMP)
	$(PY) node.py data

clean:
	rm -rf $(VENV) .pytest_cache
