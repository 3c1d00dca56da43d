# Two commands on a fresh machine: `make serve` and `make test`. Everything else is a step they call.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REPOSITORY ?= model_repository

.PHONY: setup repository serve test audit bench config k8s reports clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: any other spec makes pip pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[cpu,train,dev]'
	touch $@

setup: $(STAMP)

$(REPOSITORY)/.built: | $(STAMP)
	$(PY) -m export.build --repository $(REPOSITORY)
	touch $@

# Rebuild on demand; `make serve` builds only when the repository is missing.
repository: $(STAMP)
	$(PY) -m export.build --repository $(REPOSITORY)
	touch $(REPOSITORY)/.built

serve: $(STAMP) $(REPOSITORY)/.built
	$(PY) -m serve run --repository $(REPOSITORY)

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

# Known vulnerabilities in the installed dependencies (PyPI's advisory data); a finding fails the target. Needs
# network access to PyPI's advisory service: run it where that is reachable (CI here cannot, so CI does not run it).
audit: $(STAMP)
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off

bench: $(STAMP) $(REPOSITORY)/.built
	$(PY) -m loadtest.bench --repository $(REPOSITORY)

config: $(STAMP) $(REPOSITORY)/.built
	$(PY) -m serve config --repository $(REPOSITORY) --output serve_config.yaml

# Re-render deploy/k8s/ from the repository (a test fails when the committed manifests drift).
k8s: $(STAMP) $(REPOSITORY)/.built
	$(PY) deploy/k8s/generate.py --repository $(REPOSITORY)
	$(PY) deploy/k8s/validate.py

# Issue 8's reports in one command: Chroma-VAE (5 seeds x 2 shortcuts, traversals) and MixGen (sizes x 5 seeds,
# plot). Real training: tens of minutes on two cores.
reports: $(STAMP)
	$(PY) -m models.shortcut.evaluate
	$(PY) -m models.augment.experiment --save

clean:
	rm -rf $(REPOSITORY) serve_config.yaml .pytest_cache
