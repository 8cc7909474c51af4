"""Named load scenarios, one locustfile each; run them with ``python -m loadtest.run NAME``."""
