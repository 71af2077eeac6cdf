"""CNI conformance: runs any CNI plugin executable as a runtime would, in namespaces the suite
creates and removes, and checks it clause by clause against SPEC.md (1.0.0; 1.1.0 for GC and
STATUS). `run_suite()` returns a `Report`; `netsim cni conformance` prints it; the pytest plugin
(`-p cni.conformance.pytest_plugin`) turns each case into a test.

Modules: `cases` (the clauses), `schema` (shapes of results, errors, VERSION), `target` (what
is under test, from the user's options), `lab` (namespaces, exec, kernel reads), `runner`
(selection, skips, timing, teardown), `report` (text and JSON)."""

from cni.conformance.report import Report, SUITE_VERSION
from cni.conformance.runner import ConformanceError, Suite, run_suite

__all__ = ["ConformanceError", "Report", "SUITE_VERSION", "Suite", "run_suite"]
