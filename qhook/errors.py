# SPDX-License-Identifier: GPL-2.0-or-later
"""Errors that end a hook with one clear line for the operator."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Optional


class QhookError(Exception):
    """A failure the operator can act on; its text is one line: '<what>: <why>'."""


class ConfigError(QhookError):
    """The configuration file is unreadable or holds a bad value."""


class XmlError(QhookError):
    """The domain or device XML is unsafe, malformed or not what VDSM sends."""


class PropertyError(QhookError):
    """A custom property of a vNIC is missing, malformed or contradicts another."""


def shown(value: Optional[str], limit: int = 40) -> str:
    """Quote a value from outside for an error line: shortened, ASCII, escaped."""
    if value is None:
        return "nothing"
    cut = value if len(value) <= limit else value[:limit]
    text = ascii(cut)
    if len(value) > limit:
        text += f"... ({len(value)} characters)"
    return text


def one_line(text: str) -> str:
    """Fold a message onto a single line, so VDSM's log and the engine show it whole."""
    return " ".join(text.split())
