"""Who may call the HTTP server, and the record of what they changed."""
