"""Logging: to stderr (stdout belongs to the protocol), every line scrubbed of secrets."""

from __future__ import annotations

import logging
import sys

from census_mcp.redaction import RedactingFilter
from census_mcp.settings import Settings


def configure_logging(config: Settings) -> None:
    """Logs to stderr, each line scrubbed of the tokens and of values under secret keys."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    known = [secret.get_secret_value() for secret in (config.token, config.auth_token) if secret]
    handler.addFilter(RedactingFilter(known))
    logging.basicConfig(level=config.log_level, handlers=[handler], force=True)
