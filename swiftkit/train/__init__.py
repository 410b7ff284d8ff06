"""Training stage: tuners, the SFT/PT recipe, run-directory records and callbacks."""
