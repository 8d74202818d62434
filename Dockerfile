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
# 4 worker processes x 1 blocking thread, as granian reads them from GRANIAN_WORKERS
# and GRANIAN_BLOCKING_THREADS (set them per deployment; no flag on the command line,
# which would override them). workers x threads is the replica's PostgreSQL
# connections: keep it within the budget in docs/operations.md. One Django thread per
# process: in the sale-day rehearsal it cut Django's own line-up and hold times by
# two thirds against 4 x 4, and fans got a place in line no later (docs/performance.md,
# round twenty-three).
ENV GRANIAN_WORKERS=4 \
    GRANIAN_BLOCKING_THREADS=1
CMD ["granian", "--interface", "wsgi", "config.wsgi:application", "--host", "0.0.0.0", "--port", "8000", "--no-ws", "--access-log"]
