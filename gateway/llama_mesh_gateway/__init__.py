"""The llama-mesh REST gateway: HTTP/JSON transcoding from google.api.http rules."""
