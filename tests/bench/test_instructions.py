"""bench.instructions caches the fans' API tokens afresh before every counted run: a
cached token lives config.auth.TTL, and under callgrind the paths counted before a
late one outlasted it, so a payment counted after the holds read its fan's token
from PostgreSQL (docs/performance.md, round twenty-five)."""

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token

from bench import instructions
from config import auth
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def ttl(key: str) -> int:
    client = cache._cache.get_client(write=True)
    return client.ttl(cache.make_key(auth._cache_key(key)))


def test_a_payers_token_near_its_end_is_cached_again_with_a_full_ttl():
    payer = Token.objects.create(user=UserFactory(id=instructions.FIRST_PAYER)).key
    auth.credentials(payer)  # cached by an earlier request...
    cache.touch(auth._cache_key(payer), 5)  # ...long enough ago that 5 s are left
    auth.credentials(payer)
    assert 0 < ttl(payer) <= 5  # the control: a hit leaves the entry to lapse
    instructions.cache_credentials()
    assert ttl(payer) > auth.TTL - 60


def test_a_line_up_fans_token_is_left_uncached():
    # A fan past the line (WAITING) and before the holders lines up in the
    # line-up path: its first request must miss the cache.
    fan = Token.objects.create(user=UserFactory(id=instructions.WAITING + 1)).key
    holder = Token.objects.create(user=UserFactory(id=instructions.FIRST_HOLDER)).key
    instructions.cache_credentials()
    assert ttl(fan) == -2  # no entry
    assert ttl(holder) > auth.TTL - 60
