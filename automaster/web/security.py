"""Guards for a server that listens on localhost but is reachable by every web page the
browser opens: a Host-header check (DNS rebinding), a per-session token (query parameter
``token``, ``Authorization: Bearer`` or the cookie the page sets), and headers that keep
the token out of Referer and the page out of frames.

Pure ASGI middleware: no Starlette import, so it is testable without the ``web`` extra.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from http.cookies import SimpleCookie
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

COOKIE = "automaster_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def new_token() -> str:
    """A fresh session token (32 random bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "[::]")


def allowed_hosts(host: str, port: int) -> set[str]:
    """Host header values accepted for a server bound to ``host``:``port`` (lower case).

    Loopback names always; the bound name or address itself; for a wildcard bind, this
    machine's host name and fully qualified name too. Any other name is what a DNS
    rebinding attack sends, and is refused."""
    names = set(LOOPBACK_NAMES)
    if _is_wildcard(host):
        for n in (socket.gethostname(), socket.getfqdn()):
            if n:
                names.add(n.lower())
    else:
        h = host.lower()
        try:
            if ipaddress.ip_address(h.strip("[]")).version == 6:
                h = f"[{h.strip('[]')}]"
        except ValueError:
            pass
        names.add(h)
    out = set()
    for n in names:
        out.add(f"{n}:{port}")
        if port in (80, 443):
            out.add(n)
    return out


def host_allowed(value: str, allowed: Iterable[str], wildcard_ips: bool = False) -> bool:
    """Is a Host header value acceptable? With ``wildcard_ips`` (a 0.0.0.0 bind), any
    literal IP address with the right port is too: an IP literal cannot be rebound."""
    v = value.strip().lower()
    if v in allowed:
        return True
    if wildcard_ips:
        name, _, port = v.rpartition(":")
        ports = {a.rpartition(":")[2] for a in allowed}
        if port in ports:
            try:
                ipaddress.ip_address(name.strip("[]"))
                return True
            except ValueError:
                return False
    return False


def _headers(scope: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers") or []:
        out[k.decode("latin-1").lower()] = v.decode("latin-1")
    return out


def request_token(scope: dict) -> str | None:
    """The token a request carries: Authorization: Bearer, ?token=, or the cookie."""
    h = _headers(scope)
    auth = h.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if q.get("token"):
        return q["token"][0]
    if "cookie" in h:
        c = SimpleCookie()
        try:
            c.load(h["cookie"])
        except Exception:  # a malformed cookie header is simply no token
            return None
        if COOKIE in c:
            return c[COOKIE].value
    return None


class Guard:
    """ASGI middleware: refuse a bad Host (400) or a missing/wrong token (403); add the
    security headers; set the token cookie when a page is opened with ``?token=``."""

    def __init__(self, app: Callable, token: str, hosts: set[str],
                 wildcard_ips: bool = False) -> None:
        self.app, self.token, self.hosts, self.wildcard_ips = app, token, hosts, wildcard_ips

    async def _refuse(self, send: Callable, status: int, text: str) -> None:
        body = (text + "\n").encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> Any:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = _headers(scope).get("host", "")
        if not host_allowed(host, self.hosts, self.wildcard_ips):
            return await self._refuse(send, 400, "automaster: refused: unexpected Host header "
                                      "(open the address that automaster serve printed)")
        given = request_token(scope)
        if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
            return await self._refuse(send, 403, "automaster: refused: missing or wrong token "
                                      "(open the address with ?token=... that automaster "
                                      "serve printed)")
        q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        set_cookie = scope.get("path") == "/" and bool(q.get("token"))

        async def send_wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                have = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY"),
                         (b"content-security-policy", CSP.encode()),
                         (b"cross-origin-resource-policy", b"same-origin")]
                headers += [(k, v) for k, v in extra if k not in have]
                if b"cache-control" not in have:
                    headers.append((b"cache-control", b"no-store"))
                if set_cookie:
                    headers.append((b"set-cookie", f"{COOKIE}={self.token}; Path=/; HttpOnly; "
                                    f"SameSite=Strict".encode()))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_wrapped)
