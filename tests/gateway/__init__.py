"""Tests of the REST gateway (llama_mesh_gateway)."""
