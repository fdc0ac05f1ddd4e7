"""Third-party browser files from node_modules (fetched by npm, never
committed): the Socket.IO client for the pages, Swagger UI for /api/docs."""

from __future__ import annotations

import os

from flask import Blueprint, abort, current_app, send_from_directory

vendor = Blueprint("vendor", __name__)

#: /vendor/<prefix>/<file> → the npm package folder it is served from.
VENDOR = {
    "socket.io": ("socket.io-client", "dist"),
    "swagger-ui": ("swagger-ui-dist",),
}


@vendor.get("/vendor/<prefix>/<path:filename>")
def vendor_file(prefix: str, filename: str):
    if prefix not in VENDOR:
        abort(404)
    folder = os.path.join(current_app.config["NODE_MODULES_DIR"], *VENDOR[prefix])
    if not os.path.isdir(folder):
        abort(404, description=f"{VENDOR[prefix][0]} is not installed: run `make setup`")
    return send_from_directory(folder, filename, max_age=3600)
