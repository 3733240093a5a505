"""Twilio's side of a call, played against a running Switchboard (`manage.py simulate_call`)."""
