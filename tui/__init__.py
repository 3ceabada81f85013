"""The Textual chat client (`chatapp chat`); it talks to the server over HTTP only."""
