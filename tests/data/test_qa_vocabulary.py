"""The question-type vocabulary (CloseQA / OpenQA) is defined once, in egoadapt/data/schema.py."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from egoadapt.config import schema as config_schema
from egoadapt.configs import CONF_DIR
from egoadapt.data.schema import CLOSE, OPEN, PROMPT_KEYS, QA_MODES, QA_NAMES, QA_TYPES, qa_type

PACKAGE = Path(__file__).resolve().parents[2] / "egoadapt"
SPELLINGS = {CLOSE, OPEN, *PROMPT_KEYS.values(), *QA_NAMES.values()}


def test_every_spelling_names_one_type():
    for qa in QA_TYPES:
        for spelled in (qa, PROMPT_KEYS[qa], QA_NAMES[qa], f" {QA_NAMES[qa].upper()} "):
            assert qa_type(spelled) == qa
    with pytest.raises(ValueError, match="'close' or 'open'"):
        qa_type("both")  # a mode, not a type
    assert QA_MODES["both"] == QA_TYPES and all(QA_MODES[q] == (q,) for q in QA_TYPES)


def test_configs_use_the_vocabulary():
    assert {f.name for f in fields(config_schema.Prompt)} >= set(PROMPT_KEYS.values())
    for name in ("default", "official"):
        assert set(PROMPT_KEYS.values()) <= set(yaml.safe_load((CONF_DIR / "prompt" / f"{name}.yaml").read_text()))
    assert yaml.safe_load((CONF_DIR / "eval.yaml").read_text())["qa"] in QA_MODES


def test_no_module_defines_the_vocabulary_again():
    """A tuple, list, set or dict literal holding two of its spellings is a second definition."""
    copies = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "data" / "schema.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            items = node.keys if isinstance(node, ast.Dict) else \
                node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else []
            names = {i.value for i in items if isinstance(i, ast.Constant) and i.value in SPELLINGS}
            if len(names) >= 2:
                copies.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {sorted(names)}")
    assert not copies, "import the question types from egoadapt.data.schema: " + "; ".join(copies)
