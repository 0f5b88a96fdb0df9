"""Settings of every component, one pydantic model each, with every default in one place.

The deployment file, the ``serve`` flags, ``deploy_*``, LocalMesh and the arguments
``up`` gives its children are derived from these models. This layer imports only
``llama_mesh.core`` (and the generated protos).
"""

from llama_mesh.config.fields import DefaultText, Flag, Port, Settings
from llama_mesh.config.service import RetryConfig, ServiceConfig, ServiceSettings

__all__ = [
    "DefaultText",
    "Flag",
    "Port",
    "RetryConfig",
    "ServiceConfig",
    "ServiceSettings",
    "Settings",
]
