"""The Pod Security Standards: upstream's baseline and restricted checks, pure functions of a pod.

Each check returns None or (reason, detail) worded as `k8s.io/pod-security-admission/policy`
words it. Checks run in upstream's order: the baseline checks, then at baseline the baseline
checks that restricted ones replace, or at restricted the restricted checks. A check that first
appeared in a later Kubernetes minor is skipped when a namespace pins an older `-version`.
"""
from __future__ import annotations

import re
from typing import Callable

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LATEST = "latest"
_VERSION = re.compile(r"^v1\.(0|[1-9][0-9]*)$")

Result = tuple[str, str] | None


def parse_level(text: str) -> tuple[str, str]:
    """(level, error); an invalid level evaluates as restricted, as upstream fails closed."""
    if text in LEVELS:
        return text, ""
    return RESTRICTED, "must be one of privileged, baseline, restricted"


def parse_version(text: str) -> tuple[int | None, str]:
    """(minor, error) of "v1.N"; None means latest."""
    if text == LATEST:
        return None, ""
    match = _VERSION.match(text)
    if match:
        return int(match.group(1)), ""
    return None, 'must be "latest" or "v1.x"'


def _plural(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def _quote(items) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _containers(spec: dict) -> list[dict]:
    return (list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
            + list(spec.get("ephemeralContainers") or []))


def _sc(obj: dict) -> dict:
    return obj.get("securityContext") or {}


def _setters(pod_bad: bool, containers: list[str]) -> list[str]:
    setters = ["pod"] if pod_bad else []
    if containers:
        setters.append(f"{_plural('container', 'containers', len(containers))} {_quote(containers)}")
    return setters


def app_armor_profile(meta: dict, spec: dict) -> Result:
    bad = []
    prefix = "container.apparmor.security.beta.kubernetes.io/"
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(prefix) and value and value != "runtime/default" and not value.startswith("localhost/"):
            bad.append(f'{key}="{value}"')
    for where, sc in [("pod", _sc(spec))] + [(f'container "{c.get("name")}"', _sc(c)) for c in _containers(spec)]:
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            bad.append(f'{where} securityContext.appArmorProfile.type="Unconfined"')
    if bad:
        return (_plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(bad)),
                ", ".join(sorted(bad)))
    return None


