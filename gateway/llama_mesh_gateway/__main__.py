"""`python -m llama_mesh_gateway --upstream HOST:PORT [--host H] [--port P]`.

`python -m llama_mesh_gateway --write-openapi FILE` writes the OpenAPI document of the
descriptor set and exits (`make gen` writes gateway/openapi.json this way).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from llama_mesh_gateway.app import DEFAULT_HEARTBEAT_SECONDS, DEFAULT_MAX_BODY_BYTES
from llama_mesh_gateway.metrics_access import DEFAULT_CACHE_SECONDS, MetricsAccess, MetricsGuard
from llama_mesh_gateway.openapi import openapi_json
from llama_mesh_gateway.routes import Schema
from llama_mesh_gateway.server import serve
from llama_mesh_gateway.upstream_tls import UpstreamTls, UpstreamTlsError


def write_openapi(
    path: str, descriptor_set: str | None = None, services: Sequence[str] | None = None
) -> None:
    """Write the OpenAPI document of a descriptor set (default llama_mesh.v1) to path."""
    schema = Schema.load(descriptor_set)
    with open(path, "w", encoding="utf-8") as f:
        f.write(openapi_json(schema, schema.routes(services)))


def upstream_tls_of(
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    server_name: str | None,
) -> UpstreamTls | None:
    """TLS to the upstream when its CA is given, else None (plaintext)."""
    if ca_file is None:
        if cert_file or key_file or server_name:
            raise UpstreamTlsError("--upstream-cert/-key/-server-name need --upstream-ca")
        return None
    tls = UpstreamTls(ca_file, cert_file, key_file, server_name)
    tls.credentials()  # a missing file fails here, with the flag's name
    return tls


def main(argv: Sequence[str] | None = None) -> None:
    """Run the gateway in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m llama_mesh_gateway",
        description="REST/JSON gateway for the gRPC services of a descriptor set.",
    )
    parser.add_argument("--upstream", help="host:port of the gRPC server")
    parser.add_argument("--write-openapi", metavar="FILE", help="write the OpenAPI document, exit")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--descriptor-set", default=None, help="FileDescriptorSet (default: llama_mesh.v1)"
    )
    parser.add_argument(
        "--service", action="append", dest="services", help="serve only this service (repeat)"
    )
    parser.add_argument(
        "--cors-origin", action="append", default=[], dest="cors_origins", help="repeatable"
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--heartbeat-seconds", type=float, default=DEFAULT_HEARTBEAT_SECONDS)
    parser.add_argument(
        "--metrics", action="store_true", help="serve Prometheus metrics at GET /metrics"
    )
    parser.add_argument(
        "--metrics-access",
        metavar="/PACKAGE.SERVICE/METHOD",
        help="/metrics only to callers this upstream RPC admits (called with their credentials)",
    )
    parser.add_argument(
        "--metrics-require",
        metavar="FIELD=VALUE",
        help="and whose answer's FIELD holds VALUE, e.g. identity.roles=admin",
    )
    parser.add_argument(
        "--metrics-cache-seconds",
        type=float,
        default=DEFAULT_CACHE_SECONDS,
        help="how long an admitted credential is remembered",
    )
    parser.add_argument("--tls-cert", type=Path, help="certificate (PEM): serve HTTPS")
    parser.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    parser.add_argument("--upstream-ca", type=Path, help="CA of the upstream's certificate: TLS")
    parser.add_argument("--upstream-cert", type=Path, help="client certificate, for mTLS")
    parser.add_argument("--upstream-key", type=Path, help="its private key")
    parser.add_argument("--upstream-server-name", help="name the upstream's certificate carries")
    args = parser.parse_args(argv)
    if args.write_openapi:
        write_openapi(args.write_openapi, args.descriptor_set, args.services)
        return
    if not args.upstream:
        parser.error("--upstream is required")
    try:
        upstream_tls = upstream_tls_of(
            args.upstream_ca, args.upstream_cert, args.upstream_key, args.upstream_server_name
        )
    except UpstreamTlsError as e:
        parser.error(str(e))
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    metrics_access = None
    if args.metrics_access:
        try:
            metrics_access = MetricsAccess.parse(
                args.metrics_access, args.metrics_require, cache_seconds=args.metrics_cache_seconds
            )
            # The method and the field must be in the descriptor set: say so now.
            MetricsGuard(metrics_access, Schema.load(args.descriptor_set).pool)
        except ValueError as e:
            parser.error(f"--metrics-access: {e}")
    elif args.metrics_require:
        parser.error("--metrics-require needs --metrics-access")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(
        serve(
            args.upstream,
            args.host,
            args.port,
            descriptor_set=args.descriptor_set,
            services=args.services,
            cors_origins=args.cors_origins,
            max_body_bytes=args.max_body_bytes,
            heartbeat_seconds=args.heartbeat_seconds,
            handle_signals=True,
            metrics=args.metrics,
            metrics_access=metrics_access,
            upstream_tls=upstream_tls,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    )


if __name__ == "__main__":
    main()
