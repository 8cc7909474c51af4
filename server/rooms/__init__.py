"""The classroom's meaning: rooms, who is in them, who broadcasts and who receives."""

from .room import ClassroomError, Member, Room, Rooms

__all__ = ["ClassroomError", "Member", "Room", "Rooms"]
