"""Database access: SQLAlchemy Core tables, engine, queries and migrations; all SQL lives here."""
