# The two commands of the README: `make demo` (main job on the embedded default) and
# `make test` (the whole suite). Both create/refresh .venv through scripts/bootstrap.sh.
VENV ?= .venv
EXTRAS ?= dev,kernels,demo,notebooks
PYTEST_ARGS ?=

export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: demo demo-cli lab test setup lint clean default-model tiny-model smol-model

setup:
	@bash scripts/bootstrap.sh $(VENV) $(EXTRAS)

# The main job: the Gradio voice chat on the embedded default model, http://127.0.0.1:7860
# (speak, upload or type; streamed text and audio, timeline, latency). Ctrl+C stops it.
demo: setup
	$(VENV)/bin/drvoice-lab demo

# The same model without a browser: a spoken question in a user voice held out of training
# and the same question typed; spoken answers go to runs/demo/.
demo-cli: setup
	$(VENV)/bin/drvoice-lab speech say "Which city is the capital of Japan?" --out runs/demo/question.wav
	$(VENV)/bin/drvoice-lab chat --audio runs/demo/question.wav --out runs/demo/answer.wav
	$(VENV)/bin/drvoice-lab chat --text "Which city is the capital of Japan?" --out runs/demo/typed_answer.wav

# Rebuild the tiny from-scratch model, the tests' fixture (corpus -> train -> fp16 export + card).
tiny-model: setup
	$(VENV)/bin/drvoice-lab data build
	$(VENV)/bin/drvoice-lab train --recipe tiny --out runs/tiny
	$(VENV)/bin/drvoice-lab export runs/tiny/final --out drvoice_lab/assets/tiny_model --force

# The embedded default is still the tiny model (DrVoice-smol does not speak its text yet: journal).
default-model: tiny-model

# DrVoice-smol (issue 24, not yet the default): the open-domain corpus from the shipped base-LLM
# answers, the smol recipe (~1.3 h on an idle 2-core CPU), an fp16 export of what DrVoice adds,
# and issue 24's floors on its held-out split (~40 min with two worker processes).
smol-model: setup
	$(VENV)/bin/drvoice-lab data build-open --out runs/open_corpus
	$(VENV)/bin/drvoice-lab train --recipe smol --corpus runs/open_corpus --out runs/smol
	$(VENV)/bin/drvoice-lab export runs/smol/final --out runs/smol_export --splits '' --force
	$(VENV)/bin/drvoice-lab eval-open --checkpoint runs/smol_export --corpus runs/open_corpus --jobs 2 --card

# JupyterLab on the notebooks (127.0.0.1 only; --allow-root for root shells and containers).
lab: setup
	$(VENV)/bin/jupyter lab notebooks --ip 127.0.0.1 --allow-root

# The pytest executable (not `python -m pytest`) keeps the repo root off sys.path, so the
# kernels/ folder never shadows the PyPI `kernels` package. Exit code 5 (no tests) fails.
test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .  # package, kernels, tests, notebooks, bench, demos, scripts

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
