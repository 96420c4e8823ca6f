"""Who is calling: client keys, the credentials presented, the admin identity."""
