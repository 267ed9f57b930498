# VDB — one entry point for humans. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## install what building and testing need (Debian packages, Rust checks)
	scripts/setup.sh

build: ## build every binary in release mode
	cargo build --release --workspace --bins

demo: setup build ## start a shard node, load debian-minilm, answer a query (Ctrl-C stops)
	scripts/demo.sh

test: ## run every test tier (unit, black-box, recall + crash + bench smoke)
	scripts/test.sh all

test-unit: ## tier 1: unit and property tests
	scripts/test.sh unit

test-blackbox: ## tier 2: black-box tests against the release binaries
	scripts/test.sh blackbox

test-slow: ## tier 3: recall, crash (kill -9) and benchmark smoke tests
	scripts/test.sh slow

test-embedder: ## tier 4: the embedder with both backends on the real model (golden, export)
	scripts/test.sh embedder

embedder: ## vdb-embedder with the torch and tensorflow backends (installs them first)
	scripts/setup-embedder.sh
	source ~/.cache/vdb/embedder.env && cargo build --release -p vdb-embedder \
	  --features torch,tensorflow --target-dir "$$VDB_EMBEDDER_TARGET"

bench-embed: embedder build ## benchmark the embedder (both backends) against sentence-transformers
	source ~/.cache/vdb/embedder.env && cargo run --release -p vdb-bench -- embed --repeat 2

bench: build ## benchmark VDB over HTTP against raw USearch on debian-minilm
	cargo run --release -p vdb-bench -- shard

bench-router: build ## benchmark search through the router on 1, 2 and 4 shards (vs the shard node and raw USearch)
	cargo run --release -p vdb-bench -- router --repeat 3

bench-replication: build ## write throughput, latency and replica lag per write consistency, RF 1/2/3
	cargo run --release -p vdb-bench -- replication --out target/bench-replication.json

openapi: ## regenerate openapi/*.json from the code
	UPDATE_OPENAPI=1 cargo test --release -p vdb-shard -p vdb-router -p vdb-embedder --test openapi

lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

lint-embedder: ## clippy on vdb-embedder with both backends (after make embedder)
	source ~/.cache/vdb/embedder.env && cargo clippy --release -p vdb-embedder \
	  --features torch,tensorflow --target-dir "$$VDB_EMBEDDER_TARGET" --all-targets -- -D warnings

.PHONY: help setup build demo test test-unit test-blackbox test-slow test-embedder embedder bench-embed bench bench-router bench-replication openapi lint lint-embedder
