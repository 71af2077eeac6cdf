"""host-local compatible IPAM: address allocation from ranges, persisted in the reference's layout.

On disk, exactly as containernetworking/plugins' host-local writes it, so either can take over
the other's state: `<dataDir>/<network name>/<ip>` holds "<containerID>\\r\\n<ifname>",
`last_reserved_ip.<range set index>` holds the last address handed out from that range set,
and `lock` is flock()ed for the whole of every allocation, release and GC. Allocation is
round-robin: it starts after the last reserved address and wraps once around the range set;
the network address, the broadcast address (rangeEnd defaults below it) and the gateway are
never handed out.

Only the standard library is used (`ipaddress`, not netaddr): this module runs inside
short-lived plugin processes where import time matters.
"""

import contextlib
import fcntl
import ipaddress
import os

from cni import spec
from cni.spec import CNIError

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LINE_BREAK = "\r\n"
_LAST_RESERVED = "last_reserved_ip."


class Range:
    """One {subnet, rangeStart, rangeEnd, gateway} entry, with the reference's defaults."""

    def __init__(self, doc, where):
        if not isinstance(doc, dict) or not doc.get("subnet"):
            raise CNIError(spec.ERR_INVALID_NETCONF, f"invalid IPAM range {where}: missing subnet",
                           'expected {"subnet": "10.22.0.0/24", ...}')
        try:
            self.subnet = ipaddress.ip_network(doc["subnet"], strict=True)
        except ValueError as e:
            raise CNIError(spec.ERR_INVALID_NETCONF, f"invalid subnet {doc['subnet']!r} in IPAM range {where}",
                           f"{e}; expected a network address with its prefix length") from None
        if self.subnet.num_addresses < 4:
            raise CNIError(spec.ERR_INVALID_NETCONF, f"network {self.subnet} too small to allocate from",
                           f"IPAM range {where}: use a prefix of /30 or shorter")
        last = self.subnet.broadcast_address
        if self.subnet.version == 4:
            last -= 1
        self.start = self._address(doc, "rangeStart", where, self.subnet.network_address + 1)
        self.end = self._address(doc, "rangeEnd", where, last)
        self.gateway = self._address(doc, "gateway", where, self.subnet.network_address + 1, in_range=False)
        if self.start > self.end:
            raise CNIError(spec.ERR_INVALID_NETCONF, f"rangeStart {self.start} is after rangeEnd {self.end}",
                           f"IPAM range {where}")

    def _address(self, doc, field, where, default, in_range=True):
        value = doc.get(field)
        if not value:
            return default
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise CNIError(spec.ERR_INVALID_NETCONF, f"invalid {field} {value!r} in IPAM range {where}",
                           "expected an IP address") from None
        if address not in self.subnet:
            raise CNIError(spec.ERR_INVALID_NETCONF, f"{field} {value} not in network {self.subnet}",
                           f"IPAM range {where}")
        if in_range and (address == self.subnet.network_address
                         or (self.subnet.version == 4 and address == self.subnet.broadcast_address)):
            raise CNIError(spec.ERR_INVALID_NETCONF, f"{field} {value} is the network or broadcast address",
                           f"IPAM range {where}")
        return address

    def __contains__(self, address):
        return address.version == self.subnet.version and self.start <= address <= self.end

    def __str__(self):
        return f"{self.start}-{self.end}"


class HostLocalConfig:
    """The `ipam` section of a network config, for network NAME."""

    def __init__(self, ipam, name):
        self.name = name
        self.data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
        self.routes = ipam.get("routes") or []
        raw_sets = list(ipam.get("ranges") or [])
        if ipam.get("subnet"):
            # The legacy single-range form comes first, as the reference's Canonicalize puts it.
            legacy = {k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if ipam.get(k)}
            raw_sets.insert(0, [legacy])
        if not raw_sets:
            raise CNIError(spec.ERR_INVALID_NETCONF, "no IP ranges specified",
                           'ipam needs "ranges": [[{"subnet": "10.22.0.0/24"}]] or "subnet"')
        self.range_sets = []
        for i, raw in enumerate(raw_sets):
            if not isinstance(raw, list) or not raw:
                raise CNIError(spec.ERR_INVALID_NETCONF, f"invalid IPAM range set {i}",
                               "each entry of ranges must be a non-empty list of ranges")
            self.range_sets.append([Range(r, f"{i}.{j}") for j, r in enumerate(raw)])
        self._check_overlaps()

    def _check_overlaps(self):
        seen = []
        for i, rs in enumerate(self.range_sets):
            for r in rs:
                for j, other in seen:
                    if r.subnet.version == other.subnet.version and r.start <= other.end and other.start <= r.end:
                        raise CNIError(spec.ERR_INVALID_NETCONF, f"range set {i} overlaps with {j}",
                                       f"{r} and {other}")
                seen.append((i, r))

    @property
    def network_dir(self):
        return os.path.join(self.data_dir, self.name)


def _candidates(range_set, last_reserved):
    """The reference's RangeIter: every address once, starting after LAST_RESERVED if it is in
    the set, else at the first rangeStart; gateways skipped."""
    start_idx, cur = 0, None
    if last_reserved is not None:
        for i, r in enumerate(range_set):
            if last_reserved in r:
                start_idx, cur = i, last_reserved
                break
    idx, first = start_idx, None
    while True:
        r = range_set[idx]
        if cur is None:
            cur = r.start
        elif cur == r.end:
            idx = (idx + 1) % len(range_set)
            r = range_set[idx]
            cur = r.start
        else:
            cur += 1
        if first is None:
            first = cur
        elif cur == first:
            return
        if cur != r.gateway:
            yield r, cur


