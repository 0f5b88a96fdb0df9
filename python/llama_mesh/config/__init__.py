"""Settings of every component, one pydantic model each, with every default in one place.

The deployment file, the ``serve`` flags, ``deploy_*``, LocalMesh and the arguments
``up`` gives its children are derived from these models. This layer imports only
``llama_mesh.core`` (and the generated protos).
"""

from llama_mesh.config.control_plane import ControlPlaneConfig, connect_host
from llama_mesh.config.fields import DefaultText, Flag, Port, Settings, default
from llama_mesh.config.gateway import GatewayConfig
from llama_mesh.config.models import ModelConfig, ModelId, valid_model_id
from llama_mesh.config.nats import STATE_DIR, NatsConfig, default_data_dir
from llama_mesh.config.restarts import RestartConfig
from llama_mesh.config.retention import RetentionConfig
from llama_mesh.config.security import NO_AUTH, SecurityConfig
from llama_mesh.config.service import (
    RetryConfig,
    ServiceConfig,
    ServiceSettings,
    valid_service_id,
)
from llama_mesh.config.telemetry import LogFormat, LoggingConfig, LogLevel, OtelConfig

__all__ = [  # noqa: RUF022 (grouped by kind)
    # The models
    "ControlPlaneConfig",
    "GatewayConfig",
    "LoggingConfig",
    "LogFormat",
    "LogLevel",
    "ModelConfig",
    "NatsConfig",
    "OtelConfig",
    "RestartConfig",
    "RetentionConfig",
    "RetryConfig",
    "SecurityConfig",
    "NO_AUTH",
    "ServiceConfig",
    "ServiceSettings",
    "STATE_DIR",
    "connect_host",
    "default_data_dir",
    "valid_service_id",
    "ModelId",
    "valid_model_id",
    # What models are made of
    "DefaultText",
    "Flag",
    "Port",
    "Settings",
    "default",
]
