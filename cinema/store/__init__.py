"""PostgreSQL access: the only package that speaks SQL (with the migrations in `db/`)."""
