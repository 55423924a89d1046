# Quick start:  make demo   (default federation end to end)   |   make test   (the test suite)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LOCK   := requirements/lock.txt
LATEST := .venv-latest
OUT    ?= $(CURDIR)/outputs/demo
CACHE  ?= $(CURDIR)/cache
NODES  ?= 4
RUN_CONFIG ?=
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1

.PHONY: install demo demo-reid demo-video-reid reid-benchmark demo-orl ablation personalization hn-sweep ids-per-client split federation \
	eval-scale reid-eval-scale video-table21 pruning bench-speed bench-speed-full bench-speed-quick test test-slow test-all test-latest lock lint clean

install: $(STAMP)

# Installs exactly the lock (every package, transitive ones included), then fedfr itself.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

## lock: re-resolve requirements/lock.txt to the newest versions pyproject.toml allows (uv, which
## comes with Flower), keeping torch + torchvision at the pair in requirements/constraints.txt
lock: $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --all-extras -c requirements/constraints.txt \
	  --python-version 3.11 --universal --upgrade --no-header --quiet -o $(LOCK).new
	(sed -n '1,/^$$/p' $(LOCK); cat $(LOCK).new) > $(LOCK).tmp && rm $(LOCK).new && mv $(LOCK).tmp $(LOCK)
	@git diff --stat -- $(LOCK) 2>/dev/null || true
	@echo "lock refreshed: now run make test-all, and commit $(LOCK) if it passes"

$(BIN)/uv:  # the locked uv alone: make lock must work before the new lock installs
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$$(grep -E '^uv==' $(LOCK) | cut -d' ' -f1)"

## test-latest: the fast suite on the newest versions pyproject.toml allows, in a scratch venv
## (finds drift on purpose; prints what differs from the lock)
test-latest:
	rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade -e ".[dev,tracking,export]"
	$(LATEST)/bin/python -m pip freeze --all --exclude-editable > $(LATEST)/versions.txt
	@echo "versions that differ from $(LOCK):"; \
	  $(LATEST)/bin/python scripts/lock_drift.py $(LOCK) $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider

## demo: the default FedFR federation (synthetic faces, 4 clients) through `flwr run`
demo: $(STAMP)
	$(BIN)/python -m server.simulate --num-supernodes $(NODES) \
	  --run-config "output-dir='$(OUT)' cache-dir='$(CACHE)' $(RUN_CONFIG)"
	@echo; echo "results (%), also in $(OUT)/results.md and report.json:"; cat $(OUT)/results.md

## demo-reid: the re-ID workload (Sec. 7.7: 4 synthetic client domains, 4 unseen) through `flwr run`
demo-reid: $(STAMP)
	$(BIN)/python -m server.simulate --num-supernodes 4 \
	  --run-config "task='reid' output-dir='$(CURDIR)/outputs/reid' cache-dir='$(CACHE)' $(RUN_CONFIG)"
	@echo; cat $(CURDIR)/outputs/reid/results.md

## demo-video-reid: video re-ID federated (3 synthetic camera-network tracklet sets, 2 unseen)
## through `flwr run`; VIDEO_CONFIG holds the size measured in docs/video-reid.md "Federation"
VIDEO_CONFIG ?= batch-size=32 pretrain-epochs=30 local-epochs=3 num-server-rounds=6
demo-video-reid: $(STAMP)
	$(BIN)/python -m server.simulate --num-supernodes 3 \
	  --run-config "task='video-reid' output-dir='$(CURDIR)/outputs/video-reid' cache-dir='$(CACHE)' $(VIDEO_CONFIG) $(RUN_CONFIG)"
	@echo; cat $(CURDIR)/outputs/video-reid/results.md

## reid-benchmark: Sec. 7.7's rows (pre-trained, local, FedAvg, + each FedFR technique, FedFR,
## central) on the synthetic domains, 2 seeds (CSV, markdown with mean/sd/95% interval, CMC
## plots; per seed in seed-<s>/); REID_BENCH_CONFIG / REID_SEEDS override
REID_SEEDS ?= 0,1
REID_BENCH_CONFIG ?= reid-synthetic-ids=40 num-server-rounds=4 pretrain-epochs=8 local-epochs=1
reid-benchmark: $(STAMP)
	$(BIN)/python -m benchmarks.reid_benchmark --out $(CURDIR)/outputs/reid-benchmark \
	  --seeds $(REID_SEEDS) --run-config "cache-dir='$(CACHE)' $(REID_BENCH_CONFIG)"

