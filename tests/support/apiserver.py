"""An API server for tests: listens on a free port of 127.0.0.1 over a given store, runs on its
own event loop in a background thread, and yields its URL and an admin kubeconfig.

    with running_apiserver("sqlite:///tmp/x/state.db", tmp_dir) as api:
        api.url, api.kubeconfig, api.token

Fixtures: `sqlite_apiserver` (one per module, a fresh SQLite store) and, with the store
helper's `etcd_url` fixture imported, `etcd_apiserver`.
"""

import asyncio
import contextlib
import dataclasses
import os
import threading

import pytest

from cluster.apiserver import Server


@dataclasses.dataclass
class RunningAPIServer:
    url: str
    kubeconfig: str
    token: str
    store_url: str
    server: Server
    loop: asyncio.AbstractEventLoop

    def call(self, coro, timeout=30):
        """Run a coroutine on the server's loop (e.g. `api.call(api.server.store.compact(n))`)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextlib.contextmanager
def running_apiserver(store_url, directory, **kw):
    """Run an API server over `store_url`, its token file and kubeconfig in `directory`."""
    os.makedirs(directory, exist_ok=True)
    kubeconfig, token_file = os.path.join(directory, "kubeconfig"), os.path.join(directory, "tokens.csv")
    server = Server(store_url, "127.0.0.1:0", kubeconfig_path=kubeconfig, token_file=token_file,
                    name="test", **kw)
    loop = asyncio.new_event_loop()
    started, stop = threading.Event(), None
    failure = []

    async def main():
        nonlocal stop
        stop = asyncio.Event()
        try:
            await server.start()
        except BaseException as e:
            failure.append(e)
            started.set()
            return
        started.set()
        try:
            await stop.wait()
        finally:
            await server.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True,
                              name="apiserver")
    thread.start()
    started.wait(60)
    if failure:
        thread.join()
        loop.close()
        raise failure[0]
    token = ""
    with open(token_file) as f:
        for line in f:
            if ",admin," in line:
                token = line.split(",", 1)[0]
    try:
        yield RunningAPIServer(server.url, kubeconfig, token, store_url, server, loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@pytest.fixture(scope="module")
def sqlite_apiserver(tmp_path_factory):
    directory = tmp_path_factory.mktemp("apiserver")
    with running_apiserver(f"sqlite://{directory}/state.db", str(directory)) as api:
        yield api


@pytest.fixture(scope="module")
def etcd_apiserver(etcd_url, tmp_path_factory):
    directory = tmp_path_factory.mktemp("apiserver-etcd")
    with running_apiserver(etcd_url, str(directory)) as api:
        yield api
