"""Numbered SQLite migrations (NNNN_name.sql) applied in order; never edited once landed."""
