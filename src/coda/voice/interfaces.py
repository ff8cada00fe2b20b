"""The abstract contract ``VoiceManager`` fulfils (defined in ``coda.core.interfaces``)."""

from coda.core.interfaces import VoiceManagerInterface

__all__ = ["VoiceManagerInterface"]
