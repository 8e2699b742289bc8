"""Storage: models, sessions, upserts and queries. The only place that writes SQL."""