## fed-unsup: federated SGC-DPL (semi-reid) and HSR (unsup-reid) against source-only, each site
## alone and the centralised method on the same split, 2 seeds (CSV + markdown);
## FED_UNSUP_SEEDS / FED_UNSUP_CONFIG override
FED_UNSUP_SEEDS ?= 0,1
FED_UNSUP_CONFIG ?=
.PHONY: fed-unsup
fed-unsup: $(STAMP)
	FEDFR_NUM_THREADS=1 $(BIN)/python -m benchmarks.fed_unsup --out $(CURDIR)/outputs/fed-unsup \
	  --seeds $(FED_UNSUP_SEEDS) --run-config "cache-dir='$(CACHE)' $(FED_UNSUP_CONFIG)"

## sgc-dpl: Ch. 3's tables on the synthetic default (Table 3.2 / 3.1 layouts, Fig. 3.5; every
## row from the same pre-trained backbone, 2 seeds); SGC_DPL_ARGS adds options (--table34 ...)
SGC_DPL_ARGS ?=
.PHONY: sgc-dpl hsr
sgc-dpl: $(STAMP)
	FEDFR_NUM_THREADS=1 $(BIN)/python -m benchmarks.sgc_dpl tables --seeds 0,1 \
	  --out $(CURDIR)/outputs/sgc-dpl --init-cache $(CACHE)/sgc-dpl $(SGC_DPL_ARGS)

## hsr: Ch. 4's tables on the synthetic default (Table 4.2 / 4.1 layouts, Fig. 4.5), 2 seeds
hsr: $(STAMP)
	FEDFR_NUM_THREADS=1 $(BIN)/python -m benchmarks.hsr --seeds 0 1 --out $(CURDIR)/outputs/hsr \
	  --source-cache $(CACHE)/sgc-dpl

## demo-orl: the same on the real ORL faces in ../shared/data/faces/orl
demo-orl: $(STAMP)
	$(BIN)/python -m server.simulate --num-supernodes 4 \
	  --run-config "dataset='folder' data-root='$(abspath ../shared/data/faces/orl)' \
	  image-size=32 num-public-ids=16 ids-per-client=4 train-per-id=6 test-per-id=4 \
	  num-generic-ids=8 output-dir='$(CURDIR)/outputs/orl' cache-dir='$(CACHE)' $(RUN_CONFIG)"

## ablation: Table 7.1's rows (FedAvg, +HN, +contrastive, FedFR, central) in-process
ablation: $(STAMP)
	FEDFR_NUM_THREADS=2 $(BIN)/python -m benchmarks.ablation --out $(CURDIR)/outputs/ablation \
	  --run-config "cache-dir='$(CACHE)' $(RUN_CONFIG)"

## federation: a secured local federation on Flower's deployment runtime (SuperLink + NODES
## SuperNodes as separate processes, TLS + SuperNode authentication, loopback only)
federation: $(STAMP)
	FEDFR_NUM_THREADS=$${FEDFR_NUM_THREADS:-1} $(BIN)/python -m server.launch \
	  --num-supernodes $${FED_NODES:-3} --work $(CURDIR)/outputs/federation \
	  --run-config "cache-dir='$(CACHE)' $(RUN_CONFIG)"

## eval-scale: evaluation time / memory against the product floor (PRESET=small|medium|paper)
eval-scale: $(STAMP)
	FEDFR_NUM_THREADS=1 $(BIN)/python -m benchmarks.eval_scale --preset $(or $(PRESET),small) \
	  --out $(CURDIR)/outputs/eval_scale

## reid-eval-scale: re-ID CMC/mAP and re-ranking at Market's size against the product alone
## (PRESET=market|quick)
reid-eval-scale: $(STAMP)
	FEDFR_NUM_THREADS=1 nice -n 5 $(BIN)/python -m benchmarks.reid_eval_scale \
	  --preset $(or $(PRESET),market) --out $(CURDIR)/outputs/reid_eval_scale

