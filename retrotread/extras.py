"""Optional parts installed as pip extras, and the one message when one is missing.

Every command is always listed in ``--help``; a command whose extra is missing fails
with a message naming the extra instead of disappearing.

| extra | brings | needed by |
|---|---|---|
| ``plot`` | matplotlib | ``retrotread plot`` |
| ``ble-sim`` | bumble | ``retrotread sim --ble`` |
"""

from __future__ import annotations

import importlib
from types import ModuleType

from retrotread.errors import MissingExtraError

EXTRAS = {"plot": "matplotlib", "ble-sim": "bumble", "voice": "pocketsphinx"}


def install_hint(extra: str) -> str:
    return (f"pip install 'retrotread[{extra}]' (with pipx: pipx install --force "
            f"'.[{extra}]', or pipx inject retrotread {EXTRAS.get(extra, extra)})")


def require(module: str, extra: str, needed_by: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{needed_by} needs {module}, which is not installed: {install_hint(extra)}"
        ) from exc
