"""The dashboard's posts: sign in and out, rollback, conclude, upload; and the live poll.

Role: every post reads its small form (or, for an upload, the raw file body
sent by the page's script with the token in ``X-CSRF-Token``), checks the
CSRF token first, then the permission of the REST twin (``Viewer.need``: a
403, audited, even when the page never offered the button), then calls the
same use case as the REST route (``WriteService.rollback_endpoint``,
``.conclude_experiment``, ``CreateService.create_model``, the upload route's
handler) and shows the commit it made.

- ``GET/POST /login``: a token field; a token that verifies as a bearer
  token becomes the ``llmops_token`` cookie (HttpOnly, SameSite=Strict,
  Secure over https); ``POST /logout`` clears it;
- ``POST /serving/endpoints/{id}/rollback``; ``POST
  /prompts/experiments/{id}/conclude`` (``winner``, ``notes``);
- ``GET/POST /catalog/models/new``: registers a model version
  (``CreateService.create_model``, ``models:create``), then offers its upload;
- ``POST /catalog/models/{id}/upload``: the page's script sends the chosen
  files as one multipart body (progress shown); the REST route's handler
  streams them to S3 and records them in one commit;
- ``GET /live/runs``: the newest run's id and result (JSON), which the
  pages poll to refresh themselves when a run finishes.

Input: forms, the caller, the write service. Output: pages, redirects,
JSON. Caller: ``llmops.api.dashboard.mount``.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from llmops.api import auth, errors
from llmops.api.dashboard import session
from llmops.api.dashboard.session import PageRoute, ViewerDep, render
from llmops.api.deps import SettingsDep, StoreDep, WritesDep
from llmops.api.routes import reconcile
from llmops.api.routes import writes as write_routes
from llmops.engine import errors as engine_errors
from llmops.engine.errors import LlmopsError
from llmops.engine.service import creates
from llmops.engine.service.access import Caller
from llmops.engine.service.writes import Committed
from llmops.engine.spec.schema import DataClassification, ModelType, Permission

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_FIELD = 65536
SESSION_SECONDS = 12 * 3600
MODEL_METADATA = ("framework", "data_classification", "description", "base_model")


async def _form(request: Request) -> dict[str, str]:
    """The posted form's text fields (a field given twice keeps its first value)."""
    form = await request.form(max_files=0, max_fields=20)
    fields: dict[str, str] = {}
    for name, value in form.multi_items():
        if isinstance(value, str) and name not in fields:
            if len(value) > MAX_FIELD:
                raise errors.BadRequest(f"form field {name!r} is longer than {MAX_FIELD} "
                                        "characters", {"field": name})
            fields[name] = value
    return fields


def _caller(viewer: session.Viewer, template: str) -> Caller:
    principal = viewer.principal
    return Caller(user=principal.user, roles=principal.roles, teams=principal.teams,
                  method=principal.method, via=f"POST {template}")


def _safe_next(target: str) -> str:
    """Only a local path (never another host) to go to after signing in."""
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//")
            or "\\" in target):
        return "/"
    return target


def _committed(viewer: session.Viewer, title: str, done: Committed,
               back: str) -> HTMLResponse:
    return render(viewer.request, "committed.html", viewer=viewer, title=title, done=done,
                  back=back)


# --------------------------------------------------------------------------- session


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request,
               next: Annotated[str, Query(max_length=2048)] = "/") -> HTMLResponse:
    """The sign-in form (a bearer token, kept in an HttpOnly cookie)."""
    return render(request, "login.html", viewer=None, next=_safe_next(next), error="",
                  csrf=session.csrf_token(request, ""))


