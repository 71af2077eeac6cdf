"""Installs netsim's CNI plugins as executables a runtime can find in CNI_PATH.

Each executable is `cni/shim.py`'s source behind a shebang that runs this interpreter with
`-I -S`, plus the constants it needs at run time: the plugin's type and module, and the
sys.path entries that let the in-process fallback import the tree from wherever it is installed
(editable or not), baked now from the installing interpreter.
"""

import os
import sys
import tempfile

import cni
from cni import shim

PLUGIN_MODULES = {"bridge": "cni.plugins.bridge"}
# The executable's second line; cni.invoke recognises netsim's own plugins by it.
HEADER_PREFIX = "# netsim CNI plugin "


def _sys_path():
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(cni.__file__)))
    entries = [package_root]
    for entry in sys.path:
        if entry and os.path.isdir(entry) and os.path.abspath(entry) not in entries:
            entries.append(os.path.abspath(entry))
    return entries


def render(type_name="bridge", module=None):
    """The executable's text."""
    module = module or PLUGIN_MODULES.get(type_name)
    if not module:
        raise ValueError(f"unknown CNI plugin type {type_name!r}: expected one of {sorted(PLUGIN_MODULES)}")
    with open(shim.__file__, encoding="utf-8") as f:
        source = f.read()
    return (
        f"#!{sys.executable} -IS\n"
        f"{HEADER_PREFIX}{type_name!r}, written by cni.install: regenerate it, do not edit.\n"
        f"{source}\n\n"
        f"if __name__ == '__main__':\n"
        f"    sys.exit(main({type_name!r}, {module!r}, {_sys_path()!r}))\n"
    )


def install_plugin(dest_dir, type_name="bridge"):
    """Write DEST_DIR/TYPE_NAME (atomically, mode 0755); returns its path."""
    os.makedirs(dest_dir, exist_ok=True)
    path = os.path.join(dest_dir, type_name)
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{type_name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(type_name))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
