"""Fixtures for the trainer integrations; see tiny.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integrations.tiny import byte_tokenizer, prompt_rows


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return byte_tokenizer()


@pytest.fixture
def dataset() -> Any:
    from datasets import Dataset

    return Dataset.from_dict(prompt_rows())
