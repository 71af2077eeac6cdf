"""The conformance cases as pytest tests, for a plugin author's own test run:

    pytest --cni-plugin=/path/to/plugin [--cni-conf=conf.json] [--cni-version=1.0.0]

(loaded through netsim's `pytest11` entry point; `-p cni.conformance.pytest_plugin` where
netsim is on the path but not installed)

adds one test per case, `conformance[<case id>]` (select with -k as usual), run against one
suite (lab, namespaces) for the whole session and torn down at its end. The same settings can
live in the ini file (`cni_plugin`, `cni_conf`, `cni_version`). Without a plugin nothing is
added. The `cni_suite` fixture gives the running `Suite` (its lab and target) to the author's
own tests.
"""

import pytest

from cni.conformance.cases import CASES
from cni.conformance.report import FAIL, SKIP
from cni.conformance.runner import ConformanceError, Suite

_OPTIONS = (("plugin", "PATH", "the CNI plugin executable to run the conformance cases against"),
            ("conf", "FILE", ".conf/.json/.conflist for it (default: bridge-style, host-local IPAM)"),
            ("version", "V", "spec version to test (default: the newest the plugin claims)"))


def pytest_addoption(parser):
    group = parser.getgroup("cni-conformance", "CNI conformance suite")
    for name, metavar, help_text in _OPTIONS:
        group.addoption(f"--cni-{name}", metavar=metavar, help=help_text)
        parser.addini(f"cni_{name}", help_text)


def _setting(config, name):
    return config.getoption(f"--cni-{name}") or config.getini(f"cni_{name}") or None


class _SuiteHolder:
    """Opens the suite on first use and closes it when the session ends."""

    def __init__(self, config):
        self.config = config
        self.suite = None
        self.error = None

    def get(self):
        if self.suite is None and self.error is None:
            try:
                self.suite = Suite(_setting(self.config, "plugin"), conf=_setting(self.config, "conf"),
                                   cni_version=_setting(self.config, "version")).open()
            except ConformanceError as e:
                self.error = str(e)
        if self.error:
            raise pytest.UsageError(f"cni conformance: {self.error}")
        return self.suite

    def close(self):
        if self.suite is not None:
            self.suite.close()


class CaseFailed(Exception):
    pass


class ConformanceCase(pytest.Item):
    """One case of the suite as a test item."""

    def __init__(self, *, case, holder, **kwargs):
        super().__init__(**kwargs)
        self.case = case
        self.holder = holder
        self.user_properties.append(("section", case.section))

    def runtest(self):
        result = self.holder.get().run_case(self.case)
        self.user_properties.append(("evidence", result.evidence))
        if result.status == SKIP:
            pytest.skip(result.evidence)
        if result.status == FAIL:
            raise CaseFailed(result.evidence)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CaseFailed):
            return (f"{self.case.id}: {self.case.title}\n[{self.case.section}] \u201c{self.case.quote}\u201d\n"
                    f"\n{excinfo.value}")
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return "cni-conformance", None, f"conformance[{self.case.id}]"


def pytest_configure(config):
    config._cni_conformance = _SuiteHolder(config)
    config.add_cleanup(config._cni_conformance.close)


def pytest_collection_modifyitems(session, config, items):
    if not _setting(config, "plugin"):
        return
    holder = config._cni_conformance
    # In suite order: later cases (leaks) depend on the earlier ones having run.
    items.extend(ConformanceCase.from_parent(session, name=f"conformance[{case.id}]", nodeid=f"conformance[{case.id}]",
                                             case=case, holder=holder)
                 for case in CASES)


@pytest.fixture(scope="session")
def cni_suite(pytestconfig):
    """The running conformance Suite (lab, target); skips when no --cni-plugin is configured."""
    if not _setting(pytestconfig, "plugin"):
        pytest.skip("no CNI plugin configured: give --cni-plugin PATH or the cni_plugin ini setting")
    return pytestconfig._cni_conformance.get()
