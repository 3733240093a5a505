"""Personal data in calls: how long it is kept (retention), how one person's is erased (erasure),
and how phone numbers are hidden where they need not be read (masking)."""