class Store:
    """The per-network directory: reservations, last reserved addresses and the lock."""

    def __init__(self, config):
        self.config = config
        self.dir = config.network_dir

    @contextlib.contextmanager
    def locked(self):
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDONLY | os.O_CREAT, 0o750)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def reservations(self):
        """{ip string: (containerID, ifname)} for every reserved address."""
        found = {}
        with contextlib.suppress(FileNotFoundError), os.scandir(self.dir) as entries:
            for entry in entries:
                if entry.name == "lock" or entry.name.startswith(_LAST_RESERVED):
                    continue
                # Every ADD reads every lease (as the reference's GetByID does): raw os calls
                # cost a fifth of io.open's per file. Binary: the \r\n is part of the format.
                try:
                    fd = os.open(entry.path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    data = os.read(fd, 4096).decode("utf-8", errors="replace")
                except IsADirectoryError:
                    continue
                finally:
                    os.close(fd)
                cid, _, ifname = data.strip().partition(LINE_BREAK)
                found[entry.name] = (cid.strip(), ifname.strip())
        return found

    def last_reserved(self, index):
        try:
            with open(os.path.join(self.dir, f"{_LAST_RESERVED}{index}")) as f:
                return ipaddress.ip_address(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def reserve(self, address, container_id, ifname, index):
        """Claim ADDRESS; False when it is already taken."""
        if not _create_whole(self.dir, str(address), f"{container_id}{LINE_BREAK}{ifname}".encode()):
            return False
        with open(os.path.join(self.dir, f"{_LAST_RESERVED}{index}"), "w") as f:
            f.write(str(address))
        return True

    def remove(self, address):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, address))


def _create_whole(directory, name, data):
    """Create DIRECTORY/NAME holding DATA; False if it exists. The file appears whole or not at
    all: written unnamed (O_TMPFILE), then linked in. A plugin killed between creating a named
    file and writing it (its kubelet SIGKILLed mid-ADD) would leave an empty reservation that
    no container ID matches, so no DEL would ever free its address."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644, dir_fd=dir_fd)
            unnamed = True
        except OSError:  # a filesystem without O_TMPFILE: create, then write
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
            except FileExistsError:
                return False
            unnamed = False
        try:
            os.write(fd, data)
            if unnamed:
                # dst_dir_fd makes os.link call linkat(AT_SYMLINK_FOLLOW): the link names the file
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd)
        except FileExistsError:
            return False
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    return True


def _matches(owner, container_id, ifname):
    cid, owner_ifname = owner
    # Files written before ifnames were recorded hold the container ID alone.
    return cid == container_id and owner_ifname in (ifname, "")


def allocate(config, container_id, ifname):
    """Reserve one address per range set for (CONTAINER_ID, IFNAME); returns the IPAM result."""
    store = Store(config)
    ips = []
    with store.locked():
        reservations = store.reservations()
        for index, range_set in enumerate(config.range_sets):
            for address, owner in reservations.items():
                ip = ipaddress.ip_address(address)
                if _matches(owner, container_id, ifname) and any(ip in r for r in range_set):
                    raise CNIError(spec.ERR_INTERNAL,
                                   f"failed to allocate for range {index}: {address} has been allocated to "
                                   f"{container_id}, duplicate allocation is not allowed",
                                   f"network {config.name}, interface {ifname}")
            for r, candidate in _candidates(range_set, store.last_reserved(index)):
                if str(candidate) not in reservations and store.reserve(candidate, container_id, ifname, index):
                    ips.append({"address": f"{candidate}/{r.subnet.prefixlen}", "gateway": str(r.gateway)})
                    break
            else:
                for address in ips:
                    store.remove(address["address"].split("/")[0])
                ranges = ",".join(str(r) for r in range_set)
                raise CNIError(spec.ERR_INTERNAL,
                               f"failed to allocate for range {index}: no IP addresses available in range set: {ranges}",
                               f"network {config.name} (dataDir {config.data_dir})")
    return {"ips": ips, "routes": [dict(r) for r in config.routes], "dns": {}}


def release(config, container_id, ifname):
    """Free every address of (CONTAINER_ID, IFNAME); returns them. Releasing twice is a no-op."""
    store = Store(config)
    if not os.path.isdir(store.dir):
        return []
    freed = []
    with store.locked():
        for address, owner in store.reservations().items():
            if _matches(owner, container_id, ifname):
                store.remove(address)
                freed.append(address)
    return freed


def check(config, container_id, ifname):
    """CHECK: the attachment still holds an address (host-local's own CHECK)."""
    store = Store(config)
    owners = store.reservations().values() if os.path.isdir(store.dir) else ()
    if not any(_matches(owner, container_id, ifname) for owner in owners):
        raise CNIError(spec.ERR_INTERNAL, f"host-local: Failed to find address added by container {container_id}",
                       f"network {config.name}, interface {ifname}")


def gc(config, valid):
    """Free every reservation whose (containerID, ifname) is not in VALID; returns
    [(containerID, ifname, address)] of what was freed."""
    store = Store(config)
    if not os.path.isdir(store.dir):
        return []
    valid = set(valid)
    valid_ids = {cid for cid, _ in valid}
    freed = []
    with store.locked():
        for address, owner in store.reservations().items():
            if owner not in valid and not (owner[1] == "" and owner[0] in valid_ids):
                store.remove(address)
                freed.append((owner[0], owner[1], address))
    return freed


def has_free_address(config):
    """STATUS: every range set still has an address to hand out."""
    store = Store(config)
    taken = [ipaddress.ip_address(a) for a in store.reservations()] if os.path.isdir(store.dir) else []
    for range_set in config.range_sets:
        capacity = sum(int(r.end) - int(r.start) + 1 - (r.gateway in r) for r in range_set)
        used = sum(1 for ip in taken if any(ip in r for r in range_set))
        if used >= capacity:
            return False
    return True
