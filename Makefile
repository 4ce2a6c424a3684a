# kafka-scheduler: `make demo` shows it working, `make test` proves it. Needs Python 3.11, Java 17, Maven, Rust.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PY := .venv/bin/python
WITH_BROKER := deploy/kafka-local/with-broker.sh

.PHONY: help install lint typecheck native-test unit check test test-fast demo stop broker-start broker-stop bench chaos clean

help:
	@echo "make demo    broker + 2 schedulers + example consumer + Prometheus; schedules that visibly fire"
	@echo "make stop    stop everything make demo started"
	@echo "make test    lint, type-check and every test against a real local Kafka broker"
	@echo "make bench   benchmarks with same-run baselines (bench/results/*.json)"
	@echo "make chaos   the long chaos tier (30 seeds)"

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install -q "uv==$(UV_VERSION)"

.venv/.installed: pyproject.toml uv.lock native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs native/src/*/*.rs) | $(UV)
	$(UV) sync --frozen
	touch $@

install: .venv/.installed



lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

# The native core's own tests (pure Rust, no Python); the Python tests then use the extension `make install` built.
native-test:
	cd native && cargo test --quiet --locked

check: lint typecheck native-test
	$(PY) -m pytest -q -p no:cacheprovider tests

# Starts the local broker (or uses KAFKA_BOOTSTRAP_SERVERS), runs everything, stops the broker even on failure.
test: install
	$(WITH_BROKER) $(MAKE) --no-print-directory check

test-fast: install
	$(PY) -m pytest -q tests/unit

demo: install
	$(PY) -m scheduler.cli dev demo

stop:
	-$(PY) -m scheduler.cli dev demo --stop

broker-start: install
	$(PY) -m scheduler.cli dev broker start

broker-stop:
	-$(PY) -m scheduler.cli dev broker stop

bench: install
	$(WITH_BROKER) bash -c '$(PY) -m bench.all'

# The long tier: 30 seeds of 100k schedules (about 3 hours), then a private broker hard-restarted under load.
chaos: install
	$(WITH_BROKER) bash -c '$(PY) -m tests.chaos.run --seed 1 --seeds 30 --schedules 100000 --instances 3 \
	  --partitions 12 --duration 300 --kill-every 10,30 --zombies 2 --storms 2 --twins 1 --recurring 200 \
	  --run-dir chaos-runs \
	  && $(PY) -m tests.chaos.run --seed 32 --schedules 100000 --instances 3 --partitions 12 --duration 300 \
	  --kill-every 10,30 --zombies 2 --storms 2 --twins 1 --burst 100000 --burst-at 1.0 --oversize --doomed \
	  --run-dir chaos-runs/seed-32-edge'
	$(PY) -m tests.chaos.run --seed 31 --schedules 10000 --instances 3 --partitions 6 --duration 90 \
	  --broker-restarts 2 --twins 1 --run-dir chaos-runs/seed-31-broker

clean: stop
	rm -rf .run bench/results .pytest_cache .mypy_cache .ruff_cache
