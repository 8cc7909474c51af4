"""Shared facts (who is in which room, who broadcasts, which node holds it) behind one ``Store``
interface, and the ``Bus`` that carries messages between nodes."""

from .base import NodeInfo, ParticipantRecord, Stay, Store, StoreUnavailable
from .bus import Bus, BusUnavailable
from .factory import open_state

__all__ = ["Bus", "BusUnavailable", "NodeInfo", "ParticipantRecord", "Stay", "Store", "StoreUnavailable", "open_state"]
