"""The score ledger: every score appended, its history, erasure (its own room)."""
