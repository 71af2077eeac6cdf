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
		etcd_new=; case " $$(echo $$missing) " in *" etcd-server "*) etcd_new=1;; esac; \
		policy=; if [ -n "$$etcd_new" ] && [ ! -e /usr/sbin/policy-rc.d ]; then \
			policy=1; printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
		fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
		status=$$?; \
		[ -n "$$policy" ] && rm -f /usr/sbin/policy-rc.d; \
		if [ -n "$$etcd_new" ]; then \
			echo "Disabling the etcd service of Debian's etcd-server: netsim runs its own etcd."; \
			if [ -d /run/systemd/system ]; then systemctl disable --now etcd >/dev/null 2>&1; \
			else update-rc.d etcd disable >/dev/null 2>&1; fi; \
		fi; \
		exit $$status; \
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
	$(PY) bench/startup.py
	$(PY) bench/churn.py
	$(PY) bench/kubeproxy.py
	$(PY) bench/apiserver.py
	$(PY) bench/store.py

clean:
	rm -rf $(VENV) *.egg-info
