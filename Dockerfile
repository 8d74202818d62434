# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VAR_DIR=/app/var

WORKDIR /app
RUN useradd --create-home --uid 1000 app

COPY pyproject.toml README.md ./
COPY config ./config
COPY concerts ./concerts
COPY queueing ./queueing
COPY wallet ./wallet
COPY payments ./payments
RUN pip install .

COPY . .
# Static files are collected at build time and served by WhiteNoise.
RUN SECRET_KEY=build-only-not-secret DEBUG=0 python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown -R app:app /app/var

USER app
EXPOSE 8000
# granian (WSGI): chosen by measurement, see docs/performance.md ("Which web server").
# 4 workers x 4 blocking threads = at most 16 PostgreSQL connections per container.
CMD ["granian", "--interface", "wsgi", "config.wsgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "4", "--blocking-threads", "4", "--no-ws", "--access-log"]
