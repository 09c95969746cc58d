# syntax=docker/dockerfile:1
#
# One image for all four Minyi services (intake, routing, notification,
# evaluation) and their one-shot migrate/seed commands. The entrypoint is
# `python -m`, so the command picks what runs:
#
#   docker run minyi:latest services.intake serve          # the default
#   docker run minyi:latest services.routing migrate
#
# No HEALTHCHECK here: each service listens on its own port (8001-8004) and the
# same image runs one-shot jobs, so the probes live in docker-compose.yml and
# the Kubernetes manifests. curl is not in the slim image; use
#   python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/health/live', timeout=3)"

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project and its dependencies into a virtualenv ------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# .dockerignore keeps .venv, .stack, .git, caches, tests and docs out.
COPY . .
RUN pip install --no-cache-dir .

# --- runtime: the virtualenv only, run as an unprivileged user ---------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="minyi" \
      org.opencontainers.image.description="Minyi services: intake, routing, notification, evaluation"

# The MINYI_*__HTTP__* lines make each service listen on all interfaces inside
# a container (its own default is loopback). Host and port go together: an
# `http` section read from the environment replaces the service's default one,
# so HOST alone would leave it without a port (and the settings refuse that).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MINYI_INTAKE__HTTP__HOST=0.0.0.0 \
    MINYI_INTAKE__HTTP__PORT=8001 \
    MINYI_ROUTING__HTTP__HOST=0.0.0.0 \
    MINYI_ROUTING__HTTP__PORT=8002 \
    MINYI_NOTIFICATION__HTTP__HOST=0.0.0.0 \
    MINYI_NOTIFICATION__HTTP__PORT=8003 \
    MINYI_EVALUATION__HTTP__HOST=0.0.0.0 \
    MINYI_EVALUATION__HTTP__PORT=8004

# Fixed numeric ids so Kubernetes' runAsNonRoot can check them.
RUN groupadd --system --gid 10001 minyi \
 && useradd --system --uid 10001 --gid minyi --home-dir /home/minyi --create-home \
        --shell /usr/sbin/nologin minyi

COPY --from=build /opt/venv /opt/venv

WORKDIR /home/minyi
USER 10001:10001

# intake, routing, notification, evaluation
EXPOSE 8001 8002 8003 8004

ENTRYPOINT ["python", "-m"]
CMD ["services.intake", "serve"]
