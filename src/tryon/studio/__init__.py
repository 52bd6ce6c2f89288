"""The try-on studio: ``tryon studio``, a web page over the local stack or a deployed one (docs/studio.md).

Heavy (Starlette, uvicorn, the local stack): never imported by ``tryon.core`` or ``tryon.workflow``.
:mod:`~tryon.studio.backend` is the page's work on a stack (``tryon submit``'s code path),
:mod:`~tryon.studio.local_stack` the local stack as one, :mod:`~tryon.studio.form` the fields from the
schema's rows, :mod:`~tryon.studio.app` the web app, :mod:`~tryon.studio.launch` the server.
"""
