"""The conformance report: one result per case, a summary, and the two ways it is printed
(text for a terminal, JSON for CI). Pure data and formatting; nothing here touches the kernel."""

import dataclasses
import json

# Bumped when cases are added, removed or change what they enforce, so CI can pin it.
SUITE_VERSION = "1.0.0"

PASS, FAIL, SKIP = "pass", "fail", "skip"
STATUSES = (PASS, FAIL, SKIP)


@dataclasses.dataclass
class CaseResult:
    """The outcome of one case: its identity, the clause it enforces, what happened and why."""
    id: str
    title: str
    section: str
    quote: str
    status: str
    evidence: str
    duration_ms: float

    def to_json(self):
        return {"id": self.id, "title": self.title, "section": self.section, "quote": self.quote,
                "status": self.status, "evidence": self.evidence,
                "duration_ms": round(self.duration_ms, 1)}


@dataclasses.dataclass
class Report:
    """What one run of the suite found about one plugin at one spec version."""
    plugin: str
    cni_version: str
    conf_source: str
    cni_path: list
    supported_versions: list
    cases: list = dataclasses.field(default_factory=list)

    def summary(self):
        counts = {status: 0 for status in STATUSES}
        for case in self.cases:
            counts[case.status] += 1
        counts["total"] = len(self.cases)
        return counts

    def failed(self):
        return [case for case in self.cases if case.status == FAIL]

    def exit_code(self):
        """0 when no case failed (skips do not count), 1 otherwise."""
        return 1 if self.failed() else 0

    def to_json(self):
        return {"suiteVersion": SUITE_VERSION, "plugin": self.plugin, "cniVersion": self.cni_version,
                "conf": self.conf_source, "cniPath": self.cni_path,
                "supportedVersions": self.supported_versions,
                "cases": [case.to_json() for case in self.cases], "summary": self.summary()}

    def dumps(self):
        return json.dumps(self.to_json(), indent=2)

    def render_text(self, quotes=False):
        """Plain text: one line per case, then the evidence of each failure (and of skips);
        QUOTES adds each case's spec quote."""
        width = max((len(case.id) for case in self.cases), default=10)
        lines = [f"CNI conformance {SUITE_VERSION}: {self.plugin} at cniVersion {self.cni_version}",
                 f"  conf: {self.conf_source}", f"  CNI_PATH: {':'.join(self.cni_path)}",
                 f"  VERSION claims: {', '.join(self.supported_versions) or '(no answer)'}", ""]
        for case in self.cases:
            lines.append(f"{case.status.upper():4}  {case.id:<{width}}  {case.title}  "
                         f"[{case.section}] {case.duration_ms:.0f} ms")
            if quotes:
                lines.append(f"      \u201c{case.quote}\u201d")
            if case.status != PASS:
                lines.extend("      " + line for line in case.evidence.splitlines())
        s = self.summary()
        lines += ["", f"{s['pass']} passed, {s['fail']} failed, {s['skip']} skipped of {s['total']} cases"]
        return "\n".join(lines) + "\n"
