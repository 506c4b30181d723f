# The two commands of the README: `make demo` (main job on the embedded default) and
# `make test` (the whole suite). Both create/refresh .venv through scripts/bootstrap.sh.
VENV ?= .venv
EXTRAS ?= dev,kernels
PYTEST_ARGS ?=

export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: demo test setup lint clean

setup:
	@bash scripts/bootstrap.sh $(VENV) $(EXTRAS)

# Until the trained default model and the Gradio app land, the main job is one spoken turn
# through the whole path (hibari speech -> Whisper encoder -> tiny model -> 25 Hz tokens ->
# detokenizer -> runs/demo/answer.wav) with freshly initialised weights.
demo: setup
	$(VENV)/bin/drvoice-lab info --preset tiny
	$(VENV)/bin/drvoice-lab turn --preset tiny --out runs/demo/answer.wav

# The pytest executable (not `python -m pytest`) keeps the repo root off sys.path, so the
# kernels/ folder never shadows the PyPI `kernels` package. Exit code 5 (no tests) fails.
test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check drvoice_lab kernels tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
