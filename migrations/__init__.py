"""Numbered SQLite migrations (NNNN_name.sql), applied in order by chatapp.migrate; never edited once landed."""
