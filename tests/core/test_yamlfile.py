"""The one YAML door: clear errors naming the file, and no other module parses YAML."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kongstack.core.errors import ConfigError
from kongstack.core.settings import REPO_ROOT
from kongstack.core.yamlfile import load_yaml, parse_yaml

PRODUCT = ("autoscaler", "flows", "tasks", "kongstack", "stock_api")
DOOR = REPO_ROOT / "kongstack" / "core" / "yamlfile.py"
READERS = {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all",
           "full_load_all", "unsafe_load_all", "compose", "compose_all", "parse", "scan"}


def test_a_mapping_and_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("a: 1\nb: [x, y]\n")
    assert load_yaml(path, what="test file") == {"a": 1, "b": ["x", "y"]}
    path.write_text("")
    assert load_yaml(path, what="test file") == {}
    json_file = tmp_path / "a.json"
    json_file.write_text('{"a": {"b": 2}}')
    assert load_yaml(json_file, what="test file") == {"a": {"b": 2}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a: [1,\n", "a.yaml: test file is not valid YAML"),
        (b"- 1\n- 2\n", "a.yaml: test file must be a mapping at the top level, not list"),
        (b"just text\n", "a.yaml: test file must be a mapping at the top level, not str"),
        (b"a: \xff\xfe\n", "a.yaml: test file is not UTF-8 text"),
    ],
)
def test_errors_name_the_file_and_what_it_is(tmp_path: Path, content: bytes,
                                             message: str) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_yaml(path, what="test file")


def test_missing_file_and_a_document_from_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absent.yaml: stack file not found"):
        load_yaml(tmp_path / "absent.yaml", what="stack file")
    with pytest.raises(ConfigError, match="Kong GET /config: declarative config is not valid"):
        parse_yaml("a: [", what="declarative config", origin="Kong GET /config")


def _yaml_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "yaml" and node.attr in READERS):
            found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} yaml.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("yaml"):
            found += [f"{path.relative_to(REPO_ROOT)}:{node.lineno} from yaml import "
                      f"{a.name}" for a in node.names if a.name in READERS]
    return found


def test_only_the_door_parses_yaml() -> None:
    reads = [hit for package in PRODUCT for path in sorted((REPO_ROOT / package).rglob("*.py"))
             if path != DOOR for hit in _yaml_reads(path)]
    assert reads == []
    assert _yaml_reads(DOOR)  # the check sees a read where there is one
