"""The numbered SQL migrations, installed as the resource package `cinema._db` (see
pyproject.toml): cinema/store/migrations.py reads them with importlib.resources."""
