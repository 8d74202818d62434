"""The API token's user is cached in Redis (issue 13); any change is seen at once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def me(key):
    return APIClient().get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Token {key}")


@pytest.fixture
def key():
    return Token.objects.create(user=UserFactory()).key


def test_a_known_token_authenticates_with_no_sql(key):
    assert me(key).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert me(key).status_code == 200
    assert len(queries) == 0


def test_a_deleted_token_is_refused_on_the_next_request(key):
    assert me(key).status_code == 200  # cached
    Token.objects.filter(key=key).delete()  # a queryset delete sends post_delete too
    assert me(key).status_code == 401


def test_a_rotated_token_is_refused_and_the_new_one_works(key):
    token = Token.objects.get(key=key)
    assert me(key).status_code == 200
    user = token.user
    token.delete()
    new = Token.objects.create(user=user)
    assert me(key).status_code == 401
    assert me(new.key).status_code == 200


def test_a_deactivated_user_is_refused_on_the_next_request(key):
    assert me(key).status_code == 200
    user = Token.objects.get(key=key).user
    user.is_active = False
    user.save()
    assert me(key).status_code == 401


def test_control_without_invalidation_the_cache_would_still_let_it_in(key, monkeypatch):
    from config import auth

    monkeypatch.setattr(auth, "forget_token_key", lambda key: None)
    assert me(key).status_code == 200
    Token.objects.filter(key=key).delete()
    assert me(key).status_code == 200  # stale: the invalidation is what refuses it


def test_the_database_read_answers_exactly_as_drfs_token_authentication():
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.exceptions import AuthenticationFailed

    from config.auth import _from_database

    drf = TokenAuthentication()
    fan = UserFactory()
    key = Token.objects.create(user=fan).key
    (user, token), (orm_user, orm_token) = _from_database(key), drf.authenticate_credentials(key)
    fields = lambda obj: {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}  # noqa: E731
    assert fields(user) == fields(orm_user) and fields(token) == fields(orm_token)
    assert token.user is user and user.is_authenticated
    for bad in ("no-such-key", key):
        if bad == key:
            type(fan).objects.filter(pk=fan.pk).update(is_active=False)
        with pytest.raises(AuthenticationFailed) as ours:
            _from_database(bad)
        with pytest.raises(AuthenticationFailed) as theirs:
            drf.authenticate_credentials(bad)
        assert str(ours.value.detail) == str(theirs.value.detail)


def late_fill(key):
    """A request that read the token from PostgreSQL, then the token is deleted (a
    logout, committed and forgotten), then the request caches what it read."""
    from config import auth

    read = auth._from_database(key)
    Token.objects.filter(key=key).delete()
    auth._fill(key, read)


def test_a_fill_that_read_before_a_logout_never_lets_the_token_back_in(key):
    late_fill(key)
    assert me(key).status_code == 401


def test_control_a_plain_fill_after_a_logout_lets_the_token_back_in(key, monkeypatch):
    from django.core.cache import cache

    from config import auth

    monkeypatch.setattr(
        auth, "_fill", lambda key, value: cache.set(auth._cache_key(key), value, auth.TTL)
    )
    late_fill(key)
    assert me(key).status_code == 200  # stale: the mark is what refuses it


def test_a_token_forgotten_long_ago_is_cached_again(key, monkeypatch):
    """The mark only covers reads in flight: once it lapses, a good token (its user
    saved, say) is cached again on its next request."""
    from django.core.cache import cache

    from config import auth

    user = Token.objects.get(key=key).user
    user.first_name = "renamed"
    user.save()  # forgets the key
    assert cache.get(auth._gone_key(key)) == 1
    cache.delete(auth._gone_key(key))  # as if GONE_TTL had passed
    assert me(key).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert me(key).status_code == 200
    assert len(queries) == 0


# --- a revocation made where Redis does not answer (issue 13: every process) ---------


def cached_entry_exists(key) -> bool:
    """Whether the shared Redis still holds the token's entry (read past the breaker)."""
    from django.core.cache import cache

    from config import auth

    client = cache._cache.get_client(write=True)
    return bool(client.exists(cache.make_key(auth._cache_key(key))))


def revoke_in_a_process_without_redis(key) -> None:
    """Delete the token in a process of its own whose Redis is a closed port: its
    forget after commit cannot reach Redis, while this process's Redis still holds
    the cached entry."""
    from tests.faults.conftest import in_a_process_without_redis

    in_a_process_without_redis(
        "from rest_framework.authtoken.models import Token; "
        f"assert Token.objects.filter(key={key!r}).delete()[0] == 1"
    )


def test_a_revocation_that_cannot_reach_redis_is_delivered_by_beat_across_processes(key):
    from config import auth, tasks
    from config.models import PendingForget

    assert me(key).status_code == 200  # cached in the shared Redis
    revoke_in_a_process_without_redis(key)
    # The other process kept the forget in PostgreSQL: the entry's hash, never the token.
    kept = list(PendingForget.objects.values_list("cache_key", flat=True))
    assert kept == [auth._cache_key(key)]
    assert key not in kept[0]
    # Control: until it is delivered, this process (which reaches Redis) still lets the
    # revoked token in from the cache; the delivery is what refuses it.
    assert cached_entry_exists(key)
    assert me(key).status_code == 200
    assert tasks.deliver_pending_forgets() == 1
    assert not PendingForget.objects.exists()
    assert not cached_entry_exists(key)
    assert me(key).status_code == 401


def test_a_revocation_reaches_redis_even_while_the_breaker_is_open(key):
    """The breaker (config.cache) makes an outage cost one timeout per interval; a
    forget is tried anyway, so a blip just before a revocation skips nothing."""
    from django.core.cache import cache

    from config.models import PendingForget

    assert me(key).status_code == 200
    cache._cache.mark_down(OSError("a blip a moment ago"))
    Token.objects.filter(key=key).delete()
    assert not cached_entry_exists(key)
    assert not PendingForget.objects.exists()


def test_control_a_forget_through_the_cache_api_is_skipped_while_the_breaker_is_open(key):
    from django.core.cache import cache

    from config import auth

    assert me(key).status_code == 200
    cache._cache.mark_down(OSError("a blip a moment ago"))
    cache.delete(auth._cache_key(key))  # how the forget was made before
    assert cached_entry_exists(key)  # skipped: other processes would still serve it


def test_pending_forgets_wait_while_redis_is_down_then_go_out(key):
    from django.core.cache import cache
    from django.test import override_settings

    from config import auth, tasks
    from config.models import PendingForget
    from tests.config.test_redis_down import DOWN

    assert me(key).status_code == 200
    with override_settings(CACHES=DOWN):
        Token.objects.filter(key=key).delete()  # the forget cannot be delivered
        assert PendingForget.objects.count() == 1
        assert tasks.deliver_pending_forgets() == 0  # still down: kept for the next run
    assert PendingForget.objects.count() == 1
    assert cache.get(auth._cache_key(key)) is not None
    assert tasks.deliver_pending_forgets() == 1
    assert not PendingForget.objects.exists()
    assert me(key).status_code == 401
