"""The latent-space explorer: a local web page that decodes latents as you move sliders.

    from reparam.explore import Explorer, make_server
    server = make_server(Explorer.open("runs/my-run"), "127.0.0.1", 8765)
    print(server.url); server.serve_forever()
"""

from __future__ import annotations

from .server import ServeError, make_server
from .session import Explorer

__all__ = ["Explorer", "ServeError", "make_server"]
