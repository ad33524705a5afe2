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

from starlette.types import ASGIApp

from census_mcp import settings
from census_mcp.logs import configure_logging

logger = logging.getLogger(__name__)


def create_app() -> ASGIApp:
    """The HTTP app for the settings in the environment; a bad setting stops the worker with one line."""
    from census_mcp.http import create_http_app

    config = dataclasses.replace(settings.from_arguments(argparse.Namespace(), os.environ), transport="http")
    config.require_credentials(serving_http=True)
    configure_logging(config)
    for warning in config.warnings():
        logger.warning("%s", warning)
    return create_http_app(config)
