"""The conformance suite without root: what a report says, which answers a case accepts, which
cases apply to which plugin and version, and how the user's options are read."""

import json
import os

import pytest

from cni.conformance import cases, schema
from cni.conformance.report import CaseResult, Report
from cni.conformance.runner import select, skip_reason
from cni.conformance.target import ConformanceError, Target, pick_version, resolve

REFERENCE_CLAIMS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]

GOOD_1_0 = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "0a:58:0a:fa:00:01"}, {"name": "veth1", "mac": "0a:58:0a:fa:00:02"},
                           {"name": "eth0", "mac": "0a:58:0a:fa:00:03", "sandbox": "/run/netns/x"}],
            "ips": [{"interface": 2, "address": "10.250.0.3/24", "gateway": "10.250.0.1"}],
            "routes": [{"dst": "10.96.0.0/12"}, {"dst": "0.0.0.0/0", "gw": "10.250.0.1"}], "dns": {}}


def _result(status, id="add.result", evidence="why"):
    return CaseResult(id, "title", "1.0.0 Section 5 Success", "a quote", status, evidence, 12.34)


def _report(*statuses):
    return Report(plugin="/p/bridge", cni_version="1.0.0", conf_source="(default)", cni_path=["/p"],
                  supported_versions=REFERENCE_CLAIMS,
                  cases=[_result(s, id=f"case.{i}", evidence=f"evidence {i}") for i, s in enumerate(statuses)])


# --- report ---------------------------------------------------------------------------------

def test_any_failure_makes_the_exit_code_non_zero_and_skips_do_not():
    assert _report("pass", "skip").exit_code() == 0
    assert _report("pass", "fail", "skip").exit_code() == 1
    assert _report("pass", "fail", "skip").summary() == {"pass": 1, "fail": 1, "skip": 1, "total": 3}


def test_json_report_carries_what_ci_needs():
    doc = json.loads(_report("pass", "fail").dumps())
    assert set(doc) >= {"suiteVersion", "plugin", "cniVersion", "cases", "summary"}
    assert doc["plugin"] == "/p/bridge" and doc["cniVersion"] == "1.0.0"
    case = doc["cases"][1]
    assert set(case) == {"id", "title", "section", "quote", "status", "evidence", "duration_ms"}
    assert case["status"] == "fail" and case["evidence"] == "evidence 1" and case["duration_ms"] == 12.3
    assert doc["summary"]["fail"] == 1


def test_text_report_shows_evidence_of_failures_and_skips_only():
    text = _report("pass", "fail", "skip").render_text()
    assert "PASS  case.0" in text and "FAIL  case.1" in text and "SKIP  case.2" in text
    assert "evidence 0" not in text
    assert "      evidence 1" in text and "      evidence 2" in text
    assert text.rstrip().endswith("1 passed, 1 failed, 1 skipped of 3 cases")
    assert "a quote" in _report("pass").render_text(quotes=True)


# --- schema -----------------------------------------------------------------------------------

def test_a_conforming_1_0_result_has_no_problems():
    assert schema.result_problems(GOOD_1_0, "1.0.0") == []


@pytest.mark.parametrize("change, complaint", [
    ({"cniVersion": "0.4.0"}, "cniVersion: got '0.4.0'; expected '1.0.0'"),
    ({"ips": [{"interface": 3, "address": "10.250.0.3/24"}]}, "ips[0].interface: got 3"),
    ({"ips": [{"address": "10.250.0.3/24"}]}, "ips[0].interface: missing"),
    ({"ips": [{"interface": 2, "address": "10.250.0.3"}]}, "ips[0].address"),
    ({"ips": [{"interface": 2, "version": "4", "address": "10.250.0.3/24"}]}, "spec 1.0.0 removed it"),
    ({"routes": [{"dst": "10.96.0.0/12", "gw": "nope"}]}, "routes[0].gw"),
    ({"interfaces": [{"name": "eth0", "mac": "zz"}], "ips": []}, "interfaces[0].mac"),
    ({"dns": {"nameservers": ["not-an-ip"]}}, "dns.nameservers[0]"),
])
def test_result_problems_name_the_field(change, complaint):
    problems = schema.result_problems({**GOOD_1_0, **change}, "1.0.0")
    assert any(complaint in p for p in problems), problems


def test_missing_dns_is_a_problem():
    doc = {k: v for k, v in GOOD_1_0.items() if k != "dns"}
    assert any(p.startswith("dns: missing") for p in schema.result_problems(doc, "1.0.0"))


