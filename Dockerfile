# syntax=docker/dockerfile:1
# The xwatch container image. Build it from the repository root:
#
#   docker build -t xwatch:0.1.0 .
#
# It runs `xwatch run -c /etc/xwatch/xwatch.yaml` as uid 10001 and serves /metrics,
# /healthz and /readyz on port 9464. The config is deploy/config/xwatch.yaml, next to
# rules/ and playbooks/ in /etc/xwatch (mount your own over them); the detector
# checkpoints live in the /var/lib/xwatch volume. Secrets come from the environment.
# deploy/README.md has the compose, systemd and Kubernetes ways to run it.

# --- build: a wheel of xwatch and of every dependency --------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY xwatch ./xwatch
RUN pip wheel --wheel-dir /wheels .

# --- run: the wheels installed offline, no build tools, no source tree ----------------
FROM python:3.11-slim-bookworm
# Logs as JSON lines for the log collector; XWATCH_LOG_FORMAT=text for logfmt.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XWATCH_LOG_FORMAT=json

RUN groupadd --system --gid 10001 xwatch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/xwatch \
        --no-create-home --shell /usr/sbin/nologin xwatch \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/xwatch

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/xwatch-*.whl

COPY rules /etc/xwatch/rules
COPY playbooks /etc/xwatch/playbooks
COPY deploy/config/xwatch.yaml /etc/xwatch/xwatch.yaml

VOLUME ["/var/lib/xwatch"]
WORKDIR /var/lib/xwatch
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 9464
# SIGTERM drains the pipeline (drain_timeout_seconds, 10 s by default): give `docker stop`
# more than that (--time 30; compose: stop_grace_period).
STOPSIGNAL SIGTERM
# The slim image has no curl: Python's urllib. Any error or non-2xx status exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]

ENTRYPOINT ["xwatch"]
CMD ["run", "-c", "/etc/xwatch/xwatch.yaml"]
