"""One registry of error codes (issue 9): a code means one status, everywhere."""

from pathlib import Path

import pytest
from django.conf import settings

from config.errors import REGISTRY, DomainError, register_code, registry, registry_markdown


def test_docs_errors_md_is_generated_from_the_registry():
    doc = Path(settings.BASE_DIR) / "docs" / "errors.md"
    assert doc.read_text() == registry_markdown(), (
        "docs/errors.md is stale: run `python manage.py error_codes --write`"
    )


def test_every_domain_error_class_is_registered_with_its_status():
    codes = registry()
    seen = list(DomainError.__subclasses__())
    while seen:
        cls = seen.pop()
        seen.extend(cls.__subclasses__())
        if "code" in cls.__dict__:
            assert codes[cls.code].http_status == cls.http_status, cls


def test_a_code_cannot_be_defined_again_with_another_status():
    with pytest.raises(RuntimeError, match="queue_token_invalid"):
        register_code("queue_token_invalid", 404, "again", source="test")


def test_the_unknown_token_code_is_no_longer_shared_with_the_forbidden_one():
    codes = registry()
    assert codes["queue_token_invalid"].http_status == 403
    assert codes["queue_token_not_found"].http_status == 404


def test_framework_codes_are_in_the_registry_too():
    for code in ("validation_error", "not_authenticated", "not_found", "internal_error"):
        assert code in REGISTRY
