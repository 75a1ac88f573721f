"""Which web pages may open the chat websocket (the ``Origin`` check).

Browsers always send ``Origin`` on a websocket handshake, and a page cannot forge it, so
this is what stops a stranger's site from driving a visitor's chat (cross-site websocket
hijacking). Clients that are not browsers send no Origin and can claim any: for them the
session token is the only credential, as for the API.

The request's own ``Host`` is never a reference: whoever forges the Origin can forge
the Host to match it (and a DNS-rebinding page gets both for free). The service's own
origin is ``public_url``, the one address customers are given.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalise_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port, or None if malformed."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return None
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class OriginPolicy:
    """``allowed`` entries are origins (``https://shop.example.com``), wildcard subdomains
    (``https://*.example.com``) or ``*`` (any site may embed the widget). The service's
    own origin (``public_url``, where the demo page lives) is always allowed."""

    def __init__(self, allowed: Iterable[str], *, public_url: str) -> None:
        self._any = False
        self._exact: set[str] = set()
        self._suffixes: list[tuple[str, str]] = []  # (scheme, ".example.com")
        for entry in allowed:
            entry = entry.strip()
            if entry == "*":
                self._any = True
            elif "://*." in entry:
                scheme, _, rest = entry.partition("://*.")
                self._suffixes.append((scheme.lower(), "." + rest.lower().rstrip("/")))
            elif (norm := normalise_origin(entry)) is not None:
                self._exact.add(norm)
            else:
                raise ValueError(f"not an origin: {entry!r}")
        own = normalise_origin(public_url)
        if own is not None:
            self._exact.add(own)

    def allows(self, origin: str | None) -> bool:
        if origin is None:
            return True  # not a browser (see the module docstring)
        norm = normalise_origin(origin)
        if norm is None:
            return False
        if self._any or norm in self._exact:
            return True
        scheme, _, hostport = norm.partition("://")
        hostname = hostport.split(":", 1)[0]
        return any(scheme == s and hostname.endswith(suffix) for s, suffix in self._suffixes)

