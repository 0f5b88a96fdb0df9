"""The `llama-mesh` command line (docs/cli.md)."""

from llama_mesh.cli.app import app, main

__all__ = ["app", "main"]
