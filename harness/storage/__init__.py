"""Files of a run and the shared result cache: atomic writes, tidy tables, SQLite cache."""
