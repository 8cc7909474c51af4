"""Each layer's contract is importable without the libraries its implementations use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(module: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after importing ``module`` in a fresh interpreter."""
    script = f"import json, sys; import {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("server.signaling.protocol", {"aiortc", "av", "redis"}),
        ("server.cluster", {"aiortc", "av", "redis"}),
        ("server.rooms", {"aiortc", "av", "redis"}),
        ("server.media.interfaces", {"aiortc", "av", "redis", "fastapi"}),
        ("server.state", {"redis"}),
    ],
)
def test_contract_imports_no_implementation(module: str, absent: set[str]) -> None:
    loaded = loaded_after(module)
    assert "server" in loaded  # the import happened
    assert not loaded & absent, f"importing {module} loads {sorted(loaded & absent)}"


def test_the_implementations_do_load_them() -> None:
    """The check above can fail: the SFU does pull in aiortc and PyAV, the Redis store redis."""
    assert {"aiortc", "av"} <= loaded_after("server.media.sfu")
    assert "redis" in loaded_after("server.state.redis")
