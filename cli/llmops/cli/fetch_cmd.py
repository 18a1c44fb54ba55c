"""`llmops fetch-model`: copy a model's files from S3 into a directory and verify them.

Run by the init container of every serving and training pod the renderers
emit (``llmops.renderers.serving``): the storage URI and the file list (name,
sha256, size, as the Model spec records them) arrive as options or as the
environment variables ``LLMOPS_MODEL_URI`` and ``LLMOPS_MODEL_FILES`` (JSON);
the S3 endpoint, region and timeouts come from the settings
(``LLMOPS_S3__ENDPOINT_URL``, ...), credentials from the usual AWS sources
(a Secret's ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or the pod's
workload identity). Registered on the ``llmops`` group by ``llmops.cli``.

Exit 0 when every file is in place and verified, 1 when a file is missing,
altered or S3 cannot be reached (the message names the file and the object),
so the pod never starts its model server on an incomplete model.
"""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import TypeAdapter, ValidationError

from llmops.engine import settings
from llmops.engine.spec import schema
from llmops.engine.store import modelfetch

_FILES = TypeAdapter(list[schema.StoredFile])


def parse_files(text: str) -> list[schema.StoredFile]:
    """The ``--files`` JSON as model files; a clear ``BadRequest`` naming the entry otherwise."""
    try:
        return _FILES.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise modelfetch.BadRequest(f"--files / LLMOPS_MODEL_FILES: {where}: "
                                    f"{first['msg']}") from None


@click.command("fetch-model")
@click.option("--uri", envvar="LLMOPS_MODEL_URI", required=True,
              help="s3://<bucket>/models/<name>/<version>/ [env LLMOPS_MODEL_URI]")
@click.option("--dest", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to copy the files into (created if missing).")
@click.option("--files", "files_json", envvar="LLMOPS_MODEL_FILES", required=True,
              help="JSON list of {name, sha256, size} [env LLMOPS_MODEL_FILES].")
def fetch_model(uri: str, dest: Path, files_json: str) -> None:
    """Copy a model's files from S3 into DEST, verify each sha256, resume partial copies."""
    files = parse_files(files_json)
    cfg = settings.load()
    result = modelfetch.fetch(modelfetch.reader(cfg.s3), uri, dest, files)
    click.echo(f"{uri} -> {dest}: {len(files)} files verified "
               f"({len(result.copied)} copied, {len(result.resumed)} resumed, "
               f"{len(result.present)} already present; "
               f"{result.bytes_downloaded} bytes downloaded)")
