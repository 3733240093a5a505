"""The ConversationRelay transport: Twilio does speech-to-text and text-to-speech; `wire` parses and
writes its frames, `consumer` translates them into calls on the engine."""
