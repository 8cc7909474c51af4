"""The classroom's meaning: rooms, who is in them, who broadcasts and who receives, and what
members may do there (``actions``)."""

from .members import ClassroomError, Member
from .room import Room, Rooms

__all__ = ["ClassroomError", "Member", "Room", "Rooms"]
