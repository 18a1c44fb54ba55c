"""The HTTP face of the emulator: routing, request decoding, faults, admin endpoints.

Input: HTTP requests on loopback from the official `kubernetes` client, kubectl
or anything else holding the kubeconfig. Output: apiserver-shaped JSON
responses. `EmulatorServer` owns the `Store`, `Controllers`, `Faults` and
`Stats` and is what tests hold (see `tests/kube_emulator/__init__.py`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import catalog, errors, faults, tables
from .catalog import ResourceType
from .controllers import Controllers
from .store import Options, Store, Write


class _Request:
    """A resource request decoded from the URL."""

    def __init__(self, rt: ResourceType, namespace: str | None, name: str | None,
                 subresource: str) -> None:
        self.rt, self.namespace, self.name, self.subresource = rt, namespace, name, subresource


def _not_found_path() -> errors.ApiError:
    return errors.ApiError(404, "NotFound", "the server could not find the requested resource",
                           {})


def route(path: str) -> _Request | dict[str, Any]:
    """A resource request, or the body of a discovery document."""
    parts = [p for p in path.split("/") if p]
    doc: dict[str, Any] | None = None
    if parts == ["version"]:
        return catalog.version_info()
    if parts == ["api"]:
        return catalog.core_versions()
    if parts == ["apis"]:
        return catalog.api_group_list()
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) == 2 and parts[0] == "apis":
        doc = catalog.api_group(parts[1])
        if doc is None:
            raise _not_found_path()
        return doc
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _not_found_path()
    if not rest:
        doc = catalog.resource_list(group, version)
        if doc is None:
            raise _not_found_path()
        return doc
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and catalog.by_url(group, version, rest[2]):
        namespace, rest = rest[1], rest[2:]
    rt = catalog.by_url(group, version, rest[0])
    if rt is None or len(rest) > 3:
        raise _not_found_path()
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else ""
    if sub and (sub != "status" or not rt.has_status):
        raise _not_found_path()
    if name is not None and rt.namespaced != (namespace is not None):
        raise _not_found_path()
    if not rt.namespaced and namespace is not None:
        raise _not_found_path()
    return _Request(rt, namespace, name, sub)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes
    server_version = "kube-emulator"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read counters, not logs

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ---- plumbing --------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err: errors.ApiError) -> None:
        self._send(err.code, err.status(), err.headers)

    def _handle(self, method: str) -> None:
        emulator = self.server.emulator
        url = urlsplit(self.path)
        raw = self._body()
        if url.path.startswith("/__emulator/"):
            self._admin(method, url.path, raw)
            return
        emulator.stats.count(method, url.path)
        fault = emulator.faults.take(method, url.path)
        if fault is not None:
            if fault.action == "drop":
                self.close_connection = True
                return
            if fault.action == "hang":
                emulator.faults.release.wait(fault.seconds)
            else:
                reason = faults.ERROR_REASONS.get(fault.status, "InternalError")
                headers = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else {}
                details = {"retryAfterSeconds": fault.retry_after} if fault.status == 429 else None
                self._error(errors.ApiError(fault.status, reason, fault.message, details,
                                            headers))
                return
        try:
            auth = self.headers.get("Authorization")
            # client-go (kubectl) sends no token over plain HTTP: only a wrong one is refused.
            if emulator.token and auth is not None and auth != f"Bearer {emulator.token}":
                raise errors.ApiError(401, "Unauthorized", "Unauthorized")
            code, body = self._dispatch(method, url.path, parse_qs(url.query), raw)
        except errors.ApiError as err:
            self._error(err)
        else:
            self._send(code, body)
        finally:
            emulator.store.flush_events()

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]],
                  raw: bytes) -> tuple[int, Any]:
        if path in ("/healthz", "/readyz", "/livez"):
            return 200, "ok"
        if path in ("/openapi/v3", "/openapi/v3/"):
            return 200, catalog.openapi_v3_index()
        if path.startswith("/openapi/v3/"):
            doc = catalog.openapi_v3_group_version(path.removeprefix("/openapi/v3/"))
            if doc is None:
                raise _not_found_path()
            return 200, doc
        if path.startswith("/openapi/"):
            raise _not_found_path()  # no v2 schemas
        target = route(path)
        if isinstance(target, dict):
            if method != "GET":
                raise errors.method_not_allowed("the server does not allow this method on the "
                                                "requested resource")
            return 200, target
        return self._resource(method, target, query, raw)

    def _resource(self, method: str, req: _Request, query: dict[str, list[str]],
                  raw: bytes) -> tuple[int, Any]:
        store = self.server.emulator.store
        rt, ns, name = req.rt, req.namespace or "", req.name

        def q(key: str, default: str = "") -> str:
            return query.get(key, [default])[-1]

        dry = query.get("dryRun", [])
        if any(d != "All" for d in dry):
            raise errors.bad_request(f"Invalid dry run value: {dry}")
        verb = {"GET": "list" if name is None else "get", "POST": "create", "PUT": "update",
                "PATCH": "patch",
                "DELETE": "deletecollection" if name is None else "delete"}[method]
        if verb not in rt.verbs and not (req.subresource and verb in ("get", "update", "patch")):
            raise errors.method_not_allowed("the server does not allow this method on the "
                                            "requested resource")
        user_agent = self.headers.get("User-Agent") or "unknown"
        opts = Options(manager=q("fieldManager") or user_agent.split("/")[0],
                       dry_run=bool(dry), force=q("force") in ("true", "True", "1"),
                       subresource=req.subresource)
        if method == "GET":
            if q("watch") in ("true", "1"):
                raise errors.method_not_allowed("watch is not supported by the kube emulator")
            if name is None:
                body = store.list_items(rt, req.namespace if rt.namespaced else "",
                                  q("labelSelector") or None, q("fieldSelector") or None,
                                  int(q("limit") or 0), q("continue") or None)
            else:
                body = store.get(rt, ns, name)
            if "as=Table" in (self.headers.get("Accept") or ""):
                return 200, tables.to_table(rt, body, q("includeObject") or "Metadata")
            return 200, body
        if method == "POST":
            if name is not None or (rt.namespaced and req.namespace is None):
                raise errors.method_not_allowed("the server does not allow this method on the "
                                                "requested resource")
            return 201, store.create(rt, ns, _decode(raw, self.headers), opts)
        if method == "DELETE":
            delete_opts = _decode(raw, self.headers) if raw else {}
            if "All" in (delete_opts.get("dryRun") or []):
                opts.dry_run = True
            policy = q("propagationPolicy") or delete_opts.get("propagationPolicy") or (
                "Orphan" if delete_opts.get("orphanDependents") else "Background")
            if name is None:
                return 200, store.delete_collection(
                    rt, req.namespace if rt.namespaced else "", q("labelSelector") or None,
                    q("fieldSelector") or None, opts, policy)
            return 200, store.delete(rt, ns, name, opts, policy,
                                     delete_opts.get("preconditions"))
        assert name is not None
        if method == "PUT":
            return 200, store.replace(rt, ns, name, _decode(raw, self.headers), opts)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        # As kube-apiserver: 201 when the apply creates the object, a dry run's too.
        created = content_type == "application/apply-patch+yaml" and _absent(store, rt, ns, name)
        return (201 if created else 200), store.patch(rt, ns, name, content_type, raw, opts)

    # ---- admin ------------------------------------------------------------------------

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        emulator = self.server.emulator
        what = path.removeprefix("/__emulator/").strip("/")
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            self._error(errors.bad_request("admin body must be JSON"))
            return
        if what == "stats" and method == "GET":
            self._send(200, emulator.stats_dict())
        elif what == "faults" and method == "GET":
            self._send(200, [f.as_dict() for f in emulator.faults.pending()])
        elif what == "faults" and method == "POST":
            fields = {k: v for k, v in data.items() if k != "hits"}
            try:
                fault = emulator.faults.add(faults.Fault(**fields))
            except (TypeError, ValueError) as exc:
                self._error(errors.bad_request(str(exc)))
                return
            self._send(201, fault.as_dict())
        elif what == "faults" and method == "DELETE":
            emulator.faults.clear()
            self._send(200, {})
        elif what == "reset" and method == "POST":
            emulator.reset_counters()
            self._send(200, {})
        elif what == "objects" and method == "GET":
            self._send(200, emulator.objects())
        elif what == "controllers" and method == "POST":
            if "enabled" in data:
                emulator.controllers.enabled = bool(data["enabled"])
            if "delay" in data:
                emulator.controllers.delay = float(data["delay"])
            if "state" in data:
                s = data["state"]
                emulator.controllers.set_state(s["kind"], s.get("namespace", ""), s["name"],
                                               s["state"])
            emulator.controllers.reconcile_all()
            self._send(200, {"enabled": emulator.controllers.enabled,
                             "delay": emulator.controllers.delay})
        else:
            self._error(_not_found_path())


def _absent(store: Store, rt: ResourceType, ns: str, name: str) -> bool:
    with store.lock:
        return (rt, ns, name) not in store.objects


def _decode(raw: bytes, headers: Any) -> Any:
    content_type = (headers.get("Content-Type") or "application/json").split(";")[0].strip()
    if "json" not in content_type and "yaml" not in content_type:
        raise errors.ApiError(415, "UnsupportedMediaType",
                              f"the body of the request was in an unknown format - accepted "
                              f"media types include: application/json, application/yaml "
                              f"(got {content_type!r}; protobuf is not emulated)")
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw.decode())
        return json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from exc


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    emulator: EmulatorServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            return  # the client went away (timed out, or a dropped-connection fault)
        super().handle_error(request, client_address)


class EmulatorServer:
    """A running Kubernetes API emulator on 127.0.0.1.

    Attributes a test uses: `url`, `store` (state), `faults` (injection),
    `stats` (request counters), `controllers` (status simulation), and the
    helpers below (`writes`, `get`, `objects`, `reset_counters`,
    `write_kubeconfig`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = "emulator-token", controllers: bool = True,
                 controller_delay: float = 0.0) -> None:
        self.token = token
        self.store = Store()
        self.faults = faults.Faults()
        self.stats = faults.Stats()
        self.controllers = Controllers(self.store, controllers, controller_delay)
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.emulator = self
        self._thread: threading.Thread | None = None
        self._write_mark = len(self.store.writes)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="kube-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.faults.release.set()
        self.controllers.stop()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what tests read -------------------------------------------------------------

    def writes(self, actor: str | None = "client") -> list[Write]:
        """Committed writes since the last `reset_counters()`; `actor=None` for all
        (client, controller, gc, system)."""
        with self.store.lock:
            log = self.store.writes[self._write_mark:]
        return [w for w in log if actor is None or w.actor == actor]

    def write_count(self) -> int:
        return len(self.writes())

    def reset_counters(self) -> None:
        """Forget request counts and the write log (state stays)."""
        self.stats.reset()
        with self.store.lock:
            self._write_mark = len(self.store.writes)

    def get(self, api_version: str, kind: str, name: str,
            namespace: str = "") -> dict[str, Any] | None:
        rt = catalog.by_kind(api_version, kind)
        if rt is None:
            raise KeyError(f"{api_version} {kind} is not served by the emulator")
        try:
            return self.store.get(rt, namespace if rt.namespaced else "", name)
        except errors.ApiError:
            return None

    def objects(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.store.lock:
            return [json.loads(json.dumps(r.obj)) for k, r in sorted(
                self.store.objects.items(), key=lambda kv: (kv[0][0].kind, kv[0][1], kv[0][2]))
                if kind is None or k[0].kind == kind]

    def seed(self, obj: dict[str, Any], manager: str = "seed") -> dict[str, Any]:
        """Create an object directly (not counted as a client write)."""
        rt = catalog.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            raise KeyError(f"{obj.get('apiVersion')} {obj.get('kind')} is not served")
        ns = (obj.get("metadata") or {}).get("namespace", "default") if rt.namespaced else ""
        out = self.store.create(rt, ns, obj, Options(manager=manager, actor="seed"))
        self.store.flush_events()
        return out

    def stats_dict(self) -> dict[str, Any]:
        return {
            "resourceVersion": self.store.resource_version,
            "requests": [{"method": m, "path": p, "count": n}
                         for (m, p), n in sorted(self.stats.requests.items())],
            "writes": [w.__dict__ for w in self.writes(None)],
            "clientWrites": self.write_count(),
        }

    def write_kubeconfig(self, path: str | Path, context: str = "emulator",
                         namespace: str = "default") -> Path:
        path = Path(path)
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": user}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                        "namespace": namespace}}],
            "current-context": context,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll `predicate()` until true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


__all__ = ["EmulatorServer", "route", "wait_for"]
