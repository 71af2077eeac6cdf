"""ResidentServer's per-container stop, with built-ins that hold no sockets (no root needed)."""

import asyncio

from netsim.containers import images, resident


def test_stop_container_returns_the_sigterm_exit_code_and_leaves_the_other_containers():
    exits = []
    pause = images.agnhost(["pause"])
    pod = resident.PodContext(namespace="default", name="web-0")

    async def scenario():
        server = resident.ResidentServer(on_exit=lambda *args: exits.append(args))
        await server.start_pod(pod, [("app", pause), ("sidecar", pause)])
        assert await server.stop_container("default", "web-0", "app") == 2  # pause exits 2 on SIGTERM
        assert server.pods() == {("default", "web-0"): ["sidecar"]}
        assert await server.stop_container("default", "web-0", "app") is None
        assert await server.stop_container("default", "other", "app") is None
        # stopped, it starts again like any container that ended
        await server.start_pod(pod, [("app", pause)])
        assert sorted(server.pods()[("default", "web-0")]) == ["app", "sidecar"]
        assert await server.stop_container("default", "web-0", "sidecar", grace=5) == 2
        assert await server.stop_container("default", "web-0", "app") == 2
        assert server.pods() == {}
        assert exits == []

    asyncio.run(scenario())

