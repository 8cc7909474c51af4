"""A media worker process: one ``Sfu`` serving the ``MediaBackend`` calls of the main process.

    python -m server.media.worker --socket PATH [--video-codec VP8] [--ice-address IP ...]

Calls arrive as JSON lines on a Unix socket: ``{"id", "op", "args"}``; answers are
``{"id", "result"}`` or ``{"id", "error": {"type", "message"}}``; a peer connection that fails is
reported as ``{"event": "failed", "peer"}``. Calls are served in order, one at a time, so a
subscriber's answer is always handled before its ICE candidates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from .ice import use_host_addresses
from .interfaces import PeerId, SdpError
from .sfu import Sfu

log = logging.getLogger(__name__)

OPERATIONS = frozenset(
    {
        "publish",
        "subscribe",
        "accept_answer",
        "add_ice_candidate",
        "attach",
        "set_muted",
        "close",
        "open_relay_ingress",
        "open_relay_egress",
        "forwarding_stats",
        "start_recording",
        "stop_recording",
        "start_hls",
        "stop_hls",
    }
)


class WorkerServer:
    def __init__(self, sfu: Sfu) -> None:
        self._sfu = sfu

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def emit(message: dict[str, Any]) -> None:
            writer.write(json.dumps(message).encode() + b"\n")

        while line := await reader.readline():
            message = json.loads(line)
            try:
                result = await self._call(message["op"], message.get("args", {}), emit)
                emit({"id": message["id"], "result": result})
            except (SdpError, LookupError, TimeoutError) as exc:
                emit({"id": message["id"], "error": {"type": type(exc).__name__, "message": str(exc)}})
            except Exception as exc:
                log.exception("media worker failed on %s", message.get("op"))
                emit({"id": message["id"], "error": {"type": "RuntimeError", "message": str(exc)}})
        log.info("the main process went away; stopping")
        await self._sfu.shutdown()
        asyncio.get_running_loop().stop()

    async def _call(self, op: str, args: dict[str, Any], emit: Any) -> Any:
        if op not in OPERATIONS:
            raise LookupError(f"Unknown operation {op!r}")
        if op in ("publish", "subscribe"):
            box: list[PeerId] = []
            args["on_failed"] = lambda: box and emit({"event": "failed", "peer": box[0]})
            if op == "subscribe":
                args["on_quality"] = lambda layer, reason: (
                    box and emit({"event": "quality", "peer": box[0], "layer": layer, "reason": reason})
                )
            peer, sdp = await getattr(self._sfu, op)(**args)
            box.append(peer)
            return {"peer": peer, "sdp": sdp}
        result = await getattr(self._sfu, op)(**args)
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
