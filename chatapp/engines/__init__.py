"""Engines chatapp runs as child processes: how to launch each kind, and the supervisor."""

from __future__ import annotations

from chatapp.engines.launch import EngineLaunch, build_launch
from chatapp.engines.supervisor import EngineState, EngineSupervisor

__all__ = ["EngineLaunch", "EngineState", "EngineSupervisor", "build_launch"]
