"""Run one built-in as its own process: `python -m netsim.containers IMAGE [ARGS...]`.

    python -m netsim.containers agnhost netexec --http-port 8080
    python -m netsim.containers agnhost connect 10.0.0.1:80 --timeout 5s
    python -m netsim.containers echoserver          # port from $PORT, default 3000
    python -m netsim.containers echo --port 80

The process is expected to run inside the pod's namespaces already (process.spawn puts it
there); it serves with the same handlers as the resident server. Pod identity for the echo
servers comes from POD_NAME, POD_NAMESPACE (or NAMESPACE), NODE_NAME and POD_IP.
"""

import asyncio
import os
import signal
import socket
import sys

from netsim.containers import apps, images
from netsim.containers.context import ContainerContext, bind

USAGE = "usage: python -m netsim.containers {agnhost SUBCOMMAND [FLAGS] | echoserver | echo [--port N]...}"


def spec_from_argv(argv, env):
    if not argv:
        raise images.SpecError(USAGE)
    image, rest = argv[0], argv[1:]
    if os.path.basename(image) in images.AGNHOST_BINARIES:
        return images.agnhost(rest, env)
    if image == "echoserver":
        return images.echoserver(env)
    if image == "echo":
        return images.echo(images.parse_echo_argv(rest), env)
    raise images.SpecError(f"unknown built-in image {image!r}; {USAGE}")


def _stream_writer(stream):
    def write(text):
        stream.write(text)
        stream.flush()
    return write


async def run(spec, env):
    """Serve SPEC in this process's namespaces until it exits or is signalled; the exit code."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def finish(code):
        if not done.done():
            done.set_result(code)

    hostname = socket.gethostname()
    ctx = ContainerContext(
        hostname=hostname, pod=env.get("POD_NAME", hostname),
        namespace=env.get("POD_NAMESPACE", env.get("NAMESPACE", "")),
        node=env.get("NODE_NAME", ""), ip=env.get("POD_IP", ""), env=env,
        write=_stream_writer(sys.stdout), write_error=_stream_writer(sys.stderr), exit=finish)
    app = apps.build(spec, ctx)
    running = apps.Running(app, ctx)
    bound = []
    try:
        for listener in app.listeners:
            bound.append((listener, bind(listener)))
    except OSError as e:
        for _, sock in bound:
            sock.close()
        ctx.log(f"listen {listener.protocol.lower()} :{listener.port}: bind: {e.strerror}")
        return 1
    await running.start(bound)
    if app.run is not None:
        return await app.run()

    def on_sigterm():
        ctx.terminating = True
        linger = app.on_sigterm() if app.on_sigterm else 0.0
        loop.call_later(linger, finish, app.sigterm_code)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, finish, 130)
    code = await done
    running.close(abort=False)
    return code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    env = dict(os.environ)
    try:
        spec = spec_from_argv(argv, env)
    except images.SpecError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return asyncio.run(run(spec, env))


if __name__ == "__main__":
    sys.exit(main())