def host_namespaces(meta: dict, spec: dict) -> Result:
    used = [k for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    return ("host namespaces", ", ".join(f"{k}=true" for k in used)) if used else None


def host_ports(meta: dict, spec: dict) -> Result:
    bad, ports = [], set()
    for c in _containers(spec):
        used = [p["hostPort"] for p in c.get("ports") or [] if p.get("hostPort")]
        if used:
            bad.append(c.get("name"))
            ports.update(str(p) for p in used)
    if not bad:
        return None
    return ("hostPort", f"{_plural('container', 'containers', len(bad))} {_quote(bad)} "
                        f"{_plural('uses', 'use', len(bad))} {_plural('hostPort', 'hostPorts', len(ports))} "
                        + ", ".join(sorted(ports)))


def host_probes_and_lifecycle(meta: dict, spec: dict) -> Result:
    bad, hosts = set(), set()
    for c in _containers(spec):
        handlers = [c.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
        handlers += [(c.get("lifecycle") or {}).get(h) for h in ("postStart", "preStop")]
        for handler in filter(None, handlers):
            for kind in ("httpGet", "tcpSocket"):
                host = (handler.get(kind) or {}).get("host")
                if host:
                    bad.add(c.get("name"))
                    hosts.add(host)
    if not bad:
        return None
    return ("probe or lifecycle host",
            f"{_plural('container', 'containers', len(bad))} {_quote(sorted(bad))} "
            f"{_plural('uses', 'use', len(bad))} "
            f"{_plural('probe or lifecycle host', 'probe or lifecycle hosts', len(hosts))} {_quote(sorted(hosts))}")


def privileged(meta: dict, spec: dict) -> Result:
    bad = [c.get("name") for c in _containers(spec) if _sc(c).get("privileged")]
    if bad:
        return ("privileged", f"{_plural('container', 'containers', len(bad))} {_quote(bad)} "
                              "must not set securityContext.privileged=true")
    return None


def proc_mount(meta: dict, spec: dict) -> Result:
    bad, types = [], set()
    for c in _containers(spec):
        mount = _sc(c).get("procMount")
        if mount is not None and mount != "Default":
            bad.append(c.get("name"))
            types.add(mount)
    if bad:
        return ("procMount", f"{_plural('container', 'containers', len(bad))} {_quote(bad)} "
                             f"must not set securityContext.procMount to {_quote(sorted(types))}")
    return None


_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t"}


def se_linux_options(meta: dict, spec: dict) -> Result:
    bad_types: set[str] = set()
    flags = {"user": False, "role": False}

    def invalid(options: dict | None) -> bool:
        if not options:
            return False
        bad = False
        if options.get("type", "") not in _SELINUX_TYPES:
            bad_types.add(options["type"])
            bad = True
        for key in ("user", "role"):
            if options.get(key):
                flags[key] = bad = True
        return bad

    pod_bad = invalid(_sc(spec).get("seLinuxOptions"))
    bad = [c.get("name") for c in _containers(spec) if invalid(_sc(c).get("seLinuxOptions"))]
    setters = _setters(pod_bad, bad)
    if not setters:
        return None
    data = []
    if bad_types:
        data.append(f"{_plural('type', 'types', len(bad_types))} {_quote(sorted(bad_types))}")
    data += [f"{key} may not be set" for key in ("user", "role") if flags[key]]
    return ("seLinuxOptions",
            f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}")


_SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                 "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
                 "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
                 "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                 "net.ipv4.tcp_keepalive_probes"}


def sysctls(meta: dict, spec: dict) -> Result:
    bad = [s.get("name") for s in _sc(spec).get("sysctls") or [] if s.get("name") not in _SAFE_SYSCTLS]
    return ("forbidden sysctls", ", ".join(bad)) if bad else None


def windows_host_process(meta: dict, spec: dict) -> Result:
    def host_process(sc: dict) -> bool:
        return bool((sc.get("windowsOptions") or {}).get("hostProcess"))

    setters = _setters(host_process(_sc(spec)),
                       [c.get("name") for c in _containers(spec) if host_process(_sc(c))])
    if setters:
        return ("hostProcess",
                f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true")
    return None


_DEFAULT_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def capabilities_baseline(meta: dict, spec: dict) -> Result:
    bad, caps = [], set()
    for c in _containers(spec):
        added = [a for a in (_sc(c).get("capabilities") or {}).get("add") or []
                 if a not in _DEFAULT_CAPABILITIES]
        if added:
            bad.append(c.get("name"))
            caps.update(added)
    if bad:
        return ("non-default capabilities",
                f"{_plural('container', 'containers', len(bad))} {_quote(bad)} "
                f"must not include {_quote(sorted(caps))} in securityContext.capabilities.add")
    return None


def host_path_volumes(meta: dict, spec: dict) -> Result:
    bad = [v.get("name") for v in spec.get("volumes") or [] if v.get("hostPath") is not None]
    return ("hostPath volumes", f"{_plural('volume', 'volumes', len(bad))} {_quote(bad)}") if bad else None


def _valid_seccomp(profile_type) -> bool:
    return profile_type in ("RuntimeDefault", "Localhost")


def _seccomp(spec: dict, require: bool) -> Result:
    bad_values: set[str] = set()
    pod_profile = _sc(spec).get("seccompProfile")
    pod_bad = pod_profile is not None and not _valid_seccomp(pod_profile.get("type"))
    if pod_bad:
        bad_values.add(str(pod_profile.get("type")))
    explicit, implicit = [], []
    for c in _containers(spec):
        profile = _sc(c).get("seccompProfile")
        if profile is not None:
            if not _valid_seccomp(profile.get("type")):
                explicit.append(c.get("name"))
                bad_values.add(str(profile.get("type")))
        elif pod_profile is None or pod_bad:
            implicit.append(c.get("name"))
    setters = _setters(pod_bad, explicit)
    if setters:
        return ("seccompProfile", f"{' and '.join(setters)} must not set securityContext.seccompProfile.type "
                                  f"to {_quote(sorted(bad_values))}")
    if require and implicit:
        return ("seccompProfile", f"pod or {_plural('container', 'containers', len(implicit))} "
                                  f"{_quote(implicit)} must set securityContext.seccompProfile.type to "
                                  '"RuntimeDefault" or "Localhost"')
    return None


def seccomp_profile_baseline(meta: dict, spec: dict) -> Result:
    return _seccomp(spec, require=False)


def allow_privilege_escalation(meta: dict, spec: dict) -> Result:
    bad = [c.get("name") for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if bad:
        return ("allowPrivilegeEscalation != false",
                f"{_plural('container', 'containers', len(bad))} {_quote(bad)} "
                "must set securityContext.allowPrivilegeEscalation=false")
    return None


def capabilities_restricted(meta: dict, spec: dict) -> Result:
    missing_drop, adding, caps = [], [], set()
    for c in _containers(spec):
        capabilities = _sc(c).get("capabilities")
        if capabilities is None:
            missing_drop.append(c.get("name"))
            continue
        if "ALL" not in (capabilities.get("drop") or []):
            missing_drop.append(c.get("name"))
        added = [a for a in capabilities.get("add") or [] if a != "NET_BIND_SERVICE"]
        if added:
            adding.append(c.get("name"))
            caps.update(added)
    details = []
    if missing_drop:
        details.append(f"{_plural('container', 'containers', len(missing_drop))} {_quote(missing_drop)} "
                       'must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_plural('container', 'containers', len(adding))} {_quote(adding)} "
                       f"must not include {_quote(sorted(caps))} in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


_ALLOWED_VOLUME_SOURCES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                           "persistentVolumeClaim", "projected", "secret")


def restricted_volumes(meta: dict, spec: dict) -> Result:
    bad = sorted({v.get("name") for v in spec.get("volumes") or []
                  if not any(v.get(source) is not None for source in _ALLOWED_VOLUME_SOURCES)})
    if bad:
        # upstream prints the list with Go's %q: ["a" "b"]
        return ("restricted volume types", "volumes [" + " ".join(f'"{n}"' for n in bad) + "] have restricted types")
    return None


def run_as_non_root(meta: dict, spec: dict) -> Result:
    pod_value = _sc(spec).get("runAsNonRoot")
    explicit, implicit = [], []
    for c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is not None:
            if not value:
                explicit.append(c.get("name"))
        elif pod_value is not True:
            implicit.append(c.get("name"))
    setters = _setters(pod_value is False, explicit)
    if setters:
        return ("runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false")
    if implicit:
        return ("runAsNonRoot != true", f"pod or {_plural('container', 'containers', len(implicit))} "
                                        f"{_quote(implicit)} must set securityContext.runAsNonRoot=true")
    return None


def run_as_user(meta: dict, spec: dict) -> Result:
    setters = _setters(_sc(spec).get("runAsUser") == 0,
                       [c.get("name") for c in _containers(spec) if _sc(c).get("runAsUser") == 0])
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def seccomp_profile_restricted(meta: dict, spec: dict) -> Result:
    return _seccomp(spec, require=True)


Check = Callable[[dict, dict], Result]
# (check, minimum minor version), in upstream's registration order within each group
BASELINE_CHECKS: list[tuple[Check, int]] = [
    (app_armor_profile, 0), (host_namespaces, 0), (host_ports, 0), (host_probes_and_lifecycle, 34),
    (privileged, 0), (proc_mount, 0), (se_linux_options, 0), (sysctls, 0), (windows_host_process, 0)]
# baseline checks that restricted checks replace at the restricted level
OVERLAPPING_BASELINE_CHECKS: list[tuple[Check, int]] = [
    (capabilities_baseline, 0), (host_path_volumes, 0), (seccomp_profile_baseline, 19)]
RESTRICTED_CHECKS: list[tuple[Check, int]] = [
    (allow_privilege_escalation, 8), (capabilities_restricted, 22), (restricted_volumes, 0),
    (run_as_non_root, 0), (run_as_user, 23), (seccomp_profile_restricted, 19)]


def evaluate(level: str, minor: int | None, meta: dict, spec: dict) -> list[tuple[str, str]]:
    """The (reason, detail) of every check the pod fails at `level`, version v1.`minor` (None: latest)."""
    if level == PRIVILEGED:
        return []
    checks = BASELINE_CHECKS + (OVERLAPPING_BASELINE_CHECKS if level == BASELINE else RESTRICTED_CHECKS)
    failures = []
    for check, since in checks:
        if minor is not None and minor < since:
            continue
        result = check(meta, spec)
        if result:
            failures.append(result)
    return failures


def describe(failures: list[tuple[str, str]]) -> str:
    """`reason (detail), reason (detail)` as upstream's ForbiddenDetail joins them."""
    return ", ".join(f"{reason} ({detail})" if detail else reason for reason, detail in failures)
