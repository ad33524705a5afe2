"""An ASGI app factory for production servers, which run it in several worker processes:

    uvicorn census_mcp.asgi:create_app --factory --host 0.0.0.0 --port 8000 --workers 4 \
        --http census_mcp.http:LimitedH11Protocol --timeout-keep-alive 5 --limit-concurrency 1000
    gunicorn 'census_mcp.asgi:create_app()' -k uvicorn.workers.UvicornWorker -w 4 -b 0.0.0.0:8000

Workers take no command line of their own, so the settings come from the environment
(CENSUS_API_TOKEN, CENSUS_MCP_AUTH_TOKEN, CENSUS_MCP_AUTH, CENSUS_MCP_ALLOWED_HOSTS, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence

from starlette.types import ASGIApp

from census_mcp import settings
from census_mcp.logs import configure_logging

logger = logging.getLogger(__name__)

# The exit status uvicorn's supervisor and gunicorn's arbiter both take for a worker that cannot
# start: they stop, rather than start it again and again.
WORKER_CANNOT_START = 3


def create_app() -> ASGIApp:
    """The HTTP app for the settings in the environment; a bad setting stops the server with one line."""
    from census_mcp.http import create_http_app

    try:
        config = dataclasses.replace(
            settings.from_arguments(argparse.Namespace(), os.environ), transport="http"
        )
        config.require_credentials(serving_http=True)
        if config.sandbox and worker_count(sys.argv, os.environ) > 1:
            raise settings.SettingsError(settings.SANDBOX_PER_PROCESS)
    except settings.SettingsError as exc:
        print(f"census-mcp: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(WORKER_CANNOT_START) from None
    configure_logging(config)
    for warning in config.warnings():
        logger.warning("%s", warning)
    return create_http_app(config)


def worker_count(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """How many worker processes the server running this app starts, as far as its command line
    tells (a worker inherits it: uvicorn's and gunicorn's --workers, gunicorn's -w and
    GUNICORN_CMD_ARGS), or WEB_CONCURRENCY, which both read; 1 when nothing says."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--workers", "-w", type=int)
    given = [*argv[1:], *shlex.split(environ.get("GUNICORN_CMD_ARGS", ""))]
    try:
        workers = parser.parse_known_args(given)[0].workers
    except argparse.ArgumentError:  # not a number: the server itself will say so
        workers = None
    if workers is None:
        concurrency = environ.get("WEB_CONCURRENCY", "")
        workers = int(concurrency) if concurrency.isdigit() else 1
    return int(workers)
