"""Which container specs run a built-in, with which flags and ports (no root, pure)."""

import sys

import pytest

from netsim.containers import images
from netsim.containers.images import Port, SpecError

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"


def resolve(**container):
    container.setdefault("name", "c")
    return images.resolve(container)


def test_agnhost_subcommand_from_args():
    spec = resolve(image=AGNHOST, args=["netexec", "--http-port=8080", "--udp-port", "8081"])
    assert (spec.image, spec.subcommand) == ("agnhost", "netexec")
    assert spec.ports == [Port(8080, "TCP"), Port(8081, "UDP")]


def test_agnhost_without_command_or_args_runs_its_cmd_pause():
    spec = resolve(image=AGNHOST)
    assert spec.subcommand == "pause" and spec.ports == []


@pytest.mark.parametrize("binary", ["/agnhost", "agnhost", "/agnhost-2"])
def test_command_naming_the_image_binary_is_builtin(binary):
    spec = resolve(image=AGNHOST, command=[binary, "serve-hostname", "--tcp", "--http=false", "--port", "80"])
    assert spec.subcommand == "serve-hostname"
    assert spec.ports == [Port(80, "TCP")]
    assert spec.options["tcp"] is True and spec.options["http"] is False


def test_command_replaces_entrypoint_and_args_replace_cmd():
    spec = resolve(image=AGNHOST, command=["/agnhost"], args=["serve-hostname", "--udp", "--http=false"])
    assert spec.subcommand == "serve-hostname"
    assert spec.ports == [Port(9376, "UDP")]


def test_any_registry_and_tag_and_digest():
    for image in ["agnhost", "localhost:5000/x/agnhost:2.4", "gcr.io/k/agnhost@sha256:abcd", "agnhost:latest"]:
        assert resolve(image=image, args=["pause"]).subcommand == "pause"


def test_other_command_on_agnhost_image_is_a_process():
    assert resolve(image=AGNHOST, command=["sh", "-c", "sleep 1"]) is None


def test_other_image_with_command_is_a_process():
    assert resolve(image="python:3", command=["python3", "-m", "http.server", "8000"]) is None


def test_other_image_without_command_echoes_on_declared_tcp_ports():
    spec = resolve(image="nginx:1.25", ports=[{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"},
                                              {"containerPort": 8443, "protocol": "TCP"}])
    assert spec.image == "echo"
    assert spec.ports == [Port(80), Port(8443)]


def test_echoserver_port_from_env_default_3000():
    image = "gcr.io/k8s-staging-ingressconformance/echoserver:v20221109"
    assert resolve(image=image).ports == [Port(3000)]
    spec = resolve(image=image, env=[{"name": "PORT", "value": "8080"}], ports=[{"containerPort": 8080}])
    assert spec.image == "echoserver" and spec.ports == [Port(8080)]


def test_echoserver_with_a_shell_command_is_a_process():
    assert resolve(image="echoserver:1", command=["sh", "-c", "true"]) is None


def test_args_expand_env_references_as_kubernetes_does():
    spec = resolve(image=AGNHOST, env=[{"name": "P", "value": "81"}], args=["netexec", "--http-port=$(P)"])
    assert spec.options["http-port"] == 81
    spec = resolve(image=AGNHOST, args=["connect", "$(HOST):80", "--protocol=$$x"])
    assert spec.positional == ["$(HOST):80"] and spec.options["protocol"] == "$x"


def test_netexec_udp_disabled():
    assert resolve(image=AGNHOST, args=["netexec", "--udp-port=-1"]).ports == [Port(8080)]


def test_connect_takes_destination_and_duration():
    spec = resolve(image=AGNHOST, args=["connect", "10.0.0.1:80", "--timeout", "5s", "--protocol=udp"])
    assert spec.oneshot and spec.positional == ["10.0.0.1:80"]
    assert spec.options["timeout"] == 5.0 and spec.options["protocol"] == "udp"


@pytest.mark.parametrize("args, message", [
    (["netexec", "--htp-port=80"], "unknown flag '--htp-port=80' for agnhost netexec"),
    (["netexec", "--http-port=eighty"], "invalid value 'eighty' for flag --http-port"),
    (["serve-hostname", "--tcp"], "can't serve TCP/UDP mode and HTTP mode at the same time"),
    (["porter"], "subcommand 'porter' has no built-in equivalent"),
    (["connect"], "takes exactly one argument"),
    (["netexec", "--http-port"], "flag --http-port of agnhost netexec needs a value"),
])
def test_bad_flags_name_container_and_flag(args, message):
    with pytest.raises(SpecError) as e:
        resolve(name="web", image=AGNHOST, args=args)
    assert message in str(e.value)
    assert "container 'web'" in str(e.value)


def test_missing_image_is_named():
    with pytest.raises(SpecError, match="field 'image' is required"):
        images.resolve({"name": "x"})


def test_go_durations():
    assert images.parse_duration("1m30s") == 90.0
    assert images.parse_duration("250ms") == 0.25
    assert images.parse_duration("0") == 0.0
    with pytest.raises(ValueError):
        images.parse_duration("5")


def test_exec_argv_maps_agnhost_binary_to_builtin_process():
    argv = images.exec_argv(["/agnhost", "connect", "10.0.0.1:80", "--timeout=1s"])
    assert argv == [sys.executable, "-m", "netsim.containers", "agnhost", "connect", "10.0.0.1:80", "--timeout=1s"]
    assert images.exec_argv(["curl", "x"]) is None
