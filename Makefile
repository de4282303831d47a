# One command per job, each from nothing: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: help venv build data browser demo test test-all cpp-test bench bench-catalogue clean

help:
	@echo "make demo      set everything up, auralise real music with the shipped model (out/demo)"
	@echo "make test      set everything up and run the test suite (what CI runs)"
	@echo "make test-all  the test suite including the slow tests"
	@echo "make bench     benchmarks of the native ops against the pure-PyTorch reference"
	@echo "make bench-catalogue  catalogue throughput: naive loop, library loop, local and Ray engines"
	@echo "make cpp-test  build csrc/ with CMake and run the C++ tests (ctest)"

$(VENV)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	# tinysoundfont's optional audio-device dependency does not build here; it is not needed
	$(PIP) install -q --no-deps tinysoundfont
	touch $@

venv: $(VENV)/.deps

# the extension is rebuilt whenever a csrc/ file or setup.py changes
build: venv $(VENV)/.built
$(VENV)/.built: $(VENV)/.deps setup.py $(shell find csrc -type f)
	$(PIP) install -q -e . --no-build-isolation --no-deps
	touch $@

data:
	bash scripts/install_data.sh

browser:
	bash scripts/install_browser.sh

demo: build data
	$(PY) scripts/demo.py --out out/demo

test: build data browser
	$(PY) -m pytest -q
	bash scripts/cmake_test.sh

test-all: build data browser
	$(PY) -m pytest -q -m ""

cpp-test: venv
	bash scripts/cmake_test.sh

bench: build
	$(PY) benchmarks/bench_kernels.py --out benchmarks/results
	$(PY) benchmarks/bench_reference.py --out benchmarks/results

bench-catalogue: build data
	$(PY) benchmarks/bench_catalogue.py --out benchmarks/results

clean:
	rm -rf build out *.egg-info cnnaural_ext/_C*.so
