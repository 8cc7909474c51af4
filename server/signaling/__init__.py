"""The signaling protocol over FastAPI websockets: parse, validate, check grants, call the rooms."""
