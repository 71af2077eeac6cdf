"""The installed plugin executable and its wire format (no root: nothing here enters a namespace)."""

import json
import os
import subprocess

from cni import shim
from cni.install import install_plugin


def test_request_round_trips_env_and_stdin():
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "K8S_POD_NAME=web;X=a=b"}
    stdin = b'{"name": "n"}\x00binary'
    assert shim.decode_request(shim.encode_request("bridge", env, stdin)) == ("bridge", env, stdin)


def test_no_agent_listening_means_fall_back(tmp_path):
    assert shim.call_agent(str(tmp_path / "missing.sock"), "bridge", {}, b"", 0) is None


def test_installed_executable_starts_python_without_site_and_bakes_the_tree(tmp_path):
    path = install_plugin(str(tmp_path))
    assert os.access(path, os.X_OK) and os.path.basename(path) == "bridge"
    first, *rest = open(path).read().splitlines()
    assert first.endswith(" -IS") and first.startswith("#!/")
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(shim.__file__)))
    assert repr(package_root) in "\n".join(rest)


def test_installed_executable_answers_version_in_process_from_any_directory(tmp_path):
    path = install_plugin(str(tmp_path / "bin"))
    proc = subprocess.run([path], input=b"", capture_output=True, cwd=str(tmp_path),
                          env={"CNI_COMMAND": "VERSION", "NETSIM_CNI_AGENT": str(tmp_path / "none.sock")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"


def test_installed_executable_reports_errors_as_spec_json(tmp_path):
    path = install_plugin(str(tmp_path / "bin"))
    proc = subprocess.run([path], input=b"{bad", capture_output=True,
                          env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x",
                               "CNI_IFNAME": "eth0", "CNI_PATH": "/x"})
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 6
