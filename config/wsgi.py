import os
import time

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
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
