# The project image: the scheduler service (`kafka-scheduler run`) and consumer apps (`kafka-scheduler consume`).
# Dependencies come from uv.lock exactly (`uv sync --frozen`); the dependency layer is cached apart from the code.
# Pin UV_VERSION to the uv that wrote uv.lock (`uv --version`) with --build-arg for reproducible builds.
ARG UV_VERSION=latest
FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM python:3.11-slim

COPY --from=uv /uv /usr/local/bin/uv

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1

WORKDIR /app

# 1. Third-party dependencies only (changes rarely).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# 2. The project itself.
COPY scheduler ./scheduler
COPY consumers ./consumers
COPY schemas ./schemas
COPY examples ./examples
RUN uv sync --frozen --no-dev

RUN useradd --system --uid 10001 app
USER app

# Metrics, /livez and /readyz: 9400 for the scheduler, 9401 for consumer apps.
EXPOSE 9400 9401
ENTRYPOINT ["kafka-scheduler"]
CMD ["run"]
