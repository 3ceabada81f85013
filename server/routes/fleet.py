"""/admin/models and /admin/fleet: what each model and upstream is doing; drain and undrain.

Draining applies to the very next request: a drained upstream gets no new work while the
requests it has in flight finish. It lasts until undrained or the server restarts.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from chatapp.errors import InvalidRequest, NotFound
from chatapp.upstreams import ModelPool, Upstream
from server.auth import authenticate
from server.body import read_json
from server.state import GatewayState, state_of

__all__ = ["drain", "fleet_status", "models_status", "undrain"]

log = logging.getLogger("chatapp.server")


def _admin(request: Request) -> GatewayState:
    authenticate(request, "admin")
    return state_of(request)


def _gpus(pool: ModelPool) -> list[int]:
    """The GPUs the model's local replicas were given (see chatapp.engines.gpus)."""
    return sorted({gpu for u in pool.upstreams for gpu in u.gpus})


def _state(pool: ModelPool) -> str:
    """One word for the model: ready, degraded, failing, drained, or its engine's state."""
    ups = pool.upstreams
    serving = [u for u in ups if u.ready and not u.draining]
    if not any(u.ready for u in ups):
        local = next((u for u in ups if u.supervisor is not None), None)
        return local.status()["state"] if local else "stopped"
    if not serving:
        return "drained"
    if not any(u.available() for u in serving):
        return "failing"
    if len(serving) == len(ups) and all(u.available() and not u.failures for u in ups):
        return "ready"
    return "degraded"


def _model(pool: ModelPool) -> dict[str, Any]:
    statuses = [u.status() for u in pool.upstreams]
    return {
        "name": pool.model.name,
        "engine": pool.model.engine or "remote",
        "model": pool.model.model,
        "context_window": pool.model.context_window,
        "replicas": len(statuses),
        "ready": pool.ready,
        "state": _state(pool),
        "outstanding": sum(s["outstanding"] for s in statuses),
        "restarts": sum(s["restarts"] for s in statuses),
        "gpus": _gpus(pool),
        "upstreams": statuses,
    }


async def models_status(request: Request) -> JSONResponse:
    """GET: every model with its engine, replicas, load, restarts and upstreams."""
    state = _admin(request)
    return JSONResponse({"models": [_model(pool) for pool in state.pools.values()]})


def _fleet(pools: dict[str, ModelPool], wanted: list[Upstream] | None = None) -> list[Any]:
    """Each upstream's status with the model it serves (only `wanted` ones, when given)."""
    return [
        {"model": name, **upstream.status()}
        for name, pool in pools.items()
        for upstream in pool.upstreams
        if wanted is None or upstream in wanted
    ]


async def fleet_status(request: Request) -> JSONResponse:
    """GET: every upstream of every model: health, outstanding requests, latency, draining."""
    state = _admin(request)
    return JSONResponse({"upstreams": _fleet(state.pools)})


def _matching(pools: dict[str, ModelPool], ref: str) -> list[Upstream]:
    """The upstreams `ref` names: one by its name, all of a model, or all at a URL."""
    everything = [u for pool in pools.values() for u in pool.upstreams]
    by_name = [u for u in everything if u.name == ref]
    if by_name:
        return by_name
    if ref in pools:
        return list(pools[ref].upstreams)
    url = ref.rstrip("/")
    by_url = [u for u in everything if u.base_url.rstrip("/") in (url, f"{url}/v1")]
    if by_url:
        return by_url
    known = ", ".join(u.name for u in everything) or "none"
    raise NotFound(f"No upstream, model or URL '{ref}' (upstreams: {known}).", param="upstream")


async def _set_draining(request: Request, draining: bool) -> JSONResponse:
    state = _admin(request)
    body = await read_json(request, state.config.server.max_body_bytes)
    ref = body.get("upstream")
    if not isinstance(ref, str) or not ref:
        raise InvalidRequest(
            'send {"upstream": NAME}: an upstream name, a model name or a URL', param="upstream"
        )
    upstreams = _matching(state.pools, ref)
    for upstream in upstreams:
        if upstream.draining != draining:
            upstream.draining = draining
            log.info(
                "upstream %s: %s (%d in flight)",
                upstream.name,
                "draining" if draining else "undrained",
                upstream.outstanding,
            )
    return JSONResponse({"draining": draining, "upstreams": _fleet(state.pools, upstreams)})


async def drain(request: Request) -> JSONResponse:
    """POST {"upstream": NAME}: no new requests go there; those in flight finish."""
    return await _set_draining(request, True)


async def undrain(request: Request) -> JSONResponse:
    """POST {"upstream": NAME}: the upstream takes new requests again."""
    return await _set_draining(request, False)
