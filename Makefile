VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: test demo bench clients clean

$(STAMP): pyproject.toml constraints-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-dev.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

# The suite on TEST_WORKERS processes (pytest-xdist; each test still uses one torch thread).
# On a 2-core Zen 3 VM: 7 min 20 s with 2 on an idle host; in one process it took 12 min 53 s
# there (beside another job on one core). TEST_WORKERS=1 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) tests

# The main job: a reduced headline study (see conf/experiment/demo.yaml), its report,
# and where to look at it.
demo: $(STAMP)
	rm -rf runs/demo
	$(VENV)/bin/marl-rec -m +experiment=demo hydra/launcher=joblib hydra.launcher.n_jobs=2
	$(VENV)/bin/marl-rec-report runs/demo
	@echo
	@echo "Runs, report.md and plots: runs/demo"
	@echo "TensorBoard:  $(VENV)/bin/tensorboard --logdir runs/demo"

# Benchmarks: the simulator, then our algorithms side by side with d3rlpy (installed only
# in .venv-bench, never in .venv). The d3rlpy interop tests, which skip in .venv, run there
# first, with a skip counted as a failure. Every table lands in bench/results/<name>.json;
# time to quality runs once per algorithm, each with ours as shipped (rec preset) and ours at
# d3rlpy's sizes (paper) against one d3rlpy learner (budgets in CPU seconds; see bench/results/README.md).
RESULTS := bench/results
bench: $(STAMP)
	$(PY) bench/simulator.py --profile --baseline --json $(RESULTS)/simulator_throughput.json
	$(PY) bench/ope_coverage.py --json $(RESULTS)/ope_coverage.json
	bash bench/setup_bench_venv.sh
	.venv-bench/bin/python -m pytest -q -p no:cacheprovider --fail-on-skip tests/marl_rec/data/test_dataset.py -k d3rlpy
	.venv-bench/bin/python bench/updates.py --json $(RESULTS)/update_throughput.json
	.venv-bench/bin/python bench/time_to_quality.py --algos bcq --budget 300 --rec-budget 45 --first-eval 4 --json $(RESULTS)/time_to_quality_bcq.json
	.venv-bench/bin/python bench/time_to_quality.py --algos cql --budget 60 --rec-budget 20 --first-eval 4 --json $(RESULTS)/time_to_quality_cql.json
	.venv-bench/bin/python bench/time_to_quality.py --algos bcq --budget 300 --rec-budget 45 --first-eval 4 --d3rlpy-bcq-decoder linear --json $(RESULTS)/time_to_quality_bcq_linear.json

# The RL libraries users train our environments with (SB3, Tianshou, RLlib; only in
# .venv-clients): a few thousand steps of each on each environment, and how each client books
# the agents' rewards; fails if any client errors. bench/clients/train_clients.py says what runs.
# The same venv holds the three launcher extras: each runs a 2-job sweep (a skip fails).
clients: $(STAMP)
	bash bench/clients/setup_clients_venv.sh
	.venv-clients/bin/python bench/clients/train_clients.py --out bench/results/clients.json
	.venv-clients/bin/python -m pytest -q -p no:cacheprovider --fail-on-skip tests/marl_rec/test_launchers.py

clean:
	rm -rf $(VENV)
