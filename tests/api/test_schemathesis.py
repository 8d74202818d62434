"""schemathesis fuzzes every operation of the served schema (/api/schema/), as an
anonymous client and as an admitted fan, and every answer must conform (issue 11).

Checks: no server error, a documented status code, a body that matches the
documented schema, a documented content type, and auth never silently ignored.
50 examples per operation, derandomized (a fixed seed), so a run is repeatable.
"""

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import admit, hold_seat, token_client
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    ignored_auth,
]
FUZZ = hypothesis.settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """Requests go through the real WSGI handler, which closes the database connection
    when a request ends; Django's own test client switches that off, and so do we."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def admitted_fan(db):
    """A fan with an API token, an admitted queue token, money and a held seat."""
    concert = ConcertFactory()
    schedule = make_schedule(concert)
    fan = UserFactory()
    client = token_client(fan)
    token = admit(fan, concert.id)
    wallet_services.wallet_charge(user_id=fan.pk, amount=500_000, now=timezone.now())
    hold_seat(fan, schedule, 1)
    return {
        "Authorization": client._credentials["HTTP_AUTHORIZATION"],
        "X-Queue-Token": token.key,
    }


# Loaded from the app as served (the schema view needs no database). schemathesis's
# lazy `from_fixture` mode does not run under pytest 9, so the schema loads at import.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@schema.parametrize()
@FUZZ
@pytest.mark.django_db
def test_every_operation_as_an_anonymous_client(case):
    case.call_and_validate(checks=CHECKS)


@schema.parametrize()
@FUZZ
def test_every_operation_as_an_admitted_fan(case, admitted_fan):
    headers = dict(admitted_fan)
    if case.headers and "X-Queue-Token" in case.headers:
        headers.pop("X-Queue-Token")  # the generated one is fuzzed too
    case.call_and_validate(headers=headers, checks=CHECKS)
