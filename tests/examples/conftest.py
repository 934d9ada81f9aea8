from __future__ import annotations

from pathlib import Path

import pytest

from examples import train_rm, train_sft


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny SFT policy and reward model, trained for two steps each: `(sft.pt, rm.pt)`."""
    out = tmp_path_factory.mktemp("base")
    common = ["--preset", "tiny", "--device", "cpu", "--max-steps", "2"]
    sft = train_sft.main([*common, "--out-dir", str(out / "sft")])
    rm = train_rm.main([*common, "--sft", str(sft), "--out-dir", str(out / "rm")])
    return sft, rm
