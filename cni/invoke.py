"""The exec seam of the runtime (libcni's invoke.Exec), answering netsim's own plugins in-process.

A node agent already holds netsim's plugins in memory (it serves them to the shim over the
agent socket). When the runtime resolves a plugin `type` in CNI_PATH to an executable that
`cni.install` wrote, executing it would only start a Python interpreter (~10-15 ms of CPU) to
forward the same request back to this process; `InProcessExec` hands the request to the plugin
directly instead, with the same environment and stdin and the caller's network namespace as the
host side. Any other executable (the reference plugins, a third-party plugin) is executed.
"""

import os
import subprocess

from cni import skel
from cni.install import HEADER_PREFIX


def installed_type(path):
    """The plugin type an executable written by cni.install serves, or None if it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(256).split(b"\n", 2)
    except OSError:
        return None
    if len(head) < 2 or not head[1].startswith(HEADER_PREFIX.encode()):
        return None
    return head[1][len(HEADER_PREFIX):].split(b"'")[1].decode()


class InProcessExec:
    """exec(plugin_path, stdin, env) for CNIConfig: PLUGINS ({type: module}) in-process, else FALLBACK."""

    def __init__(self, plugins, fallback):
        self.plugins = plugins
        self.fallback = fallback
        self._types = {}

    def _type_of(self, path):
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_ino)
        if key not in self._types:
            self._types[key] = installed_type(path)
        return self._types[key]

    def __call__(self, plugin_path, stdin, env):
        plugin = self.plugins.get(self._type_of(plugin_path))
        if plugin is None:
            return self.fallback(plugin_path, stdin, env)
        code, out = skel.dispatch(env, stdin, plugin)
        return subprocess.CompletedProcess([plugin_path], code, out, b"")
