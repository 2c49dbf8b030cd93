"""``vllm-train serve``: the engine worker process. A thin bootstrap around :class:`EngineService`: one gRPC server
with the engine service, standard gRPC health and reflection, and a graceful shutdown.

Start-up: the port is bound and health answers NOT_SERVING at once (so orchestrators see a live process), the model
loads, then health turns SERVING (overall ``""`` and ``vllm_train.proto.v1.EngineService``). On SIGTERM or SIGINT:
health turns NOT_SERVING, new requests are refused with UNAVAILABLE, requests in flight get ``shutdown_grace_s`` to
finish, then the backend is closed and the process exits 0.

Run ``vllm-train serve --help`` for the flags (each also a ``VT_ENGINE_*`` variable); docs/engine.md has the rest.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vllm_train.engine.backend import EngineBackend
from vllm_train.engine.factory import create_backend
from vllm_train.engine.config import EngineConfig
from vllm_train.engine.service import SERVICE_NAME, EngineService
from vllm_train.proto.v1 import engine_pb2_grpc

log = logging.getLogger("vllm_train.engine")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class EngineServer:
    """The gRPC server of one engine (usable in-process: tests and the benchmark run it on a local port)."""

    def __init__(self, config: EngineConfig, backend: EngineBackend | None = None):
        self.config = config
        self.backend = backend or create_backend(config)
        self.service = EngineService(config, self.backend)
        self.health: health.aio.HealthServicer | None = None
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def bind(self) -> int:
        """Listens (health NOT_SERVING) and returns the bound port. Call on the loop that will serve."""
        self.health = health.aio.HealthServicer()
        # so_reuseport off: a second engine on a taken port must fail, not silently share it.
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        engine_pb2_grpc.add_EngineServiceServicer_to_server(self.service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection([SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME],
                                            self._server)
        address = f"{self.config.host}:{self.config.port}"
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as e:
            raise RuntimeError(f"cannot listen on {address} (port taken?): {e}") from e
        await self._server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, NOT_SERVING)
        log.info("engine %s listening on %s:%d (backend %s, model %s); loading the model", self.config.replica,
                 self.config.host, self.port, self.config.backend, self.config.model)
        return self.port

    async def load(self) -> None:
        """Loads the model, then reports SERVING."""
        await self.service.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, SERVING)
        log.info("engine %s SERVING on port %d", self.config.replica, self.port)

    async def start(self) -> int:
        port = await self.bind()
        await self.load()
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, refuse new requests (UNAVAILABLE, which clients retry elsewhere), let the
        requests in flight finish within ``grace`` seconds, then close the server and the backend."""
        grace = self.config.shutdown_grace_s if grace is None else grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self.service.begin_shutdown()
        if self._server is None:
            await self.backend.close()
            return
        await self.health.enter_graceful_shutdown()
        log.info("engine %s shutting down (%d requests in flight, grace %.0f s)", self.config.replica,
                 self.service.registry.in_flight, grace)
        # The server stays open while requests drain, so new ones get our UNAVAILABLE rather than a reset connection.
        while self.service.registry.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self._server.stop(max(deadline - loop.time(), 0.5))
        await self.backend.close()
        log.info("engine %s stopped", self.config.replica)


async def serve(config: EngineConfig) -> int:
    """Runs an engine until SIGTERM/SIGINT; returns the process exit code."""
    server = EngineServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.bind()
    except RuntimeError as e:
        log.error("%s", e)
        return 1
    loading = asyncio.ensure_future(server.load())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([loading, stopping], return_when=asyncio.FIRST_COMPLETED)
    if loading.done() and loading.exception() is not None:
        log.error("engine failed to load %s: %s", config.model, loading.exception(), exc_info=loading.exception())
        stopping.cancel()
        await server.stop(0)
        return 1
    if not loading.done():
        loading.cancel()
    await stopping
    await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = EngineConfig.load(argv)
    except ValueError as e:
        print(f"vllm-train serve: {e}", file=sys.stderr)
        return 2
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
