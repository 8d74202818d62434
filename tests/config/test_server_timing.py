"""`SERVER_TIMING`: the WSGI app reports Django's own time per response."""

import re
from wsgiref.util import setup_testing_defaults

import pytest

from config.wsgi import with_server_timing


def call(app, path: str) -> tuple[str, dict]:
    environ: dict = {"PATH_INFO": path, "HTTP_HOST": "localhost"}
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    assert body is not None
    return seen["status"], seen["headers"]


@pytest.mark.django_db
def test_the_header_carries_the_apps_time_and_the_response_is_unchanged():
    from django.core.wsgi import get_wsgi_application

    plain = get_wsgi_application()
    status, headers = call(with_server_timing(plain), "/healthz")
    plain_status, plain_headers = call(plain, "/healthz")
    assert status == plain_status
    assert "Server-Timing" not in plain_headers  # off by default
    match = re.fullmatch(r"app;dur=(\d+\.\d)", headers["Server-Timing"])
    assert match and float(match.group(1)) > 0


def test_it_wraps_any_wsgi_app_and_reports_the_time_between_call_and_headers(monkeypatch):
    clock = iter([10.0, 10.25])  # the call starts at 10 s; headers go out at 10.25 s
    monkeypatch.setattr("config.wsgi.time.perf_counter", lambda: next(clock))

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    status, headers = call(with_server_timing(app), "/")
    assert status == "200 OK"
    assert headers["Server-Timing"] == "app;dur=250.0"
