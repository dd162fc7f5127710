"""The explorer's HTTP server: stdlib ``ThreadingHTTPServer``, its own three files and a JSON/PNG API.

Routes are an exact-match table, so no request path ever reaches the file system: anything
not listed (``/static/../x``, ``/etc/passwd``, percent-encoded tricks) is a 404.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from ..errors import ReparamError
from .session import BadRequest, Explorer

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/app.css": ("app.css", "text/css; charset=utf-8")}  # fmt: skip
CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'"


class ServeError(ReparamError):
    """A bind address that is not allowed, unknown or already in use."""


def load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files(__package__) / "static"
    return {route: ((folder / name).read_bytes(), ctype) for route, (name, ctype) in STATIC.items()}


def _q(query: dict, key: str, default: str | None = None) -> str:
    values = query.get(key)
    if values:
        return values[0]
    if default is None:
        raise BadRequest(f"missing parameter {key}")
    return default


def _number(query: dict, key: str, kind: type, default: str | None = None):
    try:
        return kind(_q(query, key, default))
    except ValueError:
        raise BadRequest(f"{key} must be a{'n integer' if kind is int else ' number'}") from None


#: Each API route's query parameters: any other, or one given twice, is a 400, never ignored.
PARAMETERS = {
    "/api/meta": (), "/api/decode.png": ("z", "label"), "/api/test.png": ("i",), "/api/encode": ("i",),
    "/api/interpolate.png": ("a", "b", "t", "kind", "label"), "/api/samples.png": ("n", "seed", "temperature", "label"),
    "/api/sample": ("seed", "temperature", "label"),
}  # fmt: skip  (label: a conditional run's class)


def check_parameters(route: str, q: dict) -> None:
    """BadRequest for a parameter the route does not take, or one given more than once."""
    valid = PARAMETERS[route]
    for key, values in q.items():
        if key not in valid:
            raise BadRequest(f"{route} takes no parameter {key!r}; its parameters: {', '.join(valid) or 'none'}")
        if len(values) > 1:
            raise BadRequest(f"parameter {key} is given {len(values)} times; give it once")


def api(ex: Explorer, route: str, q: dict) -> tuple[bytes, str] | None:
    """Answer one API route with (body, content type); None for an unknown route."""
    if route not in PARAMETERS:
        return None
    check_parameters(route, q)
    if route == "/api/meta":
        return _json(ex.meta())
    label = ex.label_arg(_q(q, "label", ""))  # a conditional run's class; None: its default
    if route == "/api/decode.png":
        return ex.decode_png(ex.latent_arg(_q(q, "z")), label), "image/png"
    if route == "/api/test.png":
        return ex.test_png(ex.index_arg(_q(q, "i"))), "image/png"
    if route == "/api/encode":
        return _json(ex.encode(ex.index_arg(_q(q, "i"))))
    if route == "/api/interpolate.png":
        a, b = ex.index_arg(_q(q, "a")), ex.index_arg(_q(q, "b"))
        return ex.interpolate_png(a, b, _number(q, "t", float), _q(q, "kind", "linear"), label), "image/png"
    seed, temp = _number(q, "seed", int, "0"), _number(q, "temperature", float, "1")
    if route == "/api/samples.png":
        return ex.samples_png(_number(q, "n", int, "1"), seed, temp, label), "image/png"
    return _json({"z": [round(float(v), 4) for v in ex.sample(1, seed, temp, label)[0]]})  # /api/sample


def _json(obj) -> tuple[bytes, str]:
    return json.dumps(obj).encode(), "application/json"


class Handler(BaseHTTPRequestHandler):
    """GET only; the server object carries ``explorer``, ``static`` and ``allowed_hosts``."""

    server: Server
    server_version = "reparam-explore"
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    disable_nagle_algorithm = True  # headers and body leave at once, no 40 ms delayed-ACK stall

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        hosts = self.server.allowed_hosts
        if hosts is not None and self.headers.get("Host", "") not in hosts:
            return self._send(HTTPStatus.FORBIDDEN, b"unexpected Host header\n", "text/plain")
        parts = urlsplit(self.path)
        if parts.path in self.server.static:
            return self._send(HTTPStatus.OK, *self.server.static[parts.path])
        try:
            answer = api(self.server.explorer, parts.path, parse_qs(parts.query))
        except BadRequest as e:
            return self._send(HTTPStatus.BAD_REQUEST, *_json({"error": str(e)}))
        except Exception as e:  # a failing decode must answer, not drop the connection
            self.log_error("%s failed: %r", parts.path, e)
            return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, *_json({"error": f"{type(e).__name__}: {e}"}))
        if answer is None:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        self._send(HTTPStatus.OK, *answer)

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class Server(ThreadingHTTPServer):
    """One explorer behind a threading HTTP server on an IPv4 or IPv6 address."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, explorer: Explorer):
        self.address_family = family
        self.explorer, self.static, self.verbose = explorer, load_static(), False
        self.allowed_hosts: set[str] | None = None
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def resolve(host: str, allow_remote: bool) -> socket.AddressFamily:
    """The address family to bind ``host`` with; ServeError if unknown, or not loopback unless allowed."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ServeError(f"cannot resolve --host {host!r} ({getattr(e, 'strerror', None) or e})") from None
    local = all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)
    if not local and not allow_remote:
        raise ServeError(
            f"--host {host} is not a loopback address; the explorer has no authentication, "
            "pass --allow-remote to serve it to other machines"
        )
    return infos[0][0]


def bind_error(e: OSError, host: str, port: int) -> ServeError:
    if e.errno == errno.EADDRINUSE:
        return ServeError(f"port {port} on {host} is already in use; choose another --port (0 picks a free one)")
    if e.errno == errno.EACCES:
        return ServeError(f"no permission to listen on port {port}; choose a --port above 1023")
    return ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})")


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False) -> Server:
    """Bind (without serving yet); raises ServeError for a refused, unknown or busy address."""
    if not 0 <= port <= 65535:
        raise ServeError(f"--port must be in 0..65535, got {port}")
    family = resolve(host, allow_remote)
    try:
        server = Server((host, port), family, explorer)
    except OSError as e:
        raise bind_error(e, host, port) from None
    if not allow_remote:
        bound = server.server_address[1]
        names = {"127.0.0.1", "localhost", "[::1]", host, f"[{host}]"}
        server.allowed_hosts = {f"{n}:{bound}" for n in names} | names
    return server
