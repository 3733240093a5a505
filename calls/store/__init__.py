"""The turn store: calls and turns written off the token path, in batches shared by live calls."""
