# Every entry point. Each target creates .venv and installs the package itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mlxnote-installed
EXT    := setup.py mlxnote/_ext/CMakeLists.txt $(wildcard mlxnote/_ext/src/*)
export MLX_ENABLE_TF32 := 0
# Where a C++ compiler exists the C++ extension must build: tests/test_extension.py checks it.
export MLXNOTE_REQUIRE_EXT ?= $(shell command -v c++ >/dev/null 2>&1 && echo 1 || echo 0)

.PHONY: install test test-fast conformance smoke bench fuzz lint notebooks strip-notebooks clean

# pip builds the C++ extension (setup.py, CMake) too; it is rebuilt when its sources change.
$(STAMP): pyproject.toml $(EXT)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[conformance,dev,cpu]'  # cpu: oneDNN (Linux x86-64)
	$(BIN)/python -m mlxnote info  # builds the BLAS shim once; shows BLAS, cache, C++ kernels
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The inner loop: everything but the slow subprocess, distributed and notebook tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

conformance: $(STAMP)
	$(BIN)/python -m conformance --tier full

smoke: $(STAMP)
	$(BIN)/python -m conformance --tier smoke

# The full suite in the GPU formulation: every layer and kernel takes the branch it takes on
# Metal/CUDA (mx.fast attention and layer norm, 'mlx-fast' convs, 16-bit compute), here on
# the CPU. Reports in reports/gpu-formulation/.
.PHONY: conformance-gpu
conformance-gpu: $(STAMP)
	$(BIN)/python -m conformance --tier full --formulation gpu --out reports/gpu-formulation

bench: $(STAMP)
	$(BIN)/python -m benchmarks

notebooks: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[notebooks]'
	$(BIN)/jupyter lab notebooks/

# Notebooks are committed without outputs (tests/test_notebooks.py checks it).
strip-notebooks: $(STAMP)
	$(BIN)/python notebooks/strip_outputs.py

# Mutation testing of the conformance suite (conformance/mutation): a seeded sample of
# mutants of the lines it executes in mlxnote/nn and mlxnote/kernels, each judged by the
# cases that execute its line; reports/mutation.json and reports/mutation.txt (the kill
# rate, the survivors, the reviewed equivalents). The baseline is cached in reports/.
MUTATION_SAMPLE ?= 160
MUTATION_SEED   ?= 0
MUTATION_BUDGET ?= 3600
MUTATION_JOBS   ?= 1
.PHONY: mutation
mutation: $(STAMP)
	nice -n 10 $(BIN)/python -m conformance.mutation --sample $(MUTATION_SAMPLE) \
	  --seed $(MUTATION_SEED) --time-budget $(MUTATION_BUDGET) --jobs $(MUTATION_JOBS)

# The property-based layer tests at length (make test runs them with 100 examples each).
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	MLXNOTE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) reports build *.egg-info mlxnote/_ext/_core*.so
