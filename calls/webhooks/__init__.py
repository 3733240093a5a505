"""Twilio's HTTP side: signatures, the TwiML we answer with, and the status, `<Connect action>` and
`<Dial action>` callbacks (the views in calls/views.py stay thin and call these)."""
