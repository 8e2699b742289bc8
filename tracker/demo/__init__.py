"""The offline demo: an illustrative tour run end to end on SQLite, with no accounts or network."""
