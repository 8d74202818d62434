"""bench.common's web servers: BENCH_ACCESS_LOG=1 makes each log every request, as the
image's granian (--access-log) and pretix.sh's gunicorn (--access-logfile) do."""

import pytest

from bench import common


@pytest.mark.parametrize(
    ("kind", "flags"),
    [("granian", ["--access-log"]), ("sync", ["--access-logfile", "-"]),
     ("gthread", ["--access-logfile", "-"])],
)  # fmt: skip
def test_access_log_is_asked_of_every_server_only_when_set(monkeypatch, kind, flags):
    monkeypatch.setattr(common, "ACCESS_LOG", True)
    logged = common.server_command(8000, 3, kind)
    assert logged[-len(flags) :] == flags
    monkeypatch.setattr(common, "ACCESS_LOG", False)
    plain = common.server_command(8000, 3, kind)
    assert plain == logged[: -len(flags)]
    assert not any(arg.startswith("--access-log") for arg in plain)
