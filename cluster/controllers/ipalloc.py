"""ClusterIP allocation from the serviceCIDR: what the API server's Service REST storage does.

Upstream's `ipallocator.Range`: the network address (and, for IPv4, the broadcast address) is
never handed out; the first usable address belongs to the `kubernetes` Service, so random
allocation never picks it; an explicit `clusterIP` is honoured when free and in range, rejected
otherwise with upstream's message. `from_services` rebuilds the bitmap from stored Services after
a restart (upstream's repair controller), keeping the oldest owner of a duplicated address and
reporting the rest, so an address is never handed out twice.
"""
from __future__ import annotations

import ipaddress
import random

from cluster.api.errors import Cause, internal, invalid
from cluster.controllers.allocator import (AllocationError, AlreadyAllocated, NotInRange,
                                           OffsetBitmap, RangeFull, range_offset)
from cluster.controllers.objects import creation_key, name_of, namespace_of

HEADLESS = "None"


class ClusterIPAllocator:
    def __init__(self, cidr: str, rng: random.Random | None = None):
        self.network = ipaddress.ip_network(cidr, strict=False)
        total = self.network.num_addresses
        # not the network address; for IPv4 not the broadcast; IPv6 capped as upstream's bitmap
        usable = min(total, 65536) - 1 if self.network.version == 6 else total - 2
        self._base = int(self.network.network_address) + 1
        self.family = f"IPv{self.network.version}"
        self._bitmap = OffsetBitmap(max(usable, 0), range_offset(total, 16, 256, 16), rng,
                                    reserved=(0,))

    @property
    def cidr(self) -> str:
        return str(self.network)

    @property
    def kubernetes_service_ip(self) -> str:
        """The first usable address, which the apiserver gives the `default/kubernetes` Service."""
        return str(ipaddress.ip_address(self._base))

    def _slot(self, ip: str) -> int:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            addr = None
        slot = -1
        if addr is not None and addr.version == self.network.version:
            slot = int(addr) - self._base
        if not 0 <= slot < self._bitmap.size:
            raise NotInRange(f"the provided IP ({ip}) is not in the valid range."
                             f" The range of valid IPs is {self.cidr}")
        return slot

    def allocate(self, explicit: str | None = None) -> str:
        """`explicit` if free and in range (AlreadyAllocated, NotInRange otherwise), else a free
        address (RangeFull when there is none)."""
        if explicit is not None:
            if not self._bitmap.take(self._slot(explicit)):
                raise AlreadyAllocated("provided IP is already allocated")
            return explicit
        slot = self._bitmap.allocate_next()
        if slot is None:
            raise RangeFull("range is full")
        return str(ipaddress.ip_address(self._base + slot))

    def release(self, ip: str) -> None:
        try:
            self._bitmap.release(self._slot(ip))
        except NotInRange:
            pass

    def is_allocated(self, ip: str) -> bool:
        try:
            return self._slot(ip) in self._bitmap
        except NotInRange:
            return False

    def allocated(self) -> list[str]:
        return [str(ipaddress.ip_address(self._base + s)) for s in self._bitmap.used()]

    def free(self) -> int:
        """Addresses random allocation can still hand out."""
        return self._bitmap.free()

    @classmethod
    def from_services(cls, cidr: str, services: list[dict], rng: random.Random | None = None
                      ) -> tuple["ClusterIPAllocator", list[str]]:
        """The allocator as stored Services leave it, and one problem per Service that holds an
        address outside the range or one an older Service holds (upstream's repair messages)."""
        allocator = cls(cidr, rng)
        problems = []
        for svc in sorted(services, key=creation_key):
            for ip in (svc.get("spec") or {}).get("clusterIPs") or _single(svc):
                if ip == HEADLESS:
                    continue
                try:
                    address = ipaddress.ip_address(ip)
                except ValueError:
                    continue
                if address.version != allocator.network.version:
                    continue  # another family's allocator owns it
                who = f"{namespace_of(svc)}/{name_of(svc)}"
                try:
                    allocator.allocate(ip)
                except NotInRange:
                    problems.append(f"Cluster IP [{allocator.family}]: {ip} is not within the"
                                    f" configured Service CIDR {allocator.cidr}; please recreate"
                                    f" service {who}")
                except AlreadyAllocated:
                    problems.append(f"Cluster IP [{allocator.family}]: {ip} was assigned to"
                                    f" multiple services; please recreate service {who}")
        return allocator, problems


def _single(svc: dict) -> list[str]:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return [ip] if ip else []


def assign_cluster_ip(allocator: ClusterIPAllocator, service: dict,
                      old: dict | None = None) -> list[str]:
    """Fill `spec.clusterIP(s)`, `ipFamilies` and `ipFamilyPolicy` of a Service being created or
    updated, in place. Returns the addresses this call allocated (release them if the write fails);
    raises the APIError upstream answers with when an explicit address cannot be had."""
    spec = service.setdefault("spec", {})
    old_spec = (old or {}).get("spec") or {}
    old_ip = old_spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName":
        # an ExternalName Service has no ClusterIP; one it had is freed
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
        spec.pop("ipFamilies", None)
        spec.pop("ipFamilyPolicy", None)
        return []
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("ipFamilies", [allocator.family])
    wanted = spec.get("clusterIP") or (spec.get("clusterIPs") or [""])[0]
    if old_ip and (not wanted or wanted == old_ip):
        spec["clusterIP"], spec["clusterIPs"] = old_ip, [old_ip]
        return []
    if wanted == HEADLESS:
        spec["clusterIP"], spec["clusterIPs"] = HEADLESS, [HEADLESS]
        return []
    try:
        ip = allocator.allocate(wanted or None)
    except RangeFull as e:
        raise internal(f"failed to allocate a serviceIP: {e}") from e
    except AllocationError as e:
        raise invalid("Service", name_of(service), [Cause.invalid(
            "spec.clusterIPs", spec.get("clusterIPs") or [wanted],
            f"failed to allocate IP {wanted}: {e}")]) from e
    spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
    return [ip]


def released_cluster_ips(old: dict, new: dict | None = None) -> list[str]:
    """Addresses `old` held that `new` does not (all of them when the Service was deleted)."""
    def ips(svc):
        spec = (svc or {}).get("spec") or {}
        return {ip for ip in spec.get("clusterIPs") or _single(svc or {}) if ip and ip != HEADLESS}
    return sorted(ips(old) - ips(new))
