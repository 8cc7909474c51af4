"""Other servers run through the same benchmark scenario, for comparison in the same run."""
