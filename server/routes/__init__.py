"""Route handlers, one module per API area; server.app composes them into one list."""
