# The project image: the scheduler service (`kafka-scheduler run`) and consumer apps (`kafka-scheduler consume`).
# Dependencies come from uv.lock exactly (`uv sync --frozen`); the dependency layer is cached apart from the code.
# The build stage compiles the Rust core (native/, PyO3 via maturin); the runtime image carries no compiler.
# Pin UV_VERSION to the uv that wrote uv.lock (`uv --version`) with --build-arg for reproducible builds.
ARG UV_VERSION=latest
ARG RUST_VERSION=1
FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv
FROM rust:${RUST_VERSION}-slim-bookworm AS rust

FROM python:3.11-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# 1. Third-party dependencies only (changes rarely).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# 2. The project itself, its extension compiled, installed as a wheel (no link back to /src).
COPY native ./native
COPY scheduler ./scheduler
COPY consumers ./consumers
COPY schemas ./schemas
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY examples ./examples

RUN useradd --system --uid 10001 --create-home app
USER app

# Metrics, /livez and /readyz: 9400 for the scheduler, 9401 for consumer apps.
EXPOSE 9400 9401
ENTRYPOINT ["kafka-scheduler"]
CMD ["run"]
