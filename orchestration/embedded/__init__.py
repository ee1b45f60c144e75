"""The embedded PostgreSQL that runs when no DATABASE_URL is set."""
