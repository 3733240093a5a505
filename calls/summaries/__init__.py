"""After-call summaries: asking for one once per ended call (`requests`), writing it (`writer`)."""
