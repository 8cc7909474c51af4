"""Sky Classroom: live lessons through an SFU that forwards without re-encoding."""
