# syntax=docker/dockerfile:1
# redfix, the bot, as a container: docker build -t redfix . (see README, "Docker").
# Three stages: the locked dependencies (their own layer, rebuilt only when the lock changes),
# redfix's wheel, and the runtime image: the dependency venv, then the app on top, non-root.
# The base is pinned to a Python patch release on a Debian release: a rebuild gets the same
# interpreter; move the tag on purpose (and the lock's python, scripts/lock) when upgrading.

FROM python:3.11.11-slim-bookworm AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY requirements/runtime.txt /tmp/runtime.txt
# --require-hashes: every package is the one the lock names, byte for byte.
RUN python -m venv /opt/redfix \
    && /opt/redfix/bin/pip install --no-cache-dir --require-hashes --no-deps \
        -r /tmp/runtime.txt

FROM deps AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
# Built with the locked setuptools already in the venv: nothing unpinned is fetched.
RUN /opt/redfix/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation \
        --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/redfix/bin:$PATH
RUN groupadd --system --gid 10001 redfix \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/redfix --create-home redfix
COPY --from=deps /opt/redfix /opt/redfix
# The app in its own layer, installed from the wheel without keeping the wheel in the image.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    /opt/redfix/bin/pip install --no-cache-dir --no-deps --no-index /wheels/redfix-*.whl

# numeric, so a runtime that checks runAsNonRoot can tell it is not root
USER 10001:10001
WORKDIR /var/lib/redfix
VOLUME ["/var/lib/redfix"]
# The port the config's [server] listen names; bind 0.0.0.0 inside the container.
EXPOSE 8480
# Asks /healthz at the config's own listen address: changing the port needs no edit here.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["redfix-bot", "healthcheck", "--config", "/etc/redfix/config.toml"]
ENTRYPOINT ["redfix-bot"]
CMD ["serve", "--config", "/etc/redfix/config.toml"]
