"""Built-in containers served by one resident server in real pod namespaces, and process
containers started in a pod's namespaces (root)."""

import asyncio
import fcntl
import os
import secrets
import socket
import time

import pytest

from netsim import netns
from netsim.containers import http1, images, process, resident

SIOCGSKNS = 0x894C  # socket -> its network namespace
A_IP, B_IP = "10.213.77.1", "10.213.77.2"


def _configure(path, ifname, address):
    from pyroute2 import IPRoute
    with netns.enter(path):
        ipr = IPRoute()
        try:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            if ifname:
                idx = ipr.link_lookup(ifname=ifname)[0]
                ipr.addr("add", index=idx, address=address, prefixlen=24)
                ipr.link("set", index=idx, state="up")
        finally:
            ipr.close()


class Pod:
    def __init__(self, name, netns_path, uts_path, ip, log_dir):
        self.name, self.netns, self.uts, self.ip, self.log_dir = name, netns_path, uts_path, ip, log_dir

    def context(self):
        return resident.PodContext(namespace="default", name=self.name, node="node-1", ip=self.ip,
                                   netns=self.netns, uts=self.uts, log_dir=self.log_dir)


@pytest.fixture
def two_pods(tmp_path):
    """Pods A and B: network namespaces joined by a veth pair, each with its own UTS namespace."""
    tag = "t" + secrets.token_hex(3)
    made_ns, made_uts = [], []
    try:
        pods = []
        for suffix, ip in (("a", A_IP), ("b", B_IP)):
            name = f"{tag}{suffix}"
            path = netns.create(name)
            made_ns.append(name)
            uts = str(tmp_path / f"uts-{suffix}")
            netns.create_uts(uts, f"pod-{suffix}-{tag}")
            made_uts.append(uts)
            pods.append(Pod(f"pod-{suffix}-{tag}", path, uts, ip, str(tmp_path / f"logs-{suffix}")))
        from pyroute2 import IPRoute
        fd_b = os.open(pods[1].netns, os.O_RDONLY)
        try:
            with netns.enter(pods[0].netns):
                ipr = IPRoute()
                try:
                    ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd_b})
                finally:
                    ipr.close()
        finally:
            os.close(fd_b)
        _configure(pods[0].netns, "eth0", A_IP)
        _configure(pods[1].netns, "eth0", B_IP)
        yield pods
    finally:
        for name in made_ns:
            for pid in netns.processes_in(netns.netns_path(name)):
                process.stop(pid, grace=0.5)
            netns.delete(name)
        for path in made_uts:
            netns.delete_bound(path)


def sockets_in(path):
    """File descriptors of this process whose socket lives in the namespace bound at PATH."""
    want = netns.inode(path)
    found = []
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            ns_fd = fcntl.ioctl(fd, SIOCGSKNS)
        except OSError:
            continue
        try:
            if os.fstat(ns_fd).st_ino == want:
                found.append(fd)
        finally:
            os.close(ns_fd)
    return found


def _socket_in(pod, kind):
    with netns.enter(pod.netns):
        sock = socket.socket(socket.AF_INET, kind)
    sock.setblocking(False)
    return sock


