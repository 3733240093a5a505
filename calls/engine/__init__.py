"""The conversation engine, shared by every transport: turn taking, streaming replies, cancellation,
truncation to what the caller heard, speech filters, tools and timers. No websocket knowledge."""
