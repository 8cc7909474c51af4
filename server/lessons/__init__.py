"""Lessons: the recordings catalog, the timetable, and what a student should see now."""
