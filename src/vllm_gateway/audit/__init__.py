"""The audit log: who did what to which key, team, price, user or setting, and when.

Records are appended in the same transaction as the change they describe (db/audit.py),
never updated or deleted by the gateway, and hold the fields before and after with every
secret left out (`redact`).
"""
