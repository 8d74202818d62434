"""The design documents are tied to the code (issue 15): each test fails when a
document drifts from what it describes."""

import json
import os
import re
import shutil
import subprocess
from importlib import import_module
from pathlib import Path

import jsonschema
import pytest
import yaml
from django.apps import apps
from django.conf import settings

from config.errors import registry

ROOT = Path(settings.BASE_DIR)
DOCS = ROOT / "docs"
OUR_APPS = ("config", "concerts", "queueing", "wallet", "payments")


def read(name: str) -> str:
    return (DOCS / name).read_text()


def mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, re.S)


# --- ERD ---------------------------------------------------------------------------


def entity_name(model) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", model.__name__).upper()


def erd_entities() -> dict[str, set[str]]:
    (diagram,) = [b for b in mermaid_blocks(read("erd.md")) if b.startswith("erDiagram")]
    entities = {}
    for name, body in re.findall(r"^\s+(\w+) \{\n(.*?)^\s+\}", diagram, re.S | re.M):
        entities[name] = {line.split()[1] for line in body.strip().splitlines()}
    return entities


def test_every_model_and_every_field_is_in_the_erd_and_nothing_else():
    entities = erd_entities()
    for model in apps.get_models():
        if model._meta.app_label not in OUR_APPS:
            continue
        name = entity_name(model)
        assert name in entities, f"{name} is missing from docs/erd.md"
        columns = {field.column for field in model._meta.concrete_fields}
        assert entities[name] == columns, (name, entities[name] ^ columns)


def test_the_erd_names_every_database_constraint():
    text = read("erd.md")
    for model in apps.get_models():
        if model._meta.app_label not in OUR_APPS:
            continue
        for constraint in model._meta.constraints:
            assert constraint.name in text, f"constraint {constraint.name} is not in docs/erd.md"
    assert "wallet_ledger_append_only" in text


# --- API -----------------------------------------------------------------------------


def spec() -> dict:
    return yaml.safe_load(read("openapi.yaml"))


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for method, path in re.findall(
            r"^### (GET|POST|DELETE|PUT|PATCH) (\S+)", read("api.md"), re.M
        )
    }


def test_every_operation_of_the_schema_is_in_api_md_and_every_documented_one_exists():
    schema_operations = {
        (method.upper(), path) for path, item in spec()["paths"].items() for method in item
    }
    assert documented_operations() == schema_operations


def test_api_md_error_table_is_the_registry():
    text = read("api.md")
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d{3}) \|", text, re.M))
    assert {code: int(status) for code, status in rows.items()} == {
        code: entry.http_status for code, entry in registry().items()
    }


def as_json_schema(node):
    """OpenAPI 3.0's `nullable: true`, spelt as JSON Schema (which has no `nullable`)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: as_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if "type" in node:
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def test_api_md_examples_match_the_schema():
    """Each documented response example validates against the schema of its operation
    and status, so an example cannot drift from the contract."""
    document = spec()
    examples = re.findall(
        r"^### (GET|POST|DELETE) (\S+)\n.*?(?=^### |\Z)", read("api.md"), re.S | re.M
    )
    checked = 0
    for method, path in examples:
        section = re.search(
            rf"^### {method} {re.escape(path)}\n(.*?)(?=^### |\Z)", read("api.md"), re.S | re.M
        )[1]
        for status, body in re.findall(
            r"Response `(\d{3})`[^\n]*\n+```json\n(.*?)```", section, re.S
        ):
            operation = document["paths"][path][method.lower()]
            content = operation["responses"][status]["content"]["application/json"]["schema"]
            schema = as_json_schema({**content, "components": document["components"]})
            jsonschema.validate(json.loads(body), schema, cls=jsonschema.Draft202012Validator)
            checked += 1
    assert checked >= 15


# --- operations --------------------------------------------------------------------


def settings_read_from_the_environment() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    names = set(re.findall(r'env\.(?:str|int|bool|list|float|db)\("([A-Z_]+)"', source))
    return names | {"HOST", "PORT"}  # config/stack.py, the embedded run


def test_every_setting_read_from_the_environment_is_documented_and_in_env_example():
    operations, example = read("operations.md"), (ROOT / ".env.example").read_text()
    for name in settings_read_from_the_environment():
        assert f"`{name}`" in operations, f"{name} is not in docs/operations.md"
        if name not in {"HOST", "PORT"}:
            assert re.search(rf"^#? ?{name}=", example, re.M), f"{name} not in .env.example"


# --- requirements: every function and test it names exists --------------------------


def test_requirements_name_only_functions_and_tests_that_exist():
    text = read("requirements.md")
    functions = set(re.findall(r"`((?:config|concerts|queueing|wallet|payments)\.[\w.]+)`", text))
    for dotted in functions:
        module_name, _, attribute = dotted.rpartition(".")
        try:
            module = import_module(module_name)
        except ModuleNotFoundError:
            module_name, _, klass = module_name.rpartition(".")
            module = getattr(import_module(module_name), klass)
        assert hasattr(module, attribute), dotted
    all_tests = {
        match
        for path in (ROOT / "tests").rglob("test_*.py")
        for match in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    named = set(re.findall(r"`(test_\w+)`", text))
    assert named and named <= all_tests, named - all_tests
    assert len(functions) >= 20 and len(named) >= 20


# --- every document is linked from the README, every diagram parses ---------------


def test_the_readme_links_every_document():
    readme = (ROOT / "README.md").read_text()
    for path in DOCS.glob("*.md"):
        assert f"docs/{path.name}" in readme, path.name


def test_every_image_a_document_shows_exists():
    """The rehearsal's plots (docs/rehearsal/*.png) and any other picture: a link to
    a missing file fails here, not in a reader's browser."""
    import re

    shown = [
        (path.name, target)
        for path in DOCS.glob("*.md")
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text())
    ]
    assert shown, "no document shows a picture"
    for name, target in shown:
        assert (DOCS / target).is_file(), f"{name} shows {target}, which does not exist"


def test_each_diagram_exists_once():
    blocks = [b for path in DOCS.glob("*.md") for b in mermaid_blocks(path.read_text())]
    assert len(blocks) == len(set(blocks))


MMDC = ROOT / "docs" / "tools" / "node_modules" / ".bin" / "mmdc"


@pytest.mark.parametrize(
    "document", sorted(p.name for p in DOCS.glob("*.md") if "```mermaid" in p.read_text())
)
def test_every_mermaid_diagram_parses(document, tmp_path):
    if not MMDC.exists() or not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("mermaid-cli or Chromium is missing; .ci/run installs them")
        pytest.skip("mermaid-cli not installed (npm ci --prefix docs/tools); CI always runs this")
    result = subprocess.run(
        [str(MMDC), "-q", "-p", str(ROOT / "docs" / "tools" / "puppeteer.json"),
         "-i", str(DOCS / document), "-o", str(tmp_path / "out.md")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_api_md_error_table_is_freshly_generated():
    from config.errors import api_doc_with_table

    text = read("api.md")
    assert text == api_doc_with_table(text), "run `python manage.py error_codes --write`"