def test_results_before_1_0_need_the_ip_version_and_old_ones_their_own_shape():
    doc = {**GOOD_1_0, "cniVersion": "0.3.1"}
    assert any("ips[0].version" in p for p in schema.result_problems(doc, "0.3.1"))
    doc["ips"] = [{"version": "4", "interface": 2, "address": "10.250.0.3/24"}]
    assert schema.result_problems(doc, "0.3.1") == []
    legacy = {"cniVersion": "0.2.0", "ip4": {"ip": "10.250.0.3/24", "gateway": "10.250.0.1",
                                            "routes": [{"dst": "0.0.0.0/0"}]}, "dns": {}}
    assert schema.result_problems(legacy, "0.2.0") == []
    legacy["ip4"]["ip"] = "fd00::3/64"
    assert any("ip4.ip" in p for p in schema.result_problems(legacy, "0.2.0"))


def test_1_1_result_keys_are_allowed_only_from_1_1():
    doc = {**GOOD_1_0, "interfaces": GOOD_1_0["interfaces"][:2] + [{"name": "eth0", "mtu": 1500, "sandbox": "/x"}]}
    assert any("interfaces[2].mtu" in p for p in schema.result_problems(doc, "1.0.0"))
    assert schema.result_problems({**doc, "cniVersion": "1.1.0"}, "1.1.0") == []


def test_error_problems():
    doc, problems = schema.error_problems(1, b'{"code": 4, "msg": "required env variables [CNI_NETNS] missing"}', {4})
    assert problems == [] and doc["code"] == 4
    _, problems = schema.error_problems(1, b'{"code": 999, "msg": "boom"}', {4})
    assert problems == ["code: got 999; expected 4"]
    _, problems = schema.error_problems(0, b"", {4})
    assert problems[0].startswith("exit code 0") and "nothing on stdout" in problems[1]
    _, problems = schema.error_problems(1, b'{"code": "4"}')
    assert any(p.startswith("code:") for p in problems) and any(p.startswith("msg:") for p in problems)


def test_version_answers():
    assert schema.version_problems({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]}, "1.0.0") == []
    assert schema.version_problems({"cniVersion": "1.1.0", "supportedVersions": []}, "1.0.0") == [
        "cniVersion: got '1.1.0'; expected '1.0.0', the value on input"]
    assert schema.supported_versions_problems(REFERENCE_CLAIMS) == []
    assert schema.supported_versions_problems(["1.0", "2.0.0", "1.0.0", "1.0.0"]) == [
        "supportedVersions[0]: got '1.0'; expected a semantic version such as \"1.0.0\"",
        "supportedVersions[1]: '2.0.0' is not a released spec version (0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)",
        "supportedVersions: lists a version twice"]


# --- case selection and skips -------------------------------------------------------------

def _target(version="1.0.0", supported=REFERENCE_CLAIMS, ipam="host-local", plugins=1, path=("/nowhere",)):
    net = {"name": "n", "cniVersion": version,
           "plugins": [{"type": "bridge", "ipam": {"type": ipam}}] + [{"type": "portmap"}] * (plugins - 1)}
    return Target(plugin="/p/bridge", type="bridge", cni_version=version, supported=list(supported),
                  network=net, conf_source="x", cni_path=list(path))


def test_gc_and_status_are_skipped_when_the_plugin_does_not_claim_1_1():
    reason = skip_reason(cases.by_id("gc.valid-attachments"), _target())
    assert reason == ("GC exists from spec 1.1.0; testing 1.0.0; bridge claims "
                      "0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0")
    assert skip_reason(cases.by_id("status.ready"), _target("1.1.0", REFERENCE_CLAIMS + ["1.1.0"])) is None


def test_check_cases_are_skipped_before_0_4_and_interface_cases_before_0_3():
    assert skip_reason(cases.by_id("check.after-add"), _target("0.3.1")) == "CHECK exists from spec 0.4.0; testing 0.3.1"
    assert skip_reason(cases.by_id("check.after-add"), _target("0.4.0")) is None
    assert "0.3.0" in skip_reason(cases.by_id("add.sandbox-interface"), _target("0.2.0"))
    assert skip_reason(cases.by_id("add.links"), _target("0.2.0")) is None


def test_reuse_needs_host_local_and_chaining_needs_a_partner():
    assert "'static'" in skip_reason(cases.by_id("del.releases-address"), _target(ipam="static"))
    assert "nothing to chain with" in skip_reason(cases.by_id("chain.prev-result"), _target())
    assert skip_reason(cases.by_id("chain.prev-result"), _target(plugins=2)) is None


