# The two commands of the README: `make demo` (main job on the embedded default) and
# `make test` (the whole suite). Both create/refresh .venv through scripts/bootstrap.sh.
VENV ?= .venv
EXTRAS ?= dev,kernels
PYTEST_ARGS ?=

export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: demo test setup lint clean default-model

setup:
	@bash scripts/bootstrap.sh $(VENV) $(EXTRAS)

# Until the Gradio app lands, the main job is two turns with the embedded default model: a
# spoken question in a user voice held out of training (-> Whisper encoder -> DrVoice tiny ->
# text + 25 Hz speech tokens -> runs/demo/answer.wav) and a typed one (-> typed_answer.wav).
demo: setup
	$(VENV)/bin/drvoice-lab speech say "Which city is the capital of Japan?" --out runs/demo/question.wav
	$(VENV)/bin/drvoice-lab chat --audio runs/demo/question.wav --out runs/demo/answer.wav
	$(VENV)/bin/drvoice-lab chat --text "Which city is the capital of Japan?" --out runs/demo/typed_answer.wav

# Rebuild the embedded default model from scratch (corpus -> train -> fp16 export + model card).
default-model: setup
	$(VENV)/bin/drvoice-lab data build
	$(VENV)/bin/drvoice-lab train --recipe tiny --out runs/tiny
	$(VENV)/bin/drvoice-lab export runs/tiny/final --out drvoice_lab/assets/default_model

# The pytest executable (not `python -m pytest`) keeps the repo root off sys.path, so the
# kernels/ folder never shadows the PyPI `kernels` package. Exit code 5 (no tests) fails.
test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check drvoice_lab kernels tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
