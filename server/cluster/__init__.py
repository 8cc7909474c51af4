"""Many nodes, one city: rooms placed on nodes through the store, sessions on any node."""

from .cluster import Cluster
from .handles import JoinResult, RoomHandle
from .link import NodeUnreachable, RemoteFailure, RoomUnavailable

__all__ = ["Cluster", "JoinResult", "NodeUnreachable", "RemoteFailure", "RoomHandle", "RoomUnavailable"]
