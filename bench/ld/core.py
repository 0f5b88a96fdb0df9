"""deploy_core with a SimpleMessageQueue, as in the llama_deploy README (its venv only).

python bench/ld/core.py --control-plane-port P --queue-port Q
"""

from __future__ import annotations

import argparse
import asyncio

from llama_deploy import ControlPlaneConfig, SimpleMessageQueueConfig, deploy_core


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--control-plane-port", type=int, required=True)
    parser.add_argument("--queue-port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(
        deploy_core(
            control_plane_config=ControlPlaneConfig(host="127.0.0.1", port=args.control_plane_port),
            message_queue_config=SimpleMessageQueueConfig(host="127.0.0.1", port=args.queue_port),
        )
    )


if __name__ == "__main__":
    main()
