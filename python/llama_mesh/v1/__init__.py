"""Code generated from proto/llama_mesh/v1 by `make gen`. Do not edit."""
