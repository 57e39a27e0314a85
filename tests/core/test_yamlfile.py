"""The one YAML door: clear errors naming the file, and no other module parses YAML."""

from __future__ import annotations

import ast
import tracemalloc
from pathlib import Path

import pytest

from kongstack.core.errors import ConfigError
from kongstack.core.settings import REPO_ROOT
from kongstack.core.yamlfile import MAX_EXPANDED_NODES, MAX_FILE_BYTES, load_yaml, parse_yaml

PRODUCT = ("autoscaler", "flows", "tasks", "kongstack", "stock_api")
DOOR = REPO_ROOT / "kongstack" / "core" / "yamlfile.py"
READERS = {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all",
           "full_load_all", "unsafe_load_all", "compose", "compose_all", "parse", "scan",
           # a loader class is a parser too (the door subclasses SafeLoader)
           "SafeLoader", "CSafeLoader", "Loader", "CLoader", "FullLoader", "CFullLoader",
           "UnsafeLoader", "CUnsafeLoader", "BaseLoader", "CBaseLoader"}


def test_a_mapping_and_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("a: 1\nb: [x, y]\n")
    assert load_yaml(path, what="test file") == {"a": 1, "b": ["x", "y"]}
    path.write_text("# only a comment\n")
    with pytest.raises(ConfigError, match="a.yaml: test file is empty"):
        load_yaml(path, what="test file")
    assert load_yaml(path, what="test file", allow_empty=True) == {}
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
        ("a: 1\n".encode("utf-16"), "a.yaml: test file is not UTF-8 text"),
        (b"", "a.yaml: test file is empty"),
        (b"a: 1\nb: 2\na: 3\n", "a.yaml: test file refused: duplicate key 'a' .line 3."),
        (b"policy:\n  cooldown: .inf\n", "policy.cooldown: numbers must be finite"),
        (b"rates: [1, .nan]\n", r"rates\[1\]: numbers must be finite"),
        (b"a: &a [*a]\n", "a recursive alias"),
        (b"x" * (MAX_FILE_BYTES + 1), f"larger than {MAX_FILE_BYTES} bytes"),
    ],
)
def test_errors_name_the_file_and_what_it_is(tmp_path: Path, content: bytes,
                                             message: str) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_yaml(path, what="test file")


def test_a_directory_is_named_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_yaml(tmp_path, what="autoscale config")


def bomb(levels: int, fan_out: int = 9, *, mapping: bool = False) -> str:
    """The classic alias bomb: each level holds ``fan_out`` aliases to the previous one, so
    the last expands to fan_out**levels leaves (9 levels of 9: 387 million)."""
    lines = ['a0: &a0 {x: lol}' if mapping else 'a0: &a0 ["lol"]']
    for n in range(1, levels + 1):
        items = [f"k{i}: *a{n - 1}" if mapping else f"*a{n - 1}" for i in range(fan_out)]
        open_, close = "{}" if mapping else "[]"
        lines.append(f"a{n}: &a{n} {open_}{', '.join(items)}{close}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text", [
    pytest.param(bomb(9), id="lists: 9 levels of 9"),
    pytest.param(bomb(9, mapping=True), id="mappings: 9 levels of 9"),
])
def test_alias_bombs_are_refused_cheaply(text: str) -> None:
    """Refused after composing (before building the expanded value), with the memory the text
    needs, not the expansion's: a few MB at most, where building it would take gigabytes."""
    assert len(text) < 1000
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=f"more than {MAX_EXPANDED_NODES} nodes"):
            parse_yaml(text, what="stack file", origin="bomb.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024


def test_aliases_within_the_limit_and_merge_keys_still_work() -> None:
    text = ("base: &base {cpus: 1, memory: 256m}\n"
            "small: {<<: *base, memory: 128m}\nlarge: {<<: *base, cpus: 2}\n"
            "some: &s [1, 2]\nmore: [*s, *s]\n")
    assert parse_yaml(text, what="t", origin="t") == {
        "base": {"cpus": 1, "memory": "256m"}, "small": {"cpus": 1, "memory": "128m"},
        "large": {"cpus": 2, "memory": "256m"}, "some": [1, 2], "more": [[1, 2], [1, 2]]}
    # just below and just above the expansion limit: 3 levels of 36 expand to 97,354 nodes,
    # of 37 to 105,571
    assert parse_yaml(bomb(3, 36), what="t", origin="t")["a3"][0][0][0] == ["lol"]
    with pytest.raises(ConfigError, match="alias bomb"):
        parse_yaml(bomb(3, 37), what="t", origin="t")


def test_a_document_from_elsewhere_has_its_own_size_cap() -> None:
    with pytest.raises(ConfigError, match="Kong GET /config: declarative config is larger"):
        parse_yaml("a: " + "x" * 100, what="declarative config", origin="Kong GET /config",
                   max_bytes=50)


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
