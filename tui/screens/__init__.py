"""One Screen per module: the chat, help, the model picker and small dialogs."""
