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
# 4 worker processes x 4 blocking threads, as granian reads them from GRANIAN_WORKERS
# and GRANIAN_BLOCKING_THREADS (set them per deployment; no flag on the command line,
# which would override them). workers x threads is the replica's PostgreSQL
# connections: keep it within the budget in docs/operations.md. On the 2-core bench
# machine, 2 workers used a third less CPU per line-up and payment under wrk, but
# the sale-day rehearsal did not confirm a gain (docs/performance.md, round sixteen).
ENV GRANIAN_WORKERS=4 \
    GRANIAN_BLOCKING_THREADS=4
CMD ["granian", "--interface", "wsgi", "config.wsgi:application", "--host", "0.0.0.0", "--port", "8000", "--no-ws", "--access-log"]
