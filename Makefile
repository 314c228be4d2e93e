# The two commands of the README. Each does all set-up on a fresh machine (a virtual environment in .venv
# with the pinned requirements), then runs.
#   make demo   synthetic data -> pretraining on the CPU -> linear SVM, pretrained vs random init (a rerun
#               replaces the previous demo run)
#   make test   the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DATA ?= data/synthetic
DEMO_OUT ?= runs/demo
# OpenMP threads that spin while they wait run many times slower when another process holds a core (a
# laptop, a shared CI box: 15 s instead of 2 s per demo step on 2 cores); passive waiting costs little when idle.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo test bench clean-demo

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "CUDA available:", torch.cuda.is_available())'
	@touch $@

install: $(VENV)/.installed

demo: install
	$(PY) data/make_synthetic.py --out $(DEMO_DATA) --size small --seed 0
	$(PY) train.py --config configs/demo.yaml data.root=$(DEMO_DATA) out=$(DEMO_OUT) overwrite=true

test: install
	$(PY) -m pytest

bench: install
	$(PY) -m bench.encoder
	$(PY) -m bench.loader
	$(PY) -m bench.svm
	$(PY) -m bench.embed
	$(PY) -m bench.prepare_meshes
	$(PY) -m bench.features
	$(PY) -m bench.render

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_OUT)
