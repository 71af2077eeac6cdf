"""The executable a runtime calls as a CNI plugin, and the wire format it shares with the agent.

`cni.install.install_plugin()` writes this module's source into an executable whose shebang
runs Python with `-I -S` (no site: ~7 ms to start instead of 100+), followed by the baked
constants and a call to `main()`. Therefore this module uses only the standard library's C
modules at module level and imports nothing from the tree until the in-process fallback.

`main()` forwards the invocation (CNI_* variables, stdin and an fd of the caller's network
namespace, passed with SCM_RIGHTS) to the resident agent named by $NETSIM_CNI_AGENT when that
socket accepts a connection, and relays the agent's stdout and exit code. Otherwise it runs the
plugin in-process with the sys.path entries baked at install time.

Wire format (one request per connection):
  request: !III (type length, env length, stdin length), type, env as NUL-separated KEY=VALUE,
           stdin; the namespace fd rides on the first sendmsg. The client then shuts down writing.
  answer:  !iI (exit code, stdout length), stdout.
"""

# The C modules under os, socket and struct: `import socket` alone costs ~6 ms (enum,
# selectors), as much as the interpreter's own start without site.
import _socket
import _struct
import posix
import sys

AGENT_ENV = "NETSIM_CNI_AGENT"
REQUEST_HEADER = _struct.Struct("!III")
ANSWER_HEADER = _struct.Struct("!iI")
_SCM_RIGHTS = _socket.SCM_RIGHTS
_O_RDONLY = 0


def encode_request(type_name, env, stdin):
    env_block = b"\0".join(f"{k}={v}".encode() for k, v in env.items())
    type_raw = type_name.encode()
    return REQUEST_HEADER.pack(len(type_raw), len(env_block), len(stdin)) + type_raw + env_block + stdin


def decode_request(data):
    """(type name, env dict, stdin bytes) from a complete request."""
    type_len, env_len, stdin_len = REQUEST_HEADER.unpack_from(data)
    pos = REQUEST_HEADER.size
    type_name = data[pos:pos + type_len].decode()
    pos += type_len
    env_block = data[pos:pos + env_len].decode()
    pos += env_len
    stdin = data[pos:pos + stdin_len]
    if len(stdin) != stdin_len:
        raise ValueError(f"truncated request: stdin has {len(stdin)} of {stdin_len} bytes")
    env = dict(item.split("=", 1) for item in env_block.split("\0") if "=" in item)
    return type_name, env, stdin


def encode_answer(code, stdout):
    return ANSWER_HEADER.pack(code, len(stdout)) + stdout


def recv_all(sock):
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _error(msg, details=""):
    import json  # only on this path: every import costs the shim's start-up time

    doc = {"cniVersion": "1.1.0", "code": 999, "msg": msg}
    if details:
        doc["details"] = details
    return 1, json.dumps(doc, indent=4).encode()


def call_agent(socket_path, type_name, env, stdin, netns_fd):
    """(exit code, stdout) from the agent, or None when no agent accepts a connection."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return None
        try:
            request = encode_request(type_name, env, stdin)
            fd_data = _struct.pack("i", netns_fd)
            sent = sock.sendmsg([request], [(_socket.SOL_SOCKET, _SCM_RIGHTS, fd_data)])
            if sent < len(request):
                sock.sendall(request[sent:])
            sock.shutdown(_socket.SHUT_WR)
            answer = recv_all(sock)
            code, length = ANSWER_HEADER.unpack_from(answer)
        except (OSError, _struct.error) as e:
            # The request may have been applied: running it again in-process could ADD twice.
            return _error(f"CNI agent at {socket_path} failed mid-request: {e}", f"set {AGENT_ENV} to a live agent or unset it")
        return code, answer[ANSWER_HEADER.size:ANSWER_HEADER.size + length]
    finally:
        sock.close()


def run_in_process(module, env, stdin, sys_path):
    """The fallback: the plugin's dispatch in this process, with the installer's sys.path."""
    import site

    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
        if entry.endswith("-packages"):
            site.addsitedir(entry)  # .pth files (editable installs) live there
    import importlib

    skel = importlib.import_module("cni.skel")
    return skel.dispatch(env, stdin, importlib.import_module(module))


def _read_stdin():
    chunks = []
    while True:
        chunk = posix.read(0, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def main(type_name, module, sys_path):
    env = {k.decode(): v.decode() for k, v in posix.environ.items() if k.startswith(b"CNI_")}
    stdin = _read_stdin()
    answer = None
    agent = posix.environ.get(AGENT_ENV.encode())
    if agent:
        fd = posix.open("/proc/thread-self/ns/net", _O_RDONLY)
        try:
            answer = call_agent(agent.decode(), type_name, env, stdin, fd)
        finally:
            posix.close(fd)
    if answer is None:
        answer = run_in_process(module, env, stdin, sys_path)
    code, stdout = answer
    sys.stdout.buffer.write(stdout)
    sys.stdout.buffer.flush()
    return code
