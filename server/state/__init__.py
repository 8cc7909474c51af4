"""Shared facts (who is in which room, who broadcasts) behind one ``Store`` interface."""

from .base import ParticipantRecord, Stay, Store
from .factory import open_store

__all__ = ["ParticipantRecord", "Stay", "Store", "open_store"]
