"""docs/race-tests.md lists every test in tests/concurrency/ with its guard and control."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def concurrency_tests() -> set[str]:
    names = set()
    for path in (ROOT / "tests" / "concurrency").glob("test_*.py"):
        tree = ast.parse(path.read_text())
        names |= {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
    return names


def table() -> dict[str, tuple[str, str]]:
    text = (ROOT / "docs" / "race-tests.md").read_text()
    rows = re.findall(r"^\| `(test_\w+)` \| ([^|]+) \| ([^|]+) \|$", text, re.M)
    return {name: (guard.strip(), control.strip()) for name, guard, control in rows}


def test_every_concurrency_test_is_in_the_table_and_nothing_else():
    assert set(table()) == concurrency_tests()


def test_every_named_control_exists_and_is_itself_in_the_table():
    tests = concurrency_tests()
    for name, (_, control) in table().items():
        for mentioned in re.findall(r"`(test_\w+)`", control):
            assert mentioned in tests, (name, mentioned)
            assert table()[mentioned][0] == "(control)" or mentioned == name, mentioned
