"""What the console tests share: the browser's settings and the mesh they open."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llama_mesh.launch.local import LocalMesh
from llama_mesh.testing import ScriptedModel
from llama_mesh_gateway import GatewayServer

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
HAVE_CHROMIUM = CHROMIUM.exists()
# What chromium needs to run headless on these machines (no GPU, no network but
# loopback: without the background-networking flags it dials Google's hosts).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


@dataclass
class ConsoleMesh:
    mesh: LocalMesh
    gateway: GatewayServer
    model: ScriptedModel

    @property
    def console_url(self) -> str:
        return f"{self.gateway.url}/console/"
