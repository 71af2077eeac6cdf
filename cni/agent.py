"""The resident CNI agent: plugin invocations served by a process that has already imported them.

A plugin executable (the shim, `cni/shim.py`) costs ~10 ms to start without site and would
cost ~150 ms more to import pyroute2 and the plugin. The agent keeps them imported and answers
over a unix socket: one connection carries one invocation (the CNI_* environment, stdin and,
with SCM_RIGHTS, an fd of the caller's network namespace). The CNI contract says a plugin acts
on "its current netns" as the host side, so each request runs on its own thread that first
setns()es into the caller's namespace; setns is per thread, and the thread ends with the
request, so no namespace leaks into the next one. Requests run in parallel: host-local's flock
serialises allocations and the bridge plugin tolerates concurrent creation of the bridge.
"""

import contextlib
import importlib
import os
import socket
import stat
import threading

from cni import shim, skel, spec
from cni.install import PLUGIN_MODULES
from netsim import netns

_MAX_REQUEST = 16 << 20


class CNIAgent:
    """Serve CNI plugin calls on SOCKET_PATH; PLUGINS maps type names to plugin modules."""

    def __init__(self, socket_path, plugins=None):
        self.socket_path = socket_path
        self.plugin_modules = dict(plugins or PLUGIN_MODULES)
        self.plugins = {}
        self._listener = None
        self._thread = None

    def start(self):
        """Import the plugins, listen, serve on a background thread; returns once listening."""
        for type_name, module in self.plugin_modules.items():
            plugin = importlib.import_module(module) if isinstance(module, str) else module
            if hasattr(plugin, "warm"):
                plugin.warm()
            self.plugins[type_name] = plugin
        self._remove_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        listener.listen(256)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name=f"cni-agent {self.socket_path}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop accepting, remove the socket file; requests in flight finish on their threads."""
        if self._listener is None:
            return
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(timeout=5)
        self._listener = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _remove_stale_socket(self):
        """A socket file nobody answers on is ours from a killed agent; anything else is an error."""
        try:
            st = os.stat(self.socket_path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"CNI agent socket path {self.socket_path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket_path)
        except ConnectionRefusedError:
            os.unlink(self.socket_path)
            return
        finally:
            probe.close()
        raise FileExistsError(f"another CNI agent is listening on {self.socket_path}")

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        fds = []
        try:
            data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            chunks = [data]
            total = len(data)
            while total < _MAX_REQUEST:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            code, stdout = self._handle(b"".join(chunks), fds)
            conn.sendall(shim.encode_answer(code, stdout))
        except OSError:
            pass  # the caller went away; nothing to answer
        finally:
            for fd in fds:
                os.close(fd)
            conn.close()

    def _handle(self, data, fds):
        try:
            type_name, env, stdin = shim.decode_request(data)
        except Exception as e:
            return 1, spec.CNIError(spec.ERR_IO, "malformed request to the CNI agent", str(e)).dumps().encode()
        plugin = self.plugins.get(type_name)
        if plugin is None:
            err = spec.CNIError(spec.ERR_PLUGIN_NOT_AVAILABLE, f"the CNI agent has no plugin {type_name!r}",
                                f"it serves {sorted(self.plugins)}")
            return 1, err.dumps().encode()
        if len(fds) != 1:
            err = spec.CNIError(spec.ERR_IO, "request without the caller's network namespace fd",
                                "send one fd of /proc/self/ns/net with SCM_RIGHTS")
            return 1, err.dumps().encode()
        # This thread serves only this request, so it may stay in the caller's namespace.
        netns.setns(fds[0], netns.CLONE_NEWNET)
        return skel.dispatch(env, stdin, plugin)
