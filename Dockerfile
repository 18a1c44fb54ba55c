# syntax=docker/dockerfile:1
# llmops: the CLI, the reconciler daemon, the REST API and the prompt router in one image.
#   docker build -t ghcr.io/llmops/llmops:0.1.0 .
# Pin the base by digest in your registry mirror: resolve it with
#   docker buildx imagetools inspect python:3.11.11-slim-bookworm
# and append @sha256:<digest> to both FROM lines (no digest is resolvable offline here).

# ---- build: a wheel from the source tree --------------------------------------
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN pip install "build==1.2.2.post1" "hatchling==1.27.0"
COPY pyproject.toml README.md ./
COPY engine/ engine/
COPY renderers/ renderers/
COPY api/ api/
COPY cli/ cli/
COPY router/ router/
COPY specs_repo_template/ specs_repo_template/
RUN python -m build --wheel --no-isolation --outdir /dist \
 && python -m venv /opt/llmops \
 && /opt/llmops/bin/pip install /dist/llmops_gitops-*.whl

# ---- runtime: the virtualenv, git, a non-root user ----------------------------
FROM python:3.11.11-slim-bookworm AS runtime
# git: the source stage runs the git binary; ca-certificates: https remotes, S3.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 llmops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/llmops --create-home \
      --shell /usr/sbin/nologin llmops
COPY --from=build /opt/llmops /opt/llmops
ENV PATH=/opt/llmops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LLMOPS_HOME=/var/lib/llmops
WORKDIR /var/lib/llmops
USER 10001:10001
EXPOSE 8080 9464
ENTRYPOINT ["llmops"]
CMD ["--help"]
