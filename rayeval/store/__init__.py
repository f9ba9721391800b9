"""The results store: its layout (`results`), resuming (`resume`), reuse of earlier tasks (`reuse`),
the fingerprints reuse keys on (`fingerprint`) and the summaries read back from it (`summary`)."""
