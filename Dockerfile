# syntax=docker/dockerfile:1
# schedule-reconciler: the daemon image.
#
#   docker build -t schedule-reconciler:0.1.0 .
#   docker run --read-only -v state:/var/lib/schedule-reconciler --tmpfs /tmp \
#     -v $PWD/config.yaml:/etc/schedule-reconciler/config.yaml:ro schedule-reconciler:0.1.0
#
# The builder's install steps live in deploy/install.sh, which
# tests/deploy/test_dockerfile.py runs the same way in CI (no Docker engine there).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.8
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    VENV=/opt/venv
WORKDIR /src
RUN pip install "uv==${UV_VERSION}"
# Dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements/runtime.txt requirements/runtime.txt
COPY deploy/install.sh deploy/install.sh
RUN sh deploy/install.sh deps
COPY pyproject.toml README.md ./
COPY reconciler reconciler
COPY providers providers
RUN sh deploy/install.sh project

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="schedule-reconciler" \
      org.opencontainers.image.description="Finds drift between ZenML's schedule registry and the orchestrators that run the schedules, and exports it as Prometheus metrics." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    SCHEDULE_RECONCILER_CONFIG=/etc/schedule-reconciler/config.yaml
COPY --from=builder /opt/venv /opt/venv
# The only writable paths at run time; mount volumes there with a read-only root.
RUN mkdir -p /var/lib/schedule-reconciler /etc/schedule-reconciler \
 && chown 65532:65532 /var/lib/schedule-reconciler
VOLUME ["/var/lib/schedule-reconciler", "/tmp"]
WORKDIR /var/lib/schedule-reconciler
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["schedule-reconciler"]
CMD ["run"]
