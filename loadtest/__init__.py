"""Load tests and benchmarks: what a city's morning asks of the server, measured."""
