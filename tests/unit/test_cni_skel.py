"""The skel: environment checks, versions and error codes, as the reference plugins answer."""

import json

import pytest

from cni import skel, spec

CONF = {"cniVersion": "1.0.0", "name": "mynet", "type": "bridge"}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/run/netns/pod",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


class Recorder:
    """A plugin that records its calls and returns a fixed result."""

    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def _record(self, args):
        self.calls.append(args)
        if self.fail:
            raise self.fail

    def cmd_add(self, args):
        self._record(args)
        return {"ips": [{"interface": 0, "address": "10.22.0.2/24", "gateway": "10.22.0.1"}],
                "interfaces": [{"name": "eth0", "sandbox": args.netns}]}

    cmd_del = cmd_check = cmd_gc = cmd_status = _record


def run(env=None, conf=CONF, plugin=None, **overrides):
    env = dict(ENV if env is None else env, **overrides)
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    code, out = skel.dispatch(env, stdin, plugin or Recorder())
    return code, json.loads(out) if out else None


def test_add_prints_the_result_in_the_configs_version():
    code, out = run()
    assert code == 0 and out["cniVersion"] == "1.0.0" and out["ips"][0]["address"] == "10.22.0.2/24"
    code, out = run(conf=dict(CONF, cniVersion="0.3.1"))
    assert out["ips"][0]["version"] == "4"


def test_missing_command_exits_0_silently():
    env = dict(ENV)
    del env["CNI_COMMAND"]
    assert skel.dispatch(env, b"{}", Recorder()) == (0, b"")


def test_unknown_command_is_code_4():
    code, out = run(CNI_COMMAND="FOO")
    assert (code, out["code"], out["msg"]) == (1, 4, "unknown CNI_COMMAND: FOO")


@pytest.mark.parametrize("var,command", [("CNI_CONTAINERID", "ADD"), ("CNI_NETNS", "ADD"),
                                         ("CNI_IFNAME", "DEL"), ("CNI_PATH", "CHECK")])
def test_missing_required_variable_is_code_4_and_named(var, command):
    env = dict(ENV, CNI_COMMAND=command)
    del env[var]
    code, out = run(env)
    assert out["code"] == 4 and out["msg"] == f"required env variables [{var}] missing"


def test_del_does_not_need_a_netns():
    env = dict(ENV, CNI_COMMAND="DEL")
    del env["CNI_NETNS"]
    assert run(env)[0] == 0


def test_malformed_json_is_code_6():
    code, out = run(conf=b"{bad")
    assert code == 1 and out["code"] == 6 and out["msg"].startswith("error unmarshall network config")


def test_missing_or_bad_network_name_is_code_7():
    assert run(conf={"cniVersion": "1.0.0"})[1]["code"] == 7
    assert run(conf=dict(CONF, name="-bad"))[1]["code"] == 7


@pytest.mark.parametrize("cid", ["-x", "a b", "a/b", ".x"])
def test_bad_container_id_is_code_4(cid):
    code, out = run(CNI_CONTAINERID=cid)
    assert out == {"cniVersion": "1.1.0", "code": 4, "msg": "invalid characters in containerID", "details": cid}


@pytest.mark.parametrize("ifname,msg", [("eth1234567890123", "interface name is too long"),
                                        (".", "interface name is . or .."),
                                        ("..", "interface name is . or .."),
                                        ("a:b", "interface name contains / or : or whitespace characters"),
                                        ("a/b", "interface name contains / or : or whitespace characters"),
                                        ("a b", "interface name contains / or : or whitespace characters")])
def test_bad_ifname_is_code_4(ifname, msg):
    code, out = run(CNI_IFNAME=ifname)
    assert out["code"] == 4 and out["msg"] == msg


def test_fifteen_character_ifname_is_fine():
    assert run(CNI_IFNAME="e" * 15)[0] == 0


def test_unknown_version_is_code_1_and_lists_the_supported_ones():
    code, out = run(conf=dict(CONF, cniVersion="9.9.9"))
    assert out["code"] == 1 and out["msg"] == "incompatible CNI versions"
    assert '"9.9.9"' in out["details"] and '"1.1.0"' in out["details"]


def test_missing_version_means_0_1_0():
    code, out = run(conf={"name": "mynet"})
    assert code == 0 and "ip4" in out


@pytest.mark.parametrize("command,version", [("GC", "1.0.0"), ("STATUS", "1.0.0"), ("CHECK", "0.3.1")])
def test_commands_newer_than_the_config_are_code_1(command, version):
    env = dict(ENV, CNI_COMMAND=command)
    code, out = run(env, conf=dict(CONF, cniVersion=version))
    assert out["code"] == 1 and out["msg"] == f"config version does not allow {command}"


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_need_no_container(command):
    env = {"CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"}
    plugin = Recorder()
    assert run(env, conf=dict(CONF, cniVersion="1.1.0"), plugin=plugin) == (0, None)
    assert plugin.calls[0].command == command


def test_version_needs_no_config():
    code, out = skel.dispatch({"CNI_COMMAND": "VERSION"}, b"", Recorder())
    assert code == 0
    assert json.loads(out) == {"cniVersion": "1.1.0", "supportedVersions": list(spec.SPEC_VERSIONS)}


def test_plugin_errors_keep_their_code_and_other_exceptions_are_999():
    code, out = run(plugin=Recorder(fail=spec.CNIError(11, "try again", "busy")))
    assert out == {"cniVersion": "1.0.0", "code": 11, "msg": "try again", "details": "busy"}
    code, out = run(plugin=Recorder(fail=RuntimeError("boom")))
    assert out["code"] == 999 and "boom" in out["msg"]


def test_prev_result_of_an_older_version_is_parsed_for_check():
    plugin = Recorder()
    prev = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.22.0.2/24", "interface": 2}]}
    run(dict(ENV, CNI_COMMAND="CHECK"), conf=dict(CONF, prevResult=prev), plugin=plugin)
    assert plugin.calls[0].prev_result["ips"] == [{"interface": 2, "address": "10.22.0.2/24"}]


def test_cni_args_are_split_into_pairs():
    plugin = Recorder()
    run(CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web", plugin=plugin)
    assert plugin.calls[0].cni_args() == {"IgnoreUnknown": "1", "K8S_POD_NAME": "web"}
