"""Dispatch needs a local daemon: a remote one cannot mount the run directory."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError


class RemoteDaemonError(ConfigError):
    """Dispatch to a remote Docker daemon is refused: it cannot mount RUN_DIR."""


def refuse_remote_daemon(env: Mapping[str, str] | None = None) -> None:
    from ..host.docker import daemon_endpoint

    endpoint = daemon_endpoint(env)
    if endpoint.remote:
        raise RemoteDaemonError(
            f"the Docker daemon is remote ({endpoint.url}, from {endpoint.source}): llem run "
            "cannot mount the run directory there; use a local daemon or a local runner"
        )
