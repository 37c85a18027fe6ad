"""Shared fixtures of the fine-tuning tests: the package's toy inputs (stages.toys: a tiny
open_clip model, a tiny Waterbirds-layout data set and spurious pools, all written to a temporary
folder) and a run stopped after its first epoch."""

from __future__ import annotations

import contextlib
import threading
from http.server import ThreadingHTTPServer

from stages.finetune.runs import RunConfig, run_config
from stages.toys import (  # noqa: F401  (re-exported for the test modules)
    CLASSNAMES,
    COLORS,
    POOLS,
    TEMPLATES,
    TINY_MODEL_CFG,
    config,
    dataset_config,
    eval_config,
    make_dataset,
    make_pools,
    make_tiny_clip,
    tiny_world,
)


def run_cfg(finetune: dict, method: str, **overrides) -> RunConfig:
    """The validated configuration of run `method` of a finetune section, with `overrides` (config
    keys: `**{"lambda": 2}`)."""
    return RunConfig.from_dict({**run_config(finetune, method), **overrides})


def stop_after_first_epoch(epochs_done: int) -> None:
    """A fine-tuning `on_epoch` hook: the run is killed once its first resume.pt is written."""
    raise KeyboardInterrupt


def interrupt_after_first_epoch(go, method, out, **overrides):
    """Run `method` (go(method, out, on_epoch=..., **overrides)) until its first resume.pt is
    written, then stop it as a kill would."""
    import pytest

    with pytest.raises(KeyboardInterrupt):
        go(method, out, on_epoch=stop_after_first_epoch, **overrides)
    assert (out / "resume.pt").exists()


@contextlib.contextmanager
def http_server(handler: type, **state):
    """A real HTTP server on 127.0.0.1 (a free port) answering with `handler` in a thread, `state`
    set as attributes of the server for the handler to read, its address at `.url`."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in state.items():
        setattr(srv, name, value)
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
