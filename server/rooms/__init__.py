"""The classroom's meaning: rooms, who is in them, who broadcasts and who receives."""

from .room import Member, Room, Rooms

__all__ = ["Member", "Room", "Rooms"]
