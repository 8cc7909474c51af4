"""A media worker process: one ``Sfu`` serving the ``MediaBackend`` calls of the main process.

    python -m server.media.worker --socket PATH [--video-codec VP8] [--ice-address IP ...]

Calls arrive as JSON lines on a Unix socket, in the form of ``server/rpc.py``; a callback the
caller passed (a peer connection failed, a subscriber's layer changed) comes back as
``{"event": "on_failed" | "on_quality", "peer", "args"}``. Calls are served in order, one at a
time, so a subscriber's answer is always handled before its ICE candidates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from ..rpc import answer
from .ice import use_host_addresses
from .interfaces import CALLBACKS, MEDIA_CALLS, MEDIA_ERRORS, PeerId
from .sfu import Sfu

log = logging.getLogger(__name__)


class WorkerServer:
    def __init__(self, sfu: Sfu) -> None:
        self._sfu = sfu

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def emit(message: dict[str, Any]) -> None:
            writer.write(json.dumps(message).encode() + b"\n")

        while line := await reader.readline():
            call = json.loads(line)
            emit(await answer(lambda op, args: self._call(op, args, emit), call, MEDIA_ERRORS, "the main process"))
        log.info("the main process went away; stopping")
        await self._sfu.shutdown()
        asyncio.get_running_loop().stop()

    async def _call(self, op: str, args: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> Any:
        signature = MEDIA_CALLS.get(op)
        if signature is None:
            raise LookupError(f"Unknown operation {op!r}")
        made: list[PeerId] = []  # the peer this call makes, once it has

        def relay(event: str) -> Callable[..., None]:
            def tell(*values: Any) -> None:
                if made:
                    emit({"event": event, "peer": made[0], "args": list(values)})

            return tell

        for name in CALLBACKS:
            if name in signature.parameters:
                args[name] = relay(name)
        result = await getattr(self._sfu, op)(**args)
        if any(name in signature.parameters for name in CALLBACKS):
            made.append(result[0])  # a call taking callbacks makes a peer: (its id, its SDP)
        return list(result) if isinstance(result, tuple) else result


def main() -> None:
    parser = argparse.ArgumentParser(description="Sky Classroom media worker")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--video-codec", default="VP8")
    parser.add_argument("--keyframe-interval", type=float, default=0.5)
    parser.add_argument("--ice-address", action="append", default=[])
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s worker %(name)s: %(message)s")
    use_host_addresses(args.ice_address)

    async def serve() -> None:
        sfu = Sfu(video_codec=args.video_codec, keyframe_interval_s=args.keyframe_interval)
        server = await asyncio.start_unix_server(WorkerServer(sfu).handle, path=args.socket)
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    except RuntimeError:
        pass  # the loop was stopped on purpose when the main process went away


if __name__ == "__main__":
    main()
