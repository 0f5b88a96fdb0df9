"""The embedded nats-server runs with a Go soft memory limit, which the environment
may override (bench/README.md, "retention": without one its RSS climbed with history)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_mesh.launch.nats_server import MEMORY_LIMIT, EmbeddedNats


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)


@pytest.mark.parametrize("given", [None, "off"])
async def test_the_server_gets_a_memory_limit_unless_the_environment_gives_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None
) -> None:
    if given is None:
        monkeypatch.delenv("GOMEMLIMIT", raising=False)
    else:
        monkeypatch.setenv("GOMEMLIMIT", given)
    async with EmbeddedNats.start(tmp_path / "nats") as server:
        limit = _environment_of(server.process.pid).get("GOMEMLIMIT")
    assert limit == (given or MEMORY_LIMIT)
