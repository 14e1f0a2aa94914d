# fnl: set-up, main job and tests on a fresh Debian 12 machine with Swift and Python.
#   make run    installs what is missing, then runs the main job: `fnl compare` (the paper's ablation on digits)
#   make test   installs what is missing, then runs every test (swift test, pytest, Debian python)
#   make demo   the matrix-problem demonstration (SI vs random factors, FD vs weight decay)
#   make bench  the benchmark tables
PYTHON ?= python3
VENV ?= .venv
DEBIAN_VENV ?= .venv-debian
SYSTEM_PACKAGES = python3-dev python3-numpy python3-venv python3-pytest python3-wheel python3-setuptools \
                  python3-sklearn python3-matplotlib python3-tqdm libopenblas-dev liblapacke-dev
PIP_PACKAGES = numpy pytest wheel setuptools
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run demo test system-packages venv swift-test pytest debian-test bench clean

run: venv
	$(VENV)/bin/fnl compare --out runs/compare --resume

demo: venv
	$(VENV)/bin/python -m fnl demo

test: swift-test pytest debian-test

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: system-packages
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade $(PIP_PACKAGES)
	$(VENV)/bin/python -m pip install -q .

swift-test: system-packages
	swift test

pytest: venv
	$(VENV)/bin/python -m pytest -q python/tests

# The same package built and tested with Debian's own python3 and NumPy 1.24.
debian-test: system-packages
	[ -x $(DEBIAN_VENV)/bin/python ] || /usr/bin/python3 -m venv --system-site-packages $(DEBIAN_VENV)
	$(DEBIAN_VENV)/bin/python -m pip install -q --no-build-isolation --no-deps .
	$(DEBIAN_VENV)/bin/python -c "import numpy, fnl; print('Debian python: numpy', numpy.__version__); assert numpy.__version__.startswith('1.')"
	$(DEBIAN_VENV)/bin/python -m pytest -q python/tests

bench: venv
	$(VENV)/bin/python benchmarks/bench_factorized.py
	$(VENV)/bin/python benchmarks/bench_conv.py
	$(VENV)/bin/python benchmarks/bench_optim.py
	$(VENV)/bin/python benchmarks/bench_train.py

clean:
	rm -rf .build build runs $(VENV) $(DEBIAN_VENV) python/fnl/*.so
