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
# One worker process per core the container gets, each with 4 blocking threads: on
# the 2-core bench machine, 2 workers served about a quarter more line-ups and
# payments than 4, at a third less web CPU each (docs/performance.md, round
# sixteen). granian reads
# GRANIAN_WORKERS and GRANIAN_BLOCKING_THREADS; set them to the container's cores
# and keep workers x threads (PostgreSQL connections per replica) within the budget
# in docs/operations.md.
ENV GRANIAN_WORKERS=2 \
    GRANIAN_BLOCKING_THREADS=4
CMD ["granian", "--interface", "wsgi", "config.wsgi:application", "--host", "0.0.0.0", "--port", "8000", "--no-ws", "--access-log"]
