# Everything a fresh machine needs is created on demand: `make demo`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# CPU wheel by default; on a GPU machine: make TORCH_SPEC="torch==2.13.0 --index-url ..." venv
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAM_VENV := .venv-sam
# The serving image's library versions (serving/image-requirements.txt), for tests/serving/test_container_compat.py.
SERVING_VENV := .venv-serving
SERVING_STAMP := $(SERVING_VENV)/.installed
SERVING_TORCH_SPEC ?= torch==2.13.0
SAM := $(SAM_VENV)/bin/sam
ASL_VALIDATOR := .cache/node/node_modules/.bin/asl-validator
TINY := .cache/tiny-models
export HF_HUB_OFFLINE ?= 1
export AWS_DEFAULT_REGION ?= us-east-1

# uv installs the pinned sets (constraints.txt, the serving image's, the SAM CLI) faster than pip,
# in a venv of its own so the others hold exactly their pins; torch itself is installed by pip
# first, so TORCH_SPEC and pip's configuration choose its build (CPU or CUDA).
UV_SPEC ?= uv==0.13.8
UV := .cache/uv/bin/uv
UV_INSTALL = $(UV) pip install --quiet --compile-bytecode

.PHONY: venv serving-venv tools tiny-models demo test check lint format bench constraints clean image-mappings sam-build schema-blocks studio-browser

$(UV):
	$(PYTHON) -m venv .cache/uv
	.cache/uv/bin/pip install -q $(UV_SPEC)

$(STAMP): pyproject.toml constraints.txt | $(UV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(UV_INSTALL) --python $(BIN)/python -c constraints.txt -e '.[models,server,cli,studio,sagemaker,eval,dev]'
	touch $(STAMP)

venv: $(STAMP)

# The image ships torch 2.6.0 for Python 3.12; here torch stays the local 2.13.0 CPU wheel
# (Python 3.11), installed first and pinned, and everything else at the image's versions.
$(SERVING_STAMP): serving/image-requirements.txt | $(UV)
	rm -rf $(SERVING_VENV)
	$(PYTHON) -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/pip install -q $(SERVING_TORCH_SPEC)
	$(UV_INSTALL) --python $(SERVING_VENV)/bin/python -r serving/image-requirements.txt
	touch $(SERVING_STAMP)

serving-venv: $(SERVING_STAMP)

# aws-sam-cli pins boto3/click/cfn-lint, so it gets a venv of its own.
$(SAM): | $(UV)
	$(PYTHON) -m venv $(SAM_VENV)
	$(UV_INSTALL) --python $(SAM_VENV)/bin/python aws-sam-cli==1.170.0

$(ASL_VALIDATOR):
	mkdir -p .cache/node
	cd .cache/node && npm install --silent --no-audit --no-fund asl-validator@4.0.0

tools: $(SAM) $(ASL_VALIDATOR)

# tests/studio drive the studio in a real browser: Debian's chromium and its chromedriver. As root
# they are installed here; otherwise this says what to install (the tests fail without them, never skip).
studio-browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	else \
	  echo "error: tests/studio need chromium and chromedriver on the PATH: sudo apt-get install chromium chromium-driver (Debian/Ubuntu), or set CHROMIUM=/path/to/chrome CHROMEDRIVER=/path/to/chromedriver" >&2; \
	  exit 2; \
	fi

# `sam build` without Docker needs the functions' runtime (Python 3.12) on the PATH: find one
# (python3.12 on the PATH, else any pyenv 3.12.x) and put its folder first.
# A pyenv shim that is on the PATH but not selected fails when run, so each candidate is tried.
PY312 ?= $(shell for p in $$(command -v python3.12) $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null); do $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && echo $$p && break; done)

sam-build: $(SAM)
	@if [ -z "$(PY312)" ]; then \
	  echo "error: sam build needs Python 3.12 (the functions' runtime) and none was found on the PATH or in pyenv: install one (e.g. pyenv install 3.12), pass PY312=/path/to/python3.12, or run .venv-sam/bin/sam build --use-container (Docker)" >&2; \
	  exit 2; \
	fi
	PATH="$$(dirname $(PY312)):$$PATH" $(SAM) build

tiny-models: venv
	$(BIN)/python -m tryon.weights.tiny $(TINY)

demo: venv tiny-models
	$(BIN)/tryon demo --out out

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The installs (each its own venv or folder), the tiny models and ruff run in parallel, then the suite.
test:
	@echo "make test: installing what is missing (venvs, SAM CLI, asl-validator, the studio tests' chromium) in parallel, tiny models, ruff"
	$(MAKE) --no-print-directory -j4 -Otarget tiny-models lint serving-venv tools studio-browser
	TRYON_REQUIRE_SERVING_VENV=1 $(BIN)/python -m pytest -q

# Everyday work: ruff and the unit tests (no model, no subprocess), in well under 90 s.
check: tiny-models
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q tests/unit

bench: venv tiny-models
	$(BIN)/python -m bench

# After upgrading the sagemaker SDK: regenerate template.yaml's serving-image Mappings from its config.
image-mappings: venv
	$(BIN)/python -m tryon.aws.image_uris --write-template template.yaml

# After changing a row of src/tryon/core/schema.py: rewrite template.yaml's job-default blocks and
# docs/workflow.md's parameter table from the rows (tests/static/test_schema_template.py checks them).
schema-blocks: venv
	$(BIN)/python -m tryon.aws.schema_blocks --write

# After changing dependencies: re-resolve without the old pins and record what resolved.
constraints:
	rm -rf .venv-constraints && $(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install -q $(TORCH_SPEC)
	.venv-constraints/bin/pip install -q -e '.[models,server,cli,studio,sagemaker,eval,dev]'
	{ sed -n '1,3p' constraints.txt; .venv-constraints/bin/pip freeze --exclude-editable \
	  | grep -v -E '^(torch|nvidia-|triton)' | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .venv-constraints

clean:
	rm -rf out .cache .aws-sam .pytest_cache .ruff_cache
