"""The lines `up` keeps are bounded: a new file at `logging.max_file_size`, at most
`logging.max_files` older ones, and `llama-mesh logs` reads this run's across them in
order."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from llama_mesh.cli.logs import _read
from llama_mesh.launch.deployment import DeploymentError, parse_deployment
from llama_mesh.launch.log_capture import LogCollector, rotated_log_file


async def _logs(socket: Path, service: str | None = None) -> list[dict[str, Any]]:
    """What `llama-mesh logs [SERVICE]` gets from the collector's socket."""
    shown: list[dict[str, Any]] = []
    await _read(socket, {"service": service, "task": None, "follow": False}, shown.append)
    return shown


def _line(i: int) -> bytes:
    return json.dumps({"level": "info", "message": f"line {i}", "service": "echo"}).encode()


@pytest.mark.skipif(sys.platform == "win32", reason="unix socket")
async def test_kept_lines_rotate_at_a_size_and_logs_reads_them_in_order(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "up.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"message": "the run before", "service": "echo"}) + "\n")
    collector = LogCollector(path, max_bytes=4096, backups=2, stream=io.StringIO())
    socket = tmp_path / "logs.sock"
    async with collector.serving(socket):
        # The run before's lines moved aside, and are not this run's.
        assert "the run before" in rotated_log_file(path, 1).read_text()
        assert await _logs(socket) == []

        for i in range(40):
            collector.add("echo/1", _line(i))
        # Across the first rotation: the run before's file shifted, this run's in order.
        assert "the run before" in rotated_log_file(path, 2).read_text()
        shown = await _logs(socket, "echo")
        assert [line["message"] for line in shown] == [f"line {i}" for i in range(40)]

        for i in range(40, 400):
            collector.add("echo/1", _line(i))
        shown = await _logs(socket, "echo")

    kept = sorted(p.name for p in path.parent.iterdir())
    assert kept == ["up.1.jsonl", "up.2.jsonl", "up.jsonl"]
    assert all(p.stat().st_size <= 4096 for p in path.parent.iterdir())
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in path.parent.iterdir())
    # The newest lines, in order, without a gap; the oldest rotated out.
    numbers = [int(line["message"].split()[1]) for line in shown]
    assert numbers == list(range(numbers[0], 400))
    assert 0 < numbers[0] < 400 - 40
    assert [line["seq"] for line in shown] == sorted(line["seq"] for line in shown)


def test_the_logging_section_takes_a_size_and_a_count(tmp_path: Path) -> None:
    def parsed(logging: str) -> Any:
        text = f"name: sized\nlogging: {logging}\n"
        return parse_deployment(text, tmp_path / "deployment.yaml").logging

    assert (parsed("{}").max_file_size, parsed("{}").max_files) == (10 * 1024 * 1024, 5)
    sized = parsed("{max_file_size: 512KiB, max_files: 2}")
    assert (sized.max_file_size, sized.max_files) == (512 * 1024, 2)
    with pytest.raises(DeploymentError, match=r"logging\.max_file_size"):
        parsed("{max_file_size: 1KB}")
    with pytest.raises(DeploymentError, match=r"logging\.max_files"):
        parsed("{max_files: 0}")


def test_grpc_core_lines_keep_their_own_level(tmp_path: Path) -> None:
    """gRPC's C core writes its own lines on stderr; its `I` lines (a client that closed
    its connection) showed on up's terminal as errors."""
    shown = io.StringIO()
    collector = LogCollector(tmp_path / "up.jsonl", stream=shown)
    try:
        collector.add(
            "control-plane",
            b"I1201 13:37:01.201524   22021 chttp2_transport.cc:1403] ipv4:127.0.0.1:34334: "
            b"Got goaway [8] err=UNAVAILABLE:GOAWAY received; Error code: 8; Debug Text:  "
            b"{http2_error:8}",
        )
        collector.add(
            "control-plane",
            b"E1201 13:37:02.000001   22021 ssl_transport_security.cc:1654] Handshake failed",
        )
        collector.add("control-plane", b"Traceback (most recent call last):")
    finally:
        collector.close()
    kept = [json.loads(line) for line in (tmp_path / "up.jsonl").read_text().splitlines()]
    assert [(k["level"], k.get("logger")) for k in kept] == [
        ("info", "grpc (chttp2_transport.cc:1403)"),
        ("error", "grpc (ssl_transport_security.cc:1654)"),
        ("error", None),
    ]
    assert kept[0]["message"].endswith("{http2_error:8}")
    assert kept[0]["time"].endswith("-12-01T13:37:01.201")
    assert "Got goaway" not in shown.getvalue()  # info: kept, not shown from warning up
    assert "Handshake failed" in shown.getvalue() and "Traceback" in shown.getvalue()
