"""The suite deletes only the Redis keys it wrote (issue 11): others' data survives."""

import redis
from django.conf import settings
from django.core.cache import cache

from tests.conftest import clear_own_cache_keys


def test_clearing_between_tests_leaves_other_keys_in_the_same_database():
    raw = redis.Redis.from_url(settings.REDIS_URL)
    raw.set("someone-elses:key", "keep me")
    cache.set("ours", 1)
    try:
        assert clear_own_cache_keys() >= 1
        assert cache.get("ours") is None
        assert raw.get("someone-elses:key") == b"keep me"
    finally:
        raw.delete("someone-elses:key")


def test_each_run_has_a_prefix_of_its_own():
    assert settings.CACHES["default"]["KEY_PREFIX"].startswith("cr-test-")
    assert len(settings.CACHES["default"]["KEY_PREFIX"]) > len("cr-test-")
