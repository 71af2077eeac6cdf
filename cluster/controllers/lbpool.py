"""LoadBalancer addresses from a configured pool: the cloud-controller's part of a Service.

As a bare-metal load-balancer provider (MetalLB's layer-2 mode) does it: each Service of type
LoadBalancer gets one address from the pool into `status.loadBalancer.ingress`; `spec.loadBalancerIP`
is honoured when it is in the pool and free; a Service with a `loadBalancerClass` belongs to
another implementation and is left alone. With no pool configured nothing is assigned and the
Service stays `<pending>`, as on a cluster without a load-balancer provider.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cluster.controllers.objects import creation_key, name_of, namespace_of


def parse_pool(entries: list[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Pool entries, each a CIDR (`172.18.255.0/28`, without its network and broadcast
    addresses), a range (`172.18.255.10-172.18.255.20`) or one address, as the addresses they
    hold in order; ValueError names the bad entry."""
    addresses: list = []
    for entry in entries:
        text = entry.strip()
        try:
            if "-" in text:
                first, last = (ipaddress.ip_address(x.strip()) for x in text.split("-", 1))
                if first.version != last.version or int(last) < int(first):
                    raise ValueError
                addresses += [ipaddress.ip_address(i) for i in range(int(first), int(last) + 1)]
            elif "/" in text:
                # A CIDR's network and broadcast addresses are not handed out (MetalLB's
                # avoidBuggyIPs; clients on the segment treat them specially); /31 and /32 have none.
                net = ipaddress.ip_network(text, strict=False)
                addresses += list(net.hosts()) if net.num_addresses > 2 else list(net)
            else:
                addresses.append(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"loadBalancer pool entry {entry!r}: expected a CIDR"
                             " (172.18.255.0/28), a range (172.18.255.10-172.18.255.20) or an"
                             " address") from None
    return list(dict.fromkeys(addresses))


def is_ours(service: dict) -> bool:
    spec = service.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def ingress_ips(service: dict) -> list[str]:
    lb = (service.get("status") or {}).get("loadBalancer") or {}
    return [i["ip"] for i in lb.get("ingress") or [] if i.get("ip")]


@dataclass
class Assignment:
    """The `status.loadBalancer` a Service should have; `event` says why it has no address."""

    load_balancer: dict
    event: str = ""


class LoadBalancerPool:
    def __init__(self, entries: list[str] | None = None):
        self._addresses = parse_pool(entries or [])
        self._members = {str(a) for a in self._addresses}
        self._owner: dict[str, str] = {}  # address -> namespace/name

    @property
    def configured(self) -> bool:
        return bool(self._addresses)

    def owner_of(self, ip: str) -> str | None:
        return self._owner.get(ip)

    def release(self, service_key: str) -> list[str]:
        """Free whatever `namespace/name` holds; the addresses freed."""
        freed = [ip for ip, who in self._owner.items() if who == service_key]
        for ip in freed:
            del self._owner[ip]
        return freed

    def assign(self, service: dict) -> Assignment | None:
        """The `status.loadBalancer` a Service should carry, or None when it is not ours to set.
        Keeps an address the Service already holds; with no pool the status stays empty."""
        key = f"{namespace_of(service)}/{name_of(service)}"
        if not is_ours(service):
            return Assignment({}) if self.release(key) else None
        if not self.configured:
            return Assignment({})
        requested = (service.get("spec") or {}).get("loadBalancerIP") or ""
        held = [ip for ip in ingress_ips(service) if self._owner.get(ip) == key]
        if held and (not requested or requested in held):
            return Assignment(_status(held[0]))
        self.release(key)
        if requested:
            if requested not in self._members:
                return Assignment({}, f"Failed to allocate IP for \"{key}\": \"{requested}\" is"
                                      " not allowed in config")
            if requested in self._owner:
                return Assignment({}, f"Failed to allocate IP for \"{key}\": \"{requested}\" is"
                                      f" already in use by \"{self._owner[requested]}\"")
            ip = requested
        else:
            ip = next((str(a) for a in self._addresses if str(a) not in self._owner), None)
            if ip is None:
                return Assignment({}, f"Failed to allocate IP for \"{key}\": no available IPs")
        self._owner[ip] = key
        return Assignment(_status(ip))

    @classmethod
    def from_services(cls, entries: list[str] | None, services: list[dict]
                      ) -> tuple["LoadBalancerPool", list[dict]]:
        """The pool as stored Services leave it (oldest first keeps a duplicated address), and
        the Services whose stored address must be reassigned."""
        pool = cls(entries)
        to_fix = []
        for svc in sorted(services, key=creation_key):
            key = f"{namespace_of(svc)}/{name_of(svc)}"
            for ip in ingress_ips(svc) if is_ours(svc) else []:
                if ip in pool._members and ip not in pool._owner:
                    pool._owner[ip] = key
                else:
                    to_fix.append(svc)
                    break
        return pool, to_fix


def _status(ip: str) -> dict:
    return {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
