# netsim: `make up` sets up and runs the default lab, `make test` sets up and runs the tests,
# `make down` removes the default lab's cluster. All are safe to run again.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
NETSIM := $(VENV)/bin/netsim
# Debian's python3 (not whatever python3 comes first on PATH): a fresh machine has only this.
SYSTEM_PYTHON := /usr/bin/python3
DEB_PACKAGES := python3 python3-venv iproute2 iptables ipset conntrack tcpdump \
	containernetworking-plugins iputils-ping curl procps etcd-server openssl
STAMP := $(VENV)/.installed
LAB ?=

.PHONY: all setup system-packages up down test unit kernel bench clean

all: up

system-packages:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
		case " $$(echo $$missing) " in *" etcd-server "*) \
			if [ -d /run/systemd/system ]; then \
				echo "Stopping the etcd service the etcd-server package started: netsim runs its own etcd."; \
				systemctl disable --now etcd >/dev/null 2>&1 || true; \
			fi;; \
		esac; \
	fi

$(STAMP): pyproject.toml | system-packages
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: system-packages $(STAMP)

up: setup
	$(NETSIM) up $(if $(LAB),-f $(LAB))

down: setup
	$(NETSIM) down --name netsim

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

unit: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

bench: setup
	$(PY) bench/cni.py
	$(PY) bench/bringup.py

clean:
	rm -rf $(VENV) *.egg-info
