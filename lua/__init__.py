"""The Lua scripts, installed as the resource package `cinema._lua` (see pyproject.toml):
cinema/holds.py reads them with importlib.resources, from a wheel or from this folder."""
