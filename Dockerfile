# queueops serve in a container: the Slack bot, alert intake, /healthz, /readyz, /metrics.
#   docker build -t queueops .
#   docker run --env-file .env -p 3000:3000 queueops
# Configuration is by environment variables (docs/configuration.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=3000

WORKDIR /app

# The pinned dependencies first (their layer survives code changes), then queueops itself.
COPY requirements.txt ./
RUN grep -v '^\.$' requirements.txt > /tmp/dependencies.txt \
    && pip install -r /tmp/dependencies.txt \
    && rm /tmp/dependencies.txt
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY scheduler ./scheduler
RUN pip install --no-deps . && rm -rf build ./*.egg-info

RUN useradd --create-home --uid 10001 --user-group queueops
USER queueops

EXPOSE 3000

# /healthz answers while the process serves and touches neither Redis nor Slack; the slim
# image has no curl, so Python asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"

CMD ["queueops", "serve"]
