"""One widget per module: sidebar, chat view, message, composer, status line."""
