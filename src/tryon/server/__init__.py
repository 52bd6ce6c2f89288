"""The local endpoint server: the model handlers behind SageMaker's HTTP contracts (heavy).

:mod:`~tryon.server.asgi` holds the app and the server, :mod:`~tryon.server.registry` the
endpoints and their models, :mod:`~tryon.server.invoke` one invocation's limits and errors,
:mod:`~tryon.server.async_api` the asynchronous inference API.
"""

from tryon.server.asgi import (
    CONTAINER_MAX_BODY_BYTES,
    TIMEOUT_MESSAGE,
    EndpointConfig,
    EndpointLoadError,
    LocalEndpointServer,
    ModelRegistry,
    create_app,
    runtime_client,
)

__all__ = [
    "CONTAINER_MAX_BODY_BYTES",
    "TIMEOUT_MESSAGE",
    "EndpointConfig",
    "EndpointLoadError",
    "LocalEndpointServer",
    "ModelRegistry",
    "create_app",
    "runtime_client",
]
