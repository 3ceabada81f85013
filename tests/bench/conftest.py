"""A live gateway over the engine emulator, shared by the bench tests that load one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.emulator import EngineProfile, serve_in_thread
from chatapp.engines.supervisor import free_port
from tests.conftest import LiveServer, serving


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`chatapp serve` whose only model is a node: a fast emulator on a thread of this process."""
    profile = EngineProfile(model="emu", ttft_ms=5, tokens_per_second=400)
    with serve_in_thread(profile, free_port()) as engine_url:
        config = tmp_path_factory.mktemp("config") / "models.toml"
        config.write_text(f'[models.emu]\n[[models.emu.nodes]]\nurl = "{engine_url}"\n')
        with serving(tmp_path_factory.mktemp("home"), config, timeout=60) as live:
            yield live
