"""Runs the cases against one plugin: sets up the lab, resolves the target, decides which cases
apply, times each one, turns its outcome into a `CaseResult`, and always tears the lab down.

`run_suite()` is the one-call API (the CLI uses it); `Suite` runs case by case (the pytest
plugin uses it, one test per case)."""

import os
import time
import traceback

from cni import runtime, spec
from cni.conformance import cases as casemod
from cni.conformance.lab import Lab
from cni.conformance.report import FAIL, PASS, SKIP, CaseResult, Report
from cni.conformance.target import CHAIN_PARTNER, ConformanceError, check_plugin, find_in_path, resolve

__all__ = ["ConformanceError", "Run", "Suite", "run_suite", "select", "skip_reason"]


def skip_reason(case, target):
    """Why CASE does not apply to TARGET, or None when it does."""
    version = target.cni_version
    key = spec.version_tuple(version)
    for need in case.needs:
        if need == "CHECK" and key < (0, 4, 0):
            return f"CHECK exists from spec 0.4.0; testing {version}"
        if need in ("GC", "STATUS") and key < (1, 1, 0):
            claims = (f"; {target.type} claims {', '.join(target.supported)}"
                      if target.supported and "1.1.0" not in target.supported else "")
            return f"{need} exists from spec 1.1.0; testing {version}{claims}"
        if need == "interfaces" and key < (0, 3, 0):
            return f"results before spec 0.3.0 list no interfaces; testing {version}"
        if need == "host-local" and target.ipam_type != "host-local":
            return f"reuse is checked through host-local's ranges; the conf's ipam.type is {target.ipam_type!r}"
        if need == "chain" and target.chain is None:
            return f"nothing to chain with: the conf has one plugin and there is no {CHAIN_PARTNER} in CNI_PATH"
    return None


def select(only=None):
    """The cases whose id equals or starts with one of ONLY (all when None), in suite order."""
    if not only:
        return list(casemod.CASES)
    chosen = [c for c in casemod.CASES if any(c.id == o or c.id.startswith(o.rstrip(".") + ".") for o in only)]
    unknown = [o for o in only if not any(c.id == o or c.id.startswith(o.rstrip(".") + ".") for c in casemod.CASES)]
    if unknown:
        raise ConformanceError(f"unknown case {', '.join(unknown)}: expected ids or prefixes of "
                               f"{', '.join(c.id for c in casemod.CASES)}")
    return chosen


class Run:
    """What the cases share: the lab, the target, the outcomes so far, and lazily made things."""

    def __init__(self, lab, target, version_invocation):
        self.lab = lab
        self.target = target
        self.version_invocation = version_invocation
        self.outcomes = {}
        self.baseline = lab.snapshot()
        self._primary = None
        self._scratch = None
        self._claims = {}
        self._settled = None
        self._settle_failures = []

    def primary(self):
        """The attachment the add.* and check.after-add cases look at (one ADD for all)."""
        if self._primary is None:
            att = self.lab.attach(self.target.conf)
            self._primary = att
        att = self._primary
        if not att.add.ok or att.result is None:
            raise casemod.Failed(f"ADD did not succeed: {att.add.describe()}")
        return att

    def scratch(self):
        """A container netns for the error cases (they must not create anything in it)."""
        if self._scratch is None:
            self._scratch = self.lab.container()
        return self._scratch

    def passed(self, case_id):
        return self.outcomes.get(case_id) == PASS

    def claims(self, type_name):
        """The supportedVersions of another plugin in CNI_PATH (a chain partner)."""
        if type_name not in self._claims:
            path = find_in_path(type_name, self.lab.cni_path)
            inv = self.lab.invoke("VERSION", {"cniVersion": runtime.CURRENT_VERSION}, plugin=path,
                                  drop=("CNI_PATH",))
            doc = inv.json() or {}
            self._claims[type_name] = [v for v in doc.get("supportedVersions") or [] if v in spec.SPEC_VERSIONS]
        return self._claims[type_name]

    def settled(self):
        """The host's state once every attachment still held was DELeted (done once)."""
        if self._settled is None:
            self._settle_failures = self.lab.release_all()
            self._settled = self.lab.snapshot()
        return self._settled

    def settle_notes(self):
        return "; ".join(f"DEL failed: {inv.describe()}" for inv in self._settle_failures)


class Suite:
    """One plugin under test, case by case: `open()`, `run_case()` for each, `close()`.

    PLUGIN is the executable; CONF a .conf/.json/.conflist (default: a bridge-style conf with
    host-local IPAM); CNI_VERSION the version to test (default: the newest the plugin claims,
    capped by the conf's); ENV extra environment for every plugin execution."""

    def __init__(self, plugin, conf=None, cni_version=None, env=None, prefix=None):
        self.plugin = check_plugin(plugin)
        self.conf_path = conf
        self.requested_version = cni_version
        self.env = env
        self.prefix = prefix
        self.lab = None
        self.run = None
        self.results = []

    @property
    def target(self):
        return self.run.target

    def open(self):
        self.lab = Lab(self.plugin, [os.path.dirname(self.plugin)], env=self.env, prefix=self.prefix)
        try:
            # As libcni asks: its own newest version on stdin, only CNI_COMMAND in the environment.
            inv = self.lab.invoke("VERSION", {"cniVersion": runtime.CURRENT_VERSION}, drop=("CNI_PATH",))
            doc = inv.json() if inv.ok else None
            supported = doc.get("supportedVersions") if doc else None
            supported = [v for v in supported if isinstance(v, str)] if isinstance(supported, list) else []
            target = resolve(self.plugin, os.path.basename(self.plugin), supported, self.conf_path,
                             self.requested_version, self.lab.data_dir)
            self.lab.cni_path = target.cni_path
            self.run = Run(self.lab, target, inv)
        except BaseException:
            self.close()
            raise
        return self

    def run_case(self, case):
        start = time.monotonic()
        reason = skip_reason(case, self.run.target)
        if reason:
            status, evidence = SKIP, reason
        else:
            try:
                status, evidence = PASS, case.fn(self.run)
            except casemod.Failed as e:
                status, evidence = FAIL, str(e)
            except casemod.Skipped as e:
                status, evidence = SKIP, str(e)
            except Exception as e:  # a kernel or suite error: still one case's failure, with its trace
                status = FAIL
                evidence = (f"the suite could not complete the case: {type(e).__name__}: {e}\n"
                            + "".join(traceback.format_exception(e)[-3:]).rstrip())
        self.run.outcomes[case.id] = status
        result = CaseResult(case.id, case.title, case.section, case.quote, status, evidence,
                            (time.monotonic() - start) * 1000)
        self.results.append(result)
        return result

    def report(self):
        t = self.run.target
        return Report(plugin=self.plugin, cni_version=t.cni_version, conf_source=t.conf_source,
                      cni_path=t.cni_path, supported_versions=t.supported, cases=list(self.results))

    def close(self):
        if self.lab is not None:
            self.lab.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


def run_suite(plugin, conf=None, cni_version=None, env=None, only=None, prefix=None):
    """Run the selected cases (all by default) against PLUGIN; returns the Report.
    Raises ConformanceError for unusable inputs. Everything the suite creates is removed,
    also when a case fails or the run is interrupted."""
    chosen = select(only)
    with Suite(plugin, conf=conf, cni_version=cni_version, env=env, prefix=prefix) as suite:
        for case in chosen:
            suite.run_case(case)
        return suite.report()
