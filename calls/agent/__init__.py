"""The agent socket: a customer's own agent process writes the replies of personas on the
"Your agent (client-side)" model (sdk/PROTOCOL.md)."""
