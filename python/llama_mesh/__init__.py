"""llama-mesh: llama-index Workflows as services in a gRPC service mesh."""

from __future__ import annotations

__version__ = "0.1.0"
