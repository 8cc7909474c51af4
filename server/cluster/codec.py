"""Room events as JSON, to reach members whose connection is on another node."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pydantic import TypeAdapter

from ..rooms import events as ev

_ADAPTERS: dict[str, TypeAdapter[Any]] = {cls.__name__: TypeAdapter(cls) for cls in typing.get_args(ev.Event)}


def encode_event(event: ev.Event) -> dict[str, Any]:
    return {"t": type(event).__name__, "f": dataclasses.asdict(event)}


def decode_event(data: dict[str, Any]) -> ev.Event:
    adapter = _ADAPTERS.get(data.get("t", ""))
    if adapter is None:
        raise ValueError(f"Expected a room event, but got {data.get('t')!r}")
    event: ev.Event = adapter.validate_python(data["f"])
    return event
