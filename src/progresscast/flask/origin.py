"""Cross-site protection for callers identified by a cookie.

A browser sends the app's session cookie with every request to the app,
whichever site started it. So a request whose identity came from the
cookie (a ``user_loader``), rather than from a bearer token, acts for the
user only when it comes from the app's own origin or an allowed one:

- state-changing REST calls (POST, PUT, PATCH, DELETE);
- Socket.IO connects: a websocket is not subject to CORS at all, and the
  app's own ``cors_allowed_origins`` may be wider than ours. A connect must
  show where it comes from (:func:`same_site_connect`).

The check follows the browsers' own signals, as Go's CrossOriginProtection
does: ``Sec-Fetch-Site`` when the browser sends it, else ``Origin`` against
the request's host. A request with neither does not come from a browser
page, so no cookie was sent on anyone's behalf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from progresscast import Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def own_origins(environ: Mapping[str, Any]) -> set[str]:
    """The origins this request's own site goes by: its Host, and the host
    and scheme a proxy forwarded."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST", "")
    origins = {f"{scheme}://{host}"}
    fwd_host = environ.get("HTTP_X_FORWARDED_HOST")
    if fwd_host:
        fwd_scheme = environ.get("HTTP_X_FORWARDED_PROTO", scheme).split(",")[0].strip()
        origins.add(f"{fwd_scheme}://{fwd_host.split(',')[0].strip()}")
    return origins


def same_site_request(environ: Mapping[str, Any], allowed: Iterable[str] = ()) -> bool:
    """Whether a browser sent this request from the app's own origin (or an
    ``allowed`` one), or no browser page sent it at all."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and origin in allowed:
        return True
    fetch_site = environ.get("HTTP_SEC_FETCH_SITE")
    if fetch_site is not None:  # set by the browser itself; pages cannot forge it
        # "none": typed in the address bar or a bookmark, never a page's doing.
        return fetch_site in ("same-origin", "none")
    if origin is None:
        return True  # not sent by a browser page
    return origin in own_origins(environ)


def same_site_connect(environ: Mapping[str, Any], allowed: Iterable[str] = ()) -> bool:
    """Whether a Socket.IO handshake comes from the app's own pages (or an
    ``allowed`` origin), shown by the browser itself. Stricter than
    :func:`same_site_request`: a cross-site ``<script>`` tag (JSONP
    long-polling) sends no ``Origin``, and an older browser no
    ``Sec-Fetch-Site`` either, so silence is not taken for consent here.
    Browsers send ``Origin`` on every websocket handshake and
    ``Sec-Fetch-Site`` on their polling requests."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None:
        return origin in allowed or origin in own_origins(environ)
    return environ.get("HTTP_SEC_FETCH_SITE") == "same-origin"


def check_cookie_write(environ: Mapping[str, Any], method: str, allowed: Iterable[str]) -> None:
    """Refuse a cookie-authenticated write that a foreign page sent."""
    if method in SAFE_METHODS:
        return
    if not same_site_request(environ, allowed):
        raise Forbidden(
            "cross-site request refused: a request signed in by cookie must come from"
            " this site's own pages (or send a bearer token)"
        )


def socket_origins(origins: list[str]):
    """Engine.IO's ``cors_allowed_origins``, for an app that builds its own
    ``SocketIO``: the server's own origin, plus ``origins`` when configured
    (a bare list would lock out the app's own pages)."""
    if not origins:
        return None
    if "*" in origins:
        return "*"
    allowed = set(origins)

    def allow(origin: str | None, environ: dict) -> bool:
        return origin is None or origin in allowed or origin in own_origins(environ)

    return allow