@router.post("/login", response_model=None)
async def login(request: Request, cfg: SettingsDep) -> Response:
    fields = await _form(request)
    session.check_csrf(request, "", fields.get(session.CSRF_FIELD))
    target = _safe_next(fields.get("next", "/"))
    try:
        auth.principal_from_token(fields.get("token", "").strip(), cfg.api)
    except errors.Unauthorized as exc:
        return render(request, "login.html", viewer=None, next=target, status_code=401,
                      error=exc.message, csrf=session.csrf_token(request, ""))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(session.TOKEN_COOKIE, fields["token"].strip(), httponly=True,
                        samesite="strict", secure=request.url.scheme == "https",
                        max_age=SESSION_SECONDS, path="/")
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request, viewer: ViewerDep) -> Response:
    fields = await _form(request)
    session.check_csrf(request, viewer.user, fields.get(session.CSRF_FIELD))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(session.TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# --------------------------------------------------------------------------- writes


@router.post("/serving/endpoints/{endpoint_id}/rollback", response_class=HTMLResponse)
async def rollback(request: Request, viewer: ViewerDep, writes: WritesDep,
                   endpoint_id: str) -> HTMLResponse:
    """The endpoint's previous spec, committed (``serving:rollback``)."""
    fields = await _form(request)
    session.check_csrf(request, viewer.user, fields.get(session.CSRF_FIELD))
    viewer.need(Permission.SERVING_ROLLBACK)
    environment = fields.get("environment") or None
    caller = _caller(viewer, "/serving/endpoints/{endpoint_id}/rollback")
    done = await anyio.to_thread.run_sync(
        lambda: writes.rollback_endpoint(caller, endpoint_id, environment=environment))
    back = f"/serving/endpoints/{endpoint_id}" + (f"?environment={environment}"
                                                  if environment else "")
    return _committed(viewer, f"Rollback of {done.name}", done, back)


@router.post("/prompts/experiments/{experiment_id}/conclude", response_class=HTMLResponse)
async def conclude(request: Request, viewer: ViewerDep, writes: WritesDep,
                   experiment_id: str) -> HTMLResponse:
    """``state: concluded`` with the winner and notes, committed (``prompts:conclude``)."""
    fields = await _form(request)
    session.check_csrf(request, viewer.user, fields.get(session.CSRF_FIELD))
    viewer.need(Permission.PROMPTS_CONCLUDE)
    winner = fields.get("winner", "").strip()
    if not winner:
        raise errors.BadRequest("choose the winning variant (field winner)",
                                {"field": "winner"})
    environment = fields.get("environment") or None
    notes = fields.get("notes", "").strip() or None
    caller = _caller(viewer, "/prompts/experiments/{experiment_id}/conclude")
    done = await anyio.to_thread.run_sync(
        lambda: writes.conclude_experiment(caller, experiment_id, winner, notes,
                                           environment=environment))
    return _committed(viewer, f"Conclusion of {done.name}", done,
                      f"/prompts/experiments/{experiment_id}")


@router.post("/catalog/models/{model_id}/upload", response_model=None)
async def upload(request: Request, viewer: ViewerDep, writes: WritesDep, model_id: str,
                 filename: Annotated[str | None, Query(min_length=1, max_length=200)] = None
                 ) -> Response:
    """Model files (multipart ``files``, or one raw body) to S3 and the model's spec, one
    commit (``models:upload``): the REST route's own handler, for this page's caller."""
    session.check_csrf(request, viewer.user, request.headers.get(session.CSRF_HEADER))
    viewer.need(Permission.MODELS_UPLOAD)
    caller = _caller(viewer, "/catalog/models/{model_id}/upload")
    done = (await write_routes.upload_model_files(request, writes, caller, model_id,
                                                  filename)).data
    return JSONResponse({"commit": done.commit, "branch": done.branch, "direct": done.direct,
                         "storageUri": done.storage_uri,
                         "files": [{"name": f.name, "size": f.size, "sha256": f.sha256}
                                   for f in done.files]})


def _new_model_page(viewer: session.Viewer, *, form: dict[str, str], error: str = "",
                    status_code: int = 200, done: creates.Created | None = None
                    ) -> HTMLResponse:
    return render(viewer.request, "model_new.html", viewer=viewer, form=form, error=error,
                  done=done, status_code=status_code, types=[t.value for t in ModelType],
                  classifications=[c.value for c in DataClassification])


@router.get("/catalog/models/new", response_class=HTMLResponse)
def new_model_page(viewer: ViewerDep) -> HTMLResponse:
    """The form that registers a model version (``models:create``)."""
    viewer.need(Permission.MODELS_CREATE)
    return _new_model_page(viewer, form={})


@router.post("/catalog/models/new", response_class=HTMLResponse)
async def new_model(request: Request, viewer: ViewerDep, writes: WritesDep) -> HTMLResponse:
    """A draft Model spec committed by the create use case; then its upload form."""
    fields = await _form(request)
    session.check_csrf(request, viewer.user, fields.get(session.CSRF_FIELD))
    viewer.need(Permission.MODELS_CREATE)
    metadata = {key: fields[key].strip() for key in MODEL_METADATA if fields.get(key, "").strip()}
    new = creates.NewModel(name=fields.get("name", "").strip(),
                           version=fields.get("version", "").strip(),
                           type=fields.get("type", "").strip(),
                           owner_team=fields.get("owner_team", "").strip(), metadata=metadata)
    caller = _caller(viewer, "/catalog/models/new")
    try:
        done = await anyio.to_thread.run_sync(
            lambda: creates.CreateService(writes).create_model(caller, new))
    except LlmopsError as exc:
        kind = engine_errors.category(exc)
        if kind is None:
            raise
        issues = (errors.category_data(exc) or {}).get("issues") or []
        detail = "; ".join(f"{i.get('field', '')}: {i.get('message', '')}" for i in issues)
        return _new_model_page(viewer, form=fields, status_code=errors.STATUS_OF[kind],
                               error=f"{exc}{f' ({detail})' if detail else ''}")
    return _new_model_page(viewer, form={}, done=done, status_code=201)


# --------------------------------------------------------------------------- live


@router.get("/live/runs", response_model=None)
def live_runs(viewer: ViewerDep, store: StoreDep) -> Response:
    """The newest run (id, environment, result), polled by the pages."""
    viewer.need(Permission.RECONCILE_READ)
    newest = reconcile.list_runs(store, limit=1).data.items
    body = ({"id": newest[0].id, "environment": newest[0].environment,
             "result": newest[0].result} if newest else {"id": 0})
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
