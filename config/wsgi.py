import os
import time

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Load what a request's first task message needs (Celery's messaging layer and the
# broker's transport), so the first request that sends one (a busy room's admission
# round, queueing.services._admit_soon) does not pay for the imports: 40-50 ms idle,
# up to 200 ms on a busy box. No connection is made here.
from config.celery import app as celery_app  # noqa: E402

celery_app.amqp.producer_pool  # noqa: B018
with celery_app.connection_for_write() as broker:
    broker.transport  # noqa: B018
if settings.FAST_LANE:  # a plain poll skips the full stack (config/fastlane.py)
    from config.fastlane import FastLane, lanes

    application = FastLane(application, lanes())


def with_server_timing(app):
    """Adds `Server-Timing: app;dur=<ms>` to every response: the time Django took,
    from the request's arrival in the app to its response headers, without the
    client's or the network's share. Load tests read it to tell the server's latency
    from their own queueing; browsers' developer tools show it."""

    def timed(environ, start_response):
        began = time.perf_counter()

        def start(status, headers, exc_info=None):
            took = (time.perf_counter() - began) * 1000
            headers.append(("Server-Timing", f"app;dur={took:.1f}"))
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return timed


if settings.SERVER_TIMING:
    application = with_server_timing(application)
