"""Test-wide rules: kernel tests need root and must leave the host as they found it."""

import os
import subprocess

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/kernel/" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="kernel test: needs root (network namespaces, netfilter)")
        for item in items:
            if "kernel" in item.keywords:
                item.add_marker(skip)


def host_snapshot():
    """What the host's root namespace looks like: namespaces, links, routes, netfilter."""
    def run(*cmd):
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if not line.startswith("#")]

    links = [line.split(":")[1].strip().split("@")[0] for line in run("ip", "-o", "link", "show")]
    # Counters in iptables-save output change with traffic; compare the rules only.
    def rules(*cmd):
        return [line.split(" [")[0] if line.startswith(":") else line for line in run(*cmd)]

    return {
        "netns": sorted(run("ip", "netns", "list")),
        "links": sorted(links),
        "routes": sorted(run("ip", "route", "show", "table", "all")),
        "iptables-legacy": rules("iptables-legacy-save"),
        "iptables-nft": rules("iptables-nft-save"),
    }


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found():
    if os.geteuid() != 0:
        yield
        return
    before = host_snapshot()
    yield
    after = host_snapshot()
    for key in before:
        assert after[key] == before[key], f"the test session changed the host's {key}"
