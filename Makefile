# Everything a fresh machine needs is created on demand: `make demo`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# CPU wheel by default; on a GPU machine: make TORCH_SPEC="torch==2.13.0 --index-url ..." venv
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
ASL_VALIDATOR := .cache/node/node_modules/.bin/asl-validator
TINY := .cache/tiny-models
export HF_HUB_OFFLINE ?= 1
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: venv tools tiny-models demo test lint format bench constraints clean image-mappings

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -c constraints.txt -e '.[models,server,cli,sagemaker,dev]'
	touch $(STAMP)

venv: $(STAMP)

# aws-sam-cli pins boto3/click/cfn-lint, so it gets a venv of its own.
$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli==1.170.0

$(ASL_VALIDATOR):
	mkdir -p .cache/node
	cd .cache/node && npm install --silent --no-audit --no-fund asl-validator@4.0.0

tools: $(SAM) $(ASL_VALIDATOR)

tiny-models: venv
	$(BIN)/python -m tryon.tiny_models $(TINY)

demo: venv tiny-models
	$(BIN)/tryon demo --out out

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: venv tools tiny-models lint
	$(BIN)/python -m pytest -q

bench: venv tiny-models
	$(BIN)/python -m bench

# After upgrading the sagemaker SDK: regenerate template.yaml's serving-image Mappings from its config.
image-mappings: venv
	$(BIN)/python -m tryon.image_uris --write-template template.yaml

# After changing dependencies: re-resolve without the old pins and record what resolved.
constraints:
	rm -rf .venv-constraints && $(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install -q $(TORCH_SPEC)
	.venv-constraints/bin/pip install -q -e '.[models,server,cli,sagemaker,dev]'
	{ sed -n '1,3p' constraints.txt; .venv-constraints/bin/pip freeze --exclude-editable \
	  | grep -v -E '^(torch|nvidia-|triton)' | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .venv-constraints

clean:
	rm -rf out .cache .aws-sam .pytest_cache .ruff_cache