def test_select_by_id_or_prefix_and_unknown_ids_are_named():
    assert [c.id for c in select(["version"])] == ["version.answer", "version.supported"]
    assert [c.id for c in select(["leaks.ipam", "status.ready"])] == ["status.ready", "leaks.ipam"]
    with pytest.raises(ConformanceError, match="unknown case nope"):
        select(["nope"])


def test_every_case_is_tied_to_a_section_and_quote_and_leaks_come_last():
    ids = [c.id for c in cases.CASES]
    assert len(ids) == len(set(ids))
    for c in cases.CASES:
        assert c.section and c.quote and c.title, c.id
        assert c.section.split()[0] in ("0.4.0", "1.0.0", "1.1.0"), c.id
    assert ids[-3:] == ["leaks.links", "leaks.netfilter", "leaks.ipam"]


# --- the user's options -----------------------------------------------------------------------

def test_the_tested_version_is_the_newest_claimed_capped_by_the_conf():
    assert pick_version(None, REFERENCE_CLAIMS + ["1.1.0"], None) == "1.1.0"
    assert pick_version(None, REFERENCE_CLAIMS + ["1.1.0"], "0.4.0") == "0.4.0"
    assert pick_version(None, REFERENCE_CLAIMS, "1.1.0") == "1.0.0"
    assert pick_version("0.3.1", REFERENCE_CLAIMS, None) == "0.3.1"
    with pytest.raises(ConformanceError, match=r"--cni-version 1\.1\.0: the plugin does not claim it"):
        pick_version("1.1.0", REFERENCE_CLAIMS, None)
    with pytest.raises(ConformanceError, match="--cni-version 2.0: not a spec version"):
        pick_version("2.0", REFERENCE_CLAIMS, None)


def _executable(path):
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_a_conf_must_name_the_plugin_and_its_host_local_data_goes_to_the_suite(tmp_path):
    plugin = _executable(tmp_path / "mynet")
    _executable(tmp_path / "host-local")
    _executable(tmp_path / "tuning")
    conf = tmp_path / "net.conflist"
    conf.write_text(json.dumps({"cniVersion": "1.0.0", "name": "net", "plugins": [
        {"type": "mynet", "ipam": {"type": "host-local", "dataDir": "/var/lib/cni/networks", "subnet": "10.1.0.0/24"},
         "capabilities": {"portMappings": True}}]}))
    target = resolve(plugin, "mynet", REFERENCE_CLAIMS, str(conf), None, "/tmp/suite-ipam")
    assert target.cni_version == "1.0.0" and target.cni_path == [str(tmp_path)]
    assert target.conf["ipam"]["dataDir"] == "/tmp/suite-ipam"
    assert target.conf["name"] == "net" and "capabilities" not in target.conf
    with pytest.raises(ConformanceError, match=r"plugins\[\]\.type: no plugin of type 'other'"):
        resolve(_executable(tmp_path / "other"), "other", REFERENCE_CLAIMS, str(conf), None, "/tmp/x")


def test_a_missing_ipam_executable_is_named_with_its_field(tmp_path, monkeypatch):
    monkeypatch.setattr("cni.conformance.target.REFERENCE_DIR", str(tmp_path / "no-reference"))
    plugin = _executable(tmp_path / "mynet")
    conf = tmp_path / "net.conf"
    conf.write_text(json.dumps({"cniVersion": "1.0.0", "name": "net", "type": "mynet", "ipam": {"type": "whereabouts"}}))
    with pytest.raises(ConformanceError, match=r"plugins\[0\]\.ipam\.type: no executable 'whereabouts'"):
        resolve(plugin, "mynet", REFERENCE_CLAIMS, str(conf), None, "/tmp/x")


@pytest.mark.skipif(not os.path.isdir("/usr/lib/cni"), reason="needs the reference plugins' directory")
def test_cni_path_adds_the_reference_dir_when_the_ipam_is_not_beside_the_plugin(tmp_path):
    plugin = _executable(tmp_path / "mynet")
    target = resolve(plugin, "mynet", REFERENCE_CLAIMS, None, None, "/tmp/x")
    assert target.cni_path == [str(tmp_path), "/usr/lib/cni"]
    assert target.conf["ipam"]["type"] == "host-local" and target.conf["cniVersion"] == "1.0.0"
