# redfix: the bot as a container. Mount the config at /etc/redfix/config.toml and the SSH key
# and known_hosts it names; secrets come from REDFIX_GITEA_TOKEN / REDFIX_WEBHOOK_SECRET.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
RUN pip install --no-compile . \
    && useradd --system --uid 10001 --home-dir /var/lib/redfix --create-home redfix

USER redfix
VOLUME ["/var/lib/redfix"]
EXPOSE 8480
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8480/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["redfix-bot"]
CMD ["serve", "--config", "/etc/redfix/config.toml"]
