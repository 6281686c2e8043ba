"""The companion page: a phone or tablet as the screen, voice and buttons of a person
walking backward (see :mod:`retrotread.companion.server`)."""

from retrotread.companion.server import (
    DEFAULT_PORT,
    MAX_PAGES,
    CompanionServer,
    lan_address,
    new_token,
    parse_bind,
)

__all__ = ["DEFAULT_PORT", "MAX_PAGES", "CompanionServer", "lan_address", "new_token",
           "parse_bind"]
