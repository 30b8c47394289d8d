"""The farm's client side: the Python SDK (:class:`Client`) and the ``fresco`` command line.

This subpackage needs only the base install (httpx, pydantic, pydantic-settings):

    pip install .              # the SDK and the CLI
    pip install '.[api]'       # plus the API, migrations, sweeper and Flower
    pip install '.[worker]'    # plus a render worker (torch, diffusers)

Nothing here imports the server packages (``api``, ``worker``, ``db``) at import time; a
server-side command (``fresco keys create``) imports them when it runs and says which extra
to install if they are missing.
"""
from fresco.client.sdk import ApiError, Client

__all__ = ["ApiError", "Client"]