## video-table21: Table 2.1's rows (baseline, NVAN, + spatial, + temporal, STE-NVAN, CF-AAN) trained
## on synthetic tracklets (small trunk, 1 seed, ~14 min on 1 thread under load; add --seeds 0,1), R1 / mAP (mars-official),
## FLOPs beside Appendix H, clip features / s; VIDEO_T21_ARGS adds flags (e.g. --paper mars ...)
video-table21: $(STAMP)
	FEDFR_NUM_THREADS=1 nice -n 10 $(BIN)/python -m benchmarks.video_table21 \
	  --out $(CURDIR)/outputs/video-table21 --cache $(CACHE) $(VIDEO_T21_ARGS)

## pruning: CAIE / Taylor / L1 / uniform on digits and ORL, CPO vs UR, the face model at 75 % FLOPs
pruning: $(STAMP)
	FEDFR_NUM_THREADS=1 $(BIN)/python -m benchmarks.pruning --dataset digits --seeds 0 1 2 3 4 \
	  --out $(CURDIR)/outputs/pruning
	FEDFR_NUM_THREADS=1 $(BIN)/python -m benchmarks.pruning --dataset orl --seeds 0 1 2 3 4 \
	  --out $(CURDIR)/outputs/pruning
	FEDFR_NUM_THREADS=1 $(BIN)/python -m benchmarks.pruning_cpo --out $(CURDIR)/outputs/pruning-cpo
	FEDFR_NUM_THREADS=1 $(BIN)/python -m benchmarks.pruning_face --out $(CURDIR)/outputs/pruning-face

## personalization: Tables 7.2 / 7.3 (Fine-tune, KD, DFC-CosFace, FedFR; Theta_g / Theta_l / [Theta_l, Pi_l])
## on the CPU preset over 3 seeds with 95 % intervals (docs/results.md; about 30-60 min)
personalization: $(STAMP)
	FEDFR_NUM_THREADS=2 $(BIN)/python -m benchmarks.personalization --preset personal \
	  --seeds 0,1,2 --bootstrap 500 --reuse \
	  --out $(CURDIR)/outputs/personalization --run-config "cache-dir='$(CACHE)' $(RUN_CONFIG)"

## hn-sweep: Fig. 7.3 (generic metric and steps per epoch against t_HN)
hn-sweep: $(STAMP)
	FEDFR_NUM_THREADS=2 $(BIN)/python -m benchmarks.hn_sweep --out $(CURDIR)/outputs/hn-sweep \
	  --run-config "cache-dir='$(CACHE)' $(RUN_CONFIG)"

## ids-per-client: Fig. 7.4 (pre-trained, central, FedFace, FedFR with 8 / 4 / 2 / 1 IDs per client)
ids-per-client: $(STAMP)
	FEDFR_NUM_THREADS=2 $(BIN)/python -m benchmarks.ids_per_client \
	  --out $(CURDIR)/outputs/ids-per-client --run-config "cache-dir='$(CACHE)' $(RUN_CONFIG)"

## split: the paper's MS-Celeb-1M split, e.g. make split DATA=/data/faces_emore SPLIT_ARGS="--authors-rule"
split: $(STAMP)
	$(BIN)/fedfr split --dataset recordio --data-root "$(DATA)" --out $(CURDIR)/outputs/split.json \
	  $(SPLIT_ARGS)

## bench-speed: the speed targets (issue 17): flwr run vs plain loop (kept deployment, clients in
## parallel), the ablation's wall vs its rows, steps inside the actor, Ray settings (~8-10 min)
SPEED_REPEATS ?= 2
bench-speed: $(STAMP)
	$(BIN)/python -m benchmarks.speed_targets --out $(CURDIR)/outputs/speed --repeats $(SPEED_REPEATS)

## bench-speed-full: overhead, hard-negative mining, evaluation at scale, memory with scale (~30 min)
bench-speed-full: $(STAMP)
	$(BIN)/python -m benchmarks.speed --out $(CURDIR)/outputs/speed

bench-speed-quick: $(STAMP)
	$(BIN)/python -m benchmarks.speed --out $(CURDIR)/outputs/speed --quick

## bench-tracking: fedfr track's FPS per stream (1-3 streams), latency, drops, IDF1 / multi-camera IDF1
.PHONY: bench-tracking
bench-tracking: $(STAMP)
	$(BIN)/python -m benchmarks.tracking --out $(CURDIR)/outputs/bench-tracking

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf outputs .flwr-home .pytest_cache
