"""The libcni-style runtime's exec contract, against a fake plugin that records what it got.

The fake plugin appends {"command", "env", "stdin"} to the file named by FAKE_LOG (passed
through CNIConfig.env) and answers as its own config says: `"result"` to print on ADD,
`"fail"` ({"code", "msg"}) to print as an error and exit 1 on the commands it lists.
"""

import base64
import concurrent.futures
import json
import os
import sys
import textwrap

import pytest

from cni.runtime import CNIConfig, RuntimeConf, conflist_from_bytes, load_conflist
from cni.spec import CNIError

FAKE = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, sys
    stdin = json.load(sys.stdin)
    env = {{k: v for k, v in os.environ.items() if k.startswith(("CNI_", "EXTRA_"))}}
    command = env["CNI_COMMAND"]
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps({{"plugin": os.path.basename(sys.argv[0]), "command": command,
                               "env": env, "stdin": stdin}}) + "\\n")
    fail = stdin.get("fail")
    if fail and command in fail.get("on", ["ADD"]):
        if fail.get("raw"):
            sys.stderr.write(fail["raw"])
        else:
            print(json.dumps({{"cniVersion": stdin["cniVersion"], "code": fail["code"], "msg": fail["msg"]}}))
        sys.exit(1)
    if command == "VERSION":
        print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}}))
    elif command == "ADD":
        result = dict(stdin.get("prevResult") or {{"cniVersion": stdin["cniVersion"]}})
        result.setdefault("interfaces", []).append({{"name": stdin.get("ifname", os.environ["CNI_IFNAME"])}})
        result.setdefault("ips", []).extend(stdin.get("ips", []))
        print(json.dumps(result))
    """)


@pytest.fixture
def plugin_dir(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("fake", "fake2"):
        (d / name).write_text(FAKE)
        (d / name).chmod(0o755)
    return d


@pytest.fixture
def log(tmp_path):
    return tmp_path / "calls.jsonl"


@pytest.fixture
def cfg(tmp_path, plugin_dir, log):
    return CNIConfig(path=[str(tmp_path / "empty"), str(plugin_dir)], cache_dir=str(tmp_path / "cache"),
                     env={"FAKE_LOG": str(log), "EXTRA_AGENT": "/run/agent.sock"})


def calls(log):
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def conflist(*plugins, version="1.0.0", **extra):
    doc = {"cniVersion": version, "name": "podnet", "plugins": list(plugins), **extra}
    return conflist_from_bytes(json.dumps(doc).encode(), "10-podnet.conflist")


RT = RuntimeConf(container_id="c1", netns="/run/netns/p1", ifname="eth0",
                 args=[("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", "web")],
                 capability_args={"portMappings": [{"hostPort": 8080, "containerPort": 80}],
                                  "bandwidth": {"ingressRate": 1000}})


# --- conflist parsing ------------------------------------------------------------------

def test_conflist_fields():
    net = conflist({"type": "fake"}, {"type": "fake2", "capabilities": {"portMappings": True}},
                   disableCheck="true")
    assert (net.name, net.cni_version, [p["type"] for p in net.plugins]) == ("podnet", "1.0.0", ["fake", "fake2"])
    assert net.disable_check is True and net.disable_gc is False
    assert json.loads(net.bytes)["plugins"][1]["capabilities"] == {"portMappings": True}


@pytest.mark.parametrize("doc, field, code", [
    (b"{not json", "not valid JSON", 6),
    (b"[]", "(top level)", 6),
    (json.dumps({"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}).encode(), "name", 7),
    (json.dumps({"cniVersion": "1.0.0", "name": "a b", "plugins": [{"type": "x"}]}).encode(), "name", 7),
    (json.dumps({"cniVersion": "1.0.0", "name": "n"}).encode(), "plugins", 7),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": []}).encode(), "plugins", 7),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "x"}, {"mtu": 1}]}).encode(),
     "plugins[1].type", 7),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../x"}]}).encode(), "plugins[0].type", 7),
    (json.dumps({"cniVersion": "9.9.9", "name": "n", "plugins": [{"type": "x"}]}).encode(), "cniVersion", 7),
    (json.dumps({"name": "n", "plugins": [{"type": "x"}]}).encode(), "cniVersion", 7),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "disableCheck": "maybe", "plugins": [{"type": "x"}]}).encode(),
     "disableCheck", 7),
])
def test_conflist_errors_name_file_field_and_expectation(doc, field, code):
    with pytest.raises(CNIError) as e:
        conflist_from_bytes(doc, "/etc/cni/net.d/10-bad.conflist")
    assert e.value.code == code
    assert e.value.msg.startswith("/etc/cni/net.d/10-bad.conflist: ")
    assert field in e.value.msg
    assert "expected" in e.value.msg


def test_cni_versions_picks_highest_known():
    net = conflist_from_bytes(json.dumps({"cniVersions": ["0.4.0", "1.1.0", "7.0.0"], "cniVersion": "1.0.0",
                                          "name": "n", "plugins": [{"type": "x"}]}).encode())
    assert net.cni_version == "1.1.0"


def test_single_conf_file_is_wrapped_as_a_list(tmp_path):
    path = tmp_path / "10-one.conf"
    path.write_text(json.dumps({"cniVersion": "0.4.0", "name": "one", "type": "bridge", "bridge": "cni0"}))
    net = load_conflist(str(path))
    assert (net.name, net.cni_version) == ("one", "0.4.0")
    assert net.plugins == [{"cniVersion": "0.4.0", "name": "one", "type": "bridge", "bridge": "cni0"}]
    path.write_text(json.dumps({"cniVersion": "0.4.0", "name": "one"}))
    with pytest.raises(CNIError, match=r"10-one.conf: \(top level\).type"):
        load_conflist(str(path))


# --- exec contract -----------------------------------------------------------------------

def test_add_environment(cfg, log, plugin_dir, tmp_path):
    cfg.add_network_list(conflist({"type": "fake"}), RT)
    (call,) = calls(log)
    assert call["env"] == {
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/p1", "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        "CNI_PATH": f"{tmp_path / 'empty'}:{plugin_dir}", "EXTRA_AGENT": "/run/agent.sock"}


def test_extra_env_cannot_override_cni_variables(tmp_path, plugin_dir, log):
    cfg = CNIConfig([str(plugin_dir)], str(tmp_path / "c"), env={"FAKE_LOG": str(log), "CNI_COMMAND": "DEL"})
    assert cfg.plugin_env("ADD", RT)["CNI_COMMAND"] == "ADD"


def test_stdin_injects_name_version_prev_result_and_declared_capabilities(cfg, log):
    net = conflist({"type": "fake", "name": "other", "cniVersion": "0.3.1", "ips": ["10.0.0.2/24"]},
                   {"type": "fake2", "capabilities": {"portMappings": True, "bandwidth": False, "ipRanges": True}})
    result = cfg.add_network_list(net, RT)
    first, second = calls(log)
    assert first["stdin"]["name"] == "podnet" and first["stdin"]["cniVersion"] == "1.0.0"
    assert "prevResult" not in first["stdin"] and "runtimeConfig" not in first["stdin"]
    assert second["stdin"]["prevResult"] == {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
                                             "ips": ["10.0.0.2/24"]}
    # Only capabilities the plugin declares true, and only those the runtime supplied.
    assert second["stdin"]["runtimeConfig"] == {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}
    assert result["interfaces"] == [{"name": "eth0"}, {"name": "eth0"}]


def test_cache_file_is_libcni_format(cfg, tmp_path):
    net = conflist({"type": "fake", "ips": ["10.0.0.2/24"]})
    result = cfg.add_network_list(net, RT)
    path = tmp_path / "cache" / "results" / "podnet-c1-eth0"
    entry = json.loads(path.read_text())
    assert entry == {"kind": "cniCacheV1", "containerId": "c1", "config": base64.b64encode(net.bytes).decode(),
                     "ifName": "eth0", "networkName": "podnet", "netns": "/run/netns/p1",
                     "cniArgs": [["K8S_POD_NAMESPACE", "default"], ["K8S_POD_NAME", "web"]],
                     "capabilityArgs": RT.capability_args, "result": result}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(path.parent) == ["podnet-c1-eth0"]
    assert cfg.get_cached_result(net, RT) == result


def test_check_gets_cached_result(cfg, log):
    net = conflist({"type": "fake"}, {"type": "fake2"})
    result = cfg.add_network_list(net, RT)
    cfg.check_network_list(net, RT)
    checks = [c for c in calls(log) if c["command"] == "CHECK"]
    assert [c["plugin"] for c in checks] == ["fake", "fake2"]
    assert all(c["stdin"]["prevResult"] == result for c in checks)


def test_check_needs_0_4_0(cfg, log):
    with pytest.raises(CNIError) as e:
        cfg.check_network_list(conflist({"type": "fake"}, version="0.3.1"), RT)
    assert e.value.code == 1 and "0.4.0" in e.value.msg
    assert calls(log) == []


def test_check_error_names_plugin(cfg):
    net = conflist({"type": "fake"}, {"type": "fake2", "fail": {"code": 11, "msg": "veth gone", "on": ["CHECK"]}})
    cfg.add_network_list(net, RT)
    with pytest.raises(CNIError) as e:
        cfg.check_network_list(net, RT)
    assert e.value.code == 11 and e.value.msg == "plugin type='fake2' failed (check): veth gone"


def test_del_reverse_order_with_cached_result_then_cache_gone(cfg, log, tmp_path):
    net = conflist({"type": "fake"}, {"type": "fake2"})
    result = cfg.add_network_list(net, RT)
    cfg.del_network_list(net, RT)
    dels = [c for c in calls(log) if c["command"] == "DEL"]
    assert [c["plugin"] for c in dels] == ["fake2", "fake"]
    assert all(c["stdin"]["prevResult"] == result for c in dels)
    assert cfg.get_cached_result(net, RT) is None
    assert os.listdir(tmp_path / "cache" / "results") == []
    cfg.del_network_list(net, RT)  # idempotent
    assert "prevResult" not in calls(log)[-1]["stdin"]


def test_del_drops_unreadable_cache_entry(cfg, tmp_path):
    net = conflist({"type": "fake"})
    cfg.add_network_list(net, RT)
    (tmp_path / "cache" / "results" / "podnet-c1-eth0").write_text("garbage")
    cfg.del_network_list(net, RT)
    assert not (tmp_path / "cache" / "results" / "podnet-c1-eth0").exists()


def test_failed_add_rolls_back_and_raises_plugin_error(cfg, log, tmp_path):
    net = conflist({"type": "fake"}, {"type": "fake2", "fail": {"code": 7, "msg": "bad bridge name"}})
    with pytest.raises(CNIError) as e:
        cfg.add_network_list(net, RT)
    assert e.value.code == 7
    assert e.value.msg == "plugin type='fake2' failed (add): bad bridge name"
    assert [(c["plugin"], c["command"]) for c in calls(log)] == [
        ("fake", "ADD"), ("fake2", "ADD"), ("fake2", "DEL"), ("fake", "DEL")]
    assert cfg.get_cached_result(net, RT) is None


def test_failure_without_json_carries_stderr(cfg):
    net = conflist({"type": "fake", "fail": {"raw": "panic: runtime error"}})
    with pytest.raises(CNIError) as e:
        cfg.add_network_list(net, RT)
    assert e.value.code == 999 and "panic: runtime error" in e.value.msg


def test_missing_plugin_names_type_and_directories(cfg, tmp_path, plugin_dir):
    with pytest.raises(CNIError) as e:
        cfg.add_network_list(conflist({"type": "nosuch"}), RT)
    assert e.value.code == 7
    assert "'nosuch'" in e.value.msg and str(plugin_dir) in e.value.msg and str(tmp_path / "empty") in e.value.msg


@pytest.mark.parametrize("rt, code, field", [
    (RuntimeConf("", "/run/netns/x", "eth0"), 3, "container_id"),
    (RuntimeConf("a/b", "/run/netns/x", "eth0"), 4, "container_id"),
    (RuntimeConf("c", "/run/netns/x", "a-very-long-interface"), 4, "ifname"),
    (RuntimeConf("c", "/run/netns/x", "et h0"), 4, "ifname"),
])
def test_attachment_arguments_are_validated(cfg, log, rt, code, field):
    with pytest.raises(CNIError) as e:
        cfg.add_network_list(conflist({"type": "fake"}), rt)
    assert e.value.code == code and e.value.msg.startswith(field)
    assert calls(log) == []


def test_gc_deletes_stale_cached_attachments_and_sends_valid_list(cfg, log):
    net = conflist({"type": "fake"}, version="1.1.0")
    keep = RuntimeConf("keep", "/run/netns/a", "eth0")
    stale = RuntimeConf("stale", "/run/netns/b", "eth0", args=[("K8S_POD_NAME", "old")])
    cfg.add_network_list(net, keep)
    cfg.add_network_list(net, stale)
    other = conflist_from_bytes(json.dumps({"cniVersion": "1.1.0", "name": "othernet",
                                            "plugins": [{"type": "fake"}]}).encode())
    cfg.add_network_list(other, stale)
    cfg.gc_network_list(net, valid_attachments=[("keep", "eth0")])
    dels = [c for c in calls(log) if c["command"] == "DEL"]
    assert len(dels) == 1
    assert dels[0]["env"]["CNI_CONTAINERID"] == "stale" and dels[0]["env"]["CNI_NETNS"] == "/run/netns/b"
    assert dels[0]["env"]["CNI_ARGS"] == "K8S_POD_NAME=old"
    (gc,) = [c for c in calls(log) if c["command"] == "GC"]
    assert gc["stdin"]["cni.dev/valid-attachments"] == [{"containerID": "keep", "ifname": "eth0"}]
    assert gc["stdin"]["name"] == "podnet"
    assert cfg.get_cached_result(net, stale) is None
    assert cfg.get_cached_result(net, keep) is not None
    assert cfg.get_cached_result(other, stale) is not None  # another network's attachment is not ours


def test_gc_before_1_1_0_only_cleans_cache(cfg, log):
    net = conflist({"type": "fake"})
    cfg.add_network_list(net, RT)
    cfg.gc_network_list(net, valid_attachments=[])
    assert [c["command"] for c in calls(log)] == ["ADD", "DEL"]


def test_status_only_from_1_1_0(cfg, log):
    cfg.get_status_network_list(conflist({"type": "fake"}))
    assert calls(log) == []
    cfg.get_status_network_list(conflist({"type": "fake"}, version="1.1.0"))
    assert [c["command"] for c in calls(log)] == ["STATUS"]
    with pytest.raises(CNIError) as e:
        cfg.get_status_network_list(conflist({"type": "fake", "fail": {"code": 50, "msg": "no agent",
                                                                         "on": ["STATUS"]}}, version="1.1.0"))
    assert e.value.code == 50


def test_version_info(cfg, log):
    assert cfg.get_version_info("fake")["supportedVersions"] == ["1.0.0", "1.1.0"]
    (call,) = calls(log)
    assert call["stdin"] == {"cniVersion": "1.1.0"}
    assert call["env"]["CNI_NETNS"] == "dummy" and call["env"]["CNI_PATH"] == "dummy"


def test_parallel_adds_from_a_thread_pool(cfg):
    net = conflist({"type": "fake"})
    rts = [RuntimeConf(f"c{i}", f"/run/netns/p{i}", "eth0") for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda rt: cfg.add_network_list(net, rt), rts))
    assert sorted(e["containerId"] for e in cfg.cached_attachments()) == sorted(rt.container_id for rt in rts)
    assert [e["containerId"] for e in cfg.cached_attachments("c3")] == ["c3"]


def test_rollback_goes_on_past_a_failing_plugin(cfg, log):
    net = conflist({"type": "fake"}, {"type": "nosuch"})
    with pytest.raises(CNIError) as e:
        cfg.add_network_list(net, RT)
    assert "failed (add)" in e.value.msg and "'nosuch'" in e.value.msg
    assert "cleanup DEL failed too" in e.value.details
    assert [(c["plugin"], c["command"]) for c in calls(log)] == [("fake", "ADD"), ("fake", "DEL")]
