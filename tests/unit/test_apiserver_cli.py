"""`netsim apiserver` in the foreground and `netsim kubeconfig`, and RBAC seen from a client:
a user without bindings gets upstream's 403 wording."""

import http.client
import json
import os
import ssl
import subprocess
import sys

import pytest
from kubernetes import client, config

from tests.support.apiserver import running_apiserver

BIN = os.path.dirname(sys.executable)


@pytest.mark.skipif(os.geteuid() != 0, reason="the netsim command needs root")
def test_netsim_apiserver_writes_a_kubeconfig_that_kubectl_uses(tmp_path):
    env = dict(os.environ, NETSIM_STATE_DIR=str(tmp_path))
    proc = subprocess.Popen([f"{BIN}/netsim", "apiserver", "--listen", "127.0.0.1:0", "--name", "solo"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        kubeconfig = lines[1].split("kubeconfig:", 1)[1].strip()
        assert kubeconfig == str(tmp_path / "solo" / "kubeconfig")
        printed = subprocess.run([f"{BIN}/netsim", "kubeconfig", "--name", "solo"], env=env,
                                 capture_output=True, text=True, check=True).stdout
        assert printed == open(kubeconfig).read()
        out = subprocess.run([f"{BIN}/kubectl", "--kubeconfig", kubeconfig, "get", "namespaces"],
                             capture_output=True, text=True, timeout=30).stdout
        assert "kube-system" in out
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    missing = subprocess.run([f"{BIN}/netsim", "kubeconfig", "--name", "nope"], env=env,
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "netsim apiserver --name nope" in missing.stderr


def test_a_user_without_bindings_is_forbidden(tmp_path):
    (tmp_path / "tokens.csv").write_text("bob-token,bob,bob-uid\n")
    with running_apiserver(f"sqlite://{tmp_path}/state.db", str(tmp_path)) as api:
        host, port = api.url.removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port),
                                           context=ssl.create_default_context(cafile=api.server.cert))
        conn.request("GET", "/api/v1/namespaces/default/pods", headers={"Authorization": "Bearer bob-token"})
        resp = conn.getresponse()
        status = json.loads(resp.read())
        conn.close()
        assert resp.status == 403 and status["reason"] == "Forbidden"
        assert status["message"] == ('pods is forbidden: User "bob" cannot list resource "pods" in API '
                                     'group "" in the namespace "default"')
        admin = client.CoreV1Api(config.new_client_from_config(config_file=api.kubeconfig))
        assert admin.list_namespaced_pod("default").items == []