async def http_get(pod, ip, port, path):
    """GET from inside POD's network namespace: (status, body)."""
    sock = _socket_in(pod, socket.SOCK_STREAM)
    await asyncio.get_running_loop().sock_connect(sock, (ip, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
    try:
        status, _, body = await asyncio.wait_for(http1.read_response(reader), 5)
    finally:
        writer.close()
    return status, body.decode()


async def udp_ask(pod, ip, port, text):
    loop = asyncio.get_running_loop()
    sock = _socket_in(pod, socket.SOCK_DGRAM)
    try:
        await loop.sock_connect(sock, (ip, port))
        await loop.sock_sendall(sock, text.encode())
        return (await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)).decode()
    finally:
        sock.close()


async def tcp_read(pod, ip, port):
    sock = _socket_in(pod, socket.SOCK_STREAM)
    await asyncio.get_running_loop().sock_connect(sock, (ip, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        return (await asyncio.wait_for(reader.read(), 5)).decode()
    finally:
        writer.close()


def test_resident_server_serves_pods_in_their_namespaces(two_pods):
    a, b = two_pods
    exits = []
    netexec = images.resolve({"name": "netexec", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                              "args": ["netexec", "--http-port=8080", "--udp-port=8081"]})
    hostname = images.resolve({"name": "hostname", "image": "agnhost:2.4",
                               "command": ["/agnhost", "serve-hostname", "--tcp", "--udp", "--http=false",
                                           "--port", "9376"]})

    async def scenario():
        server = resident.ResidentServer(on_exit=lambda *args: exits.append(args))
        await server.start_pod(a.context(), [("netexec", netexec)])
        await server.start_pod(b.context(), [("hostname", hostname)])
        assert server.pods() == {("default", a.name): ["netexec"], ("default", b.name): ["hostname"]}

        # B reaches A across the veth; A answers with its UTS hostname and sees B's address
        assert await http_get(b, A_IP, 8080, "/hostname") == (200, a.name)
        status, client = await http_get(b, A_IP, 8080, "/clientip")
        assert status == 200 and client.startswith(f"{B_IP}:")
        assert await udp_ask(b, A_IP, 8081, "hostname") == a.name
        assert (await udp_ask(b, A_IP, 8081, "clientip")).startswith(f"{B_IP}:")
        assert await tcp_read(a, B_IP, 9376) == b.name
        assert await udp_ask(a, B_IP, 9376, "x") == b.name

        # /dial opens its socket inside A: B sees A's address as the client
        status, text = await http_get(b, A_IP, 8080, f"/dial?request=hostname&host={B_IP}&port=9376&protocol=udp")
        assert status == 200 and text == f'{{"responses":["{b.name}"]}}'
        # /shell runs inside A's network and UTS namespaces
        status, text = await http_get(b, A_IP, 8080, "/shell?cmd=hostname%3B%20ip%20-o%20-4%20addr%20show%20eth0")
        assert a.name in text and A_IP in text

        # a second container on the same port of the same pod fails, naming pod, container, port
        with pytest.raises(resident.PortInUse) as e:
            await server.start_pod(a.context(), [("again", images.agnhost(["netexec", "--udp-port=-1"]))])
        assert f"pod default/{a.name} container 'again'" in str(e.value) and "TCP port 8080" in str(e.value)
        assert server.pods()[("default", a.name)] == ["netexec"]

        log = open(os.path.join(a.log_dir, "netexec.log")).read()
        assert "Started HTTP server on port 8080" in log and "GET /hostname" in log
        assert "UDP request from" in open(os.path.join(b.log_dir, "hostname.log")).read()

        assert sockets_in(a.netns) and sockets_in(b.netns)
        assert await server.stop_pod("default", a.name) == {"netexec": 0}
        # serve-hostname keeps serving 60 s after SIGTERM: with no grace it is killed
        assert await server.stop_pod("default", b.name) == {"hostname": resident.KILLED}
        assert server.pods() == {}
        assert sockets_in(a.netns) == [] and sockets_in(b.netns) == []
        assert exits == []

    asyncio.run(scenario())
    assert netns.processes_in(a.netns) == [] and netns.processes_in(b.netns) == []


def test_netexec_exit_ends_the_container_and_reports_code(two_pods):
    a, b = two_pods
    exits = []

    async def scenario():
        server = resident.ResidentServer(on_exit=lambda *args: exits.append(args))
        await server.start_pod(a.context(), [("netexec", images.agnhost(["netexec"]))])
        assert await http_get(b, A_IP, 8080, "/exit?code=7&timeout=1s") == (200, "")
        for _ in range(100):
            if exits:
                break
            await asyncio.sleep(0.01)
        assert exits == [("default", a.name, "netexec", 7)]
        assert server.pods() == {}
        await asyncio.sleep(0.01)
        assert sockets_in(a.netns) == []

    asyncio.run(scenario())


def test_stop_container_stops_one_container_and_keeps_its_pod_serving(two_pods):
    a, b = two_pods
    exits = []
    netexec = images.agnhost(["netexec", "--http-port=8080", "--udp-port=-1", "--delay-shutdown=30"])
    hostname = images.agnhost(["serve-hostname", "--tcp", "--http=false", "--port", "9376"])

    async def scenario():
        server = resident.ResidentServer(on_exit=lambda *args: exits.append(args))
        await server.start_pod(a.context(), [("netexec", netexec), ("hostname", hostname)])
        # netexec would drain for 30 s after SIGTERM: the 0.2 s grace period ends it first
        start = time.monotonic()
        assert await server.stop_container("default", a.name, "netexec", grace=0.2) == resident.KILLED
        assert 0.2 <= time.monotonic() - start < 2
        assert server.pods() == {("default", a.name): ["hostname"]}
        assert await tcp_read(b, A_IP, 9376) == a.name
        with pytest.raises(OSError):
            await http_get(b, A_IP, 8080, "/hostname")
        # stopping what is not running says so; the last container takes the pod's sockets along
        assert await server.stop_container("default", a.name, "netexec") is None
        assert await server.stop_container("default", a.name, "hostname") == resident.KILLED
        assert server.pods() == {}
        assert sockets_in(a.netns) == []
        # the pod stopped while its container drains: the pod's stop reports the exit code
        await server.start_pod(a.context(), [("netexec", netexec)])
        draining = asyncio.create_task(server.stop_container("default", a.name, "netexec", grace=5))
        await asyncio.sleep(0.05)
        assert await server.stop_pod("default", a.name) == {"netexec": resident.KILLED}
        assert await draining is None
        assert exits == []  # stops the caller asked for are not reported as exits

    asyncio.run(scenario())


def test_process_containers_run_in_the_pods_namespaces(two_pods, tmp_path):
    a, b = two_pods
    log = str(tmp_path / "hostname.log")
    proc = process.spawn(["sh", "-c", "hostname; ip -o -4 addr show eth0"], netns=a.netns, uts=a.uts,
                         env={"GREETING": "hi"}, log_path=log)
    assert proc.wait(5) == 0
    text = open(log).read()
    assert a.name in text and A_IP in text

    sleeper = process.spawn(["sleep", "100"], netns=a.netns, uts=a.uts, log_path=log)
    assert netns.processes_in(a.netns) == [sleeper.pid]
    assert process.stop(sleeper, grace=2.0) == -15
    assert netns.processes_in(a.netns) == []


def test_standalone_builtin_process_and_exec_mapping(two_pods, tmp_path):
    a, b = two_pods
    log = str(tmp_path / "standalone.log")
    server = process.spawn(images.agnhost(["netexec", "--http-port=8080"]).standalone_argv(),
                           netns=b.netns, uts=b.uts, env={"PYTHONPATH": os.getcwd()}, log_path=log)
    try:
        async def ask():
            for _ in range(300):
                try:
                    return await http_get(a, B_IP, 8080, "/hostname")
                except OSError:
                    await asyncio.sleep(0.02)
        assert asyncio.run(ask()) == (200, b.name)

        def connect(dest):
            argv = images.exec_argv(["/agnhost", "connect", dest, "--timeout=2s"])
            out = str(tmp_path / "connect.log")
            p = process.spawn(argv, netns=a.netns, uts=a.uts, env={"PYTHONPATH": os.getcwd()}, log_path=out)
            return p.wait(10), open(out).read()

        assert connect(f"{B_IP}:8080") == (0, "")
        code, text = connect(f"{B_IP}:9")
        assert code == 1 and "REFUSED" in text
    finally:
        assert process.stop(server, grace=2.0) == 0  # netexec exits 0 on SIGTERM
    assert "Started HTTP server on port 8080" in open(log).read()


def test_measure_100_pods_in_one_resident_server(tmp_path):
    """100 pods' netexec (TCP+UDP) in one ResidentServer: time to ready and memory."""
    tag = "t" + secrets.token_hex(3)
    made = []

    def rss_kb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    try:
        for i in range(100):
            made.append(netns.create(f"{tag}p{i}"))
            _configure(made[-1], None, None)
        spec = images.agnhost(["netexec"])

        async def scenario():
            server = resident.ResidentServer()
            rss0, fds0 = rss_kb(), len(os.listdir("/proc/self/fd"))
            t0, cpu0 = time.perf_counter(), time.process_time()
            for i, path in enumerate(made):
                ctx = resident.PodContext(namespace="bench", name=f"p{i}", netns=path,
                                          log_dir=str(tmp_path / f"p{i}"))
                await server.start_pod(ctx, [("netexec", spec)])
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            rss1, fds1 = rss_kb(), len(os.listdir("/proc/self/fd"))
            pod = Pod("p99", made[-1], None, "127.0.0.1", None)
            assert await http_get(pod, "127.0.0.1", 8080, "/hostname") == (200, "p99")
            t1 = time.perf_counter()
            for i in range(100):
                await server.stop_pod("bench", f"p{i}")
            stop = time.perf_counter() - t1
            print(f"\n100 pods netexec: start {elapsed * 1000:.0f} ms wall ({cpu * 1000:.0f} ms CPU), "
                  f"RSS +{(rss1 - rss0) / 1024:.1f} MiB (total {rss1 / 1024:.1f} MiB), "
                  f"+{fds1 - fds0} fds, stop {stop * 1000:.0f} ms")
            assert elapsed < 5.0
            assert all(not sockets_in(p) for p in made[::25])

        asyncio.run(scenario())
    finally:
        for path in made:
            netns.delete(os.path.basename(path))
