"""A private etcd for tests and benchmarks: started on free ports, removed afterwards.

Never a system etcd: Debian's etcd-server may run one as a service on port 2379, and tests
must neither depend on it nor write into it. The server here listens on 127.0.0.1 only, keeps
its data in a temporary directory (under /dev/shm when there is one, so fsync costs nothing),
and is killed and its directory removed when the context ends, also on failure.

    with running_etcd() as url:      # "etcd://127.0.0.1:PORT"
        ...

Tests use the session fixture `etcd_url` (import it into a conftest or test module).
"""

import contextlib
import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ETCD = "/usr/bin/etcd"
START_TIMEOUT = 20.0
# etcd 3.4 refuses to start on architectures other than amd64 and ppc64le unless this
# variable names the (Go) architecture it runs on.
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}


def _die_with_parent():
    # Runs in the child before exec: if the test process is killed outright (no cleanup
    # runs), the kernel kills etcd too instead of leaving it running.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(client_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{client_url}/health", timeout=0.5) as response:
            return b'"true"' in response.read()
    except OSError:
        return False


@contextlib.contextmanager
def running_etcd(parent_dir: str | None = None):
    """Run a single-member etcd; yield its store URL (etcd://127.0.0.1:PORT).

    Its data lives in a new directory under `parent_dir` (default: /dev/shm if present).
    """
    if not os.access(ETCD, os.X_OK):
        pytest.skip(f"{ETCD} not installed (Debian package etcd-server; `make setup` installs it)")
    if parent_dir is None and os.path.isdir("/dev/shm"):
        parent_dir = "/dev/shm"
    data_dir = tempfile.mkdtemp(prefix="netsim-etcd-", dir=parent_dir)
    client_port, peer_port = _free_port(), _free_port()
    client_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    env = dict(os.environ, ETCD_UNSUPPORTED_ARCH=GO_ARCH.get(platform.machine(), ""))
    log_path = os.path.join(data_dir, "etcd.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [ETCD, "--name", "netsim-test", "--data-dir", os.path.join(data_dir, "data"),
             "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"netsim-test={peer_url}", "--log-level", "warn",
             "--logger", "zap"],
            stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(client_url):
            if process.poll() is not None or time.monotonic() > deadline:
                with open(log_path, errors="replace") as log:
                    tail = log.read()[-2000:]
                raise RuntimeError(f"etcd did not become healthy on {client_url} "
                                   f"(exit code {process.poll()}); its log:\n{tail}")
            time.sleep(0.05)
        yield f"etcd://127.0.0.1:{client_port}"
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def etcd_url():
    with running_etcd() as url:
        yield url
