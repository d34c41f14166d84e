# tai-deploy entry points. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
REGION ?= europe-west1

.PHONY: help setup plan plan-all rehearsal test lint unit molecule bench bench-backup clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: ## Install or verify everything (venv from locks/, helm, kubectl, checkov, bao, Debian packages)
	@python3 scripts/setup.py

plan: setup ## Plan one region (REGION=europe-west1): render + validate build/$(REGION)/
	ansible-playbook site.yml -l $(REGION)

plan-all: setup ## Plan all three regions
	ansible-playbook site.yml

rehearsal: setup ## Apply REGION twice from empty (GCP and Kubernetes test doubles); prints changed tasks and time
	python tests/helpers/rehearsal.py --region $(REGION)

test: setup ## Everything CI runs: lint, pytest, molecule with the rehearsal beside it
	scripts/test

lint: setup ## ansible-lint, yamllint, ruff, mypy, helm lint
	scripts/test lint

unit: setup ## pytest only
	scripts/test pytest

molecule: setup ## molecule test --all
	scripts/test molecule

bench: setup ## Print the plan benchmark
	python benchmarks/plan_bench.py

bench-backup: setup ## Print snapshot and restore times (10k Vault secrets, 1M Redis keys; minutes)
	python benchmarks/backup_bench.py

clean: ## Remove build/ (plans) and caches, keep .venv
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
