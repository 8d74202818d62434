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
