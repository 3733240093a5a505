"""The Media Streams transport: Twilio's raw phone audio in and out."""
