"""Data: TTS voices, the synthetic spoken-dialogue corpus, CoM-Mixing formats, collation."""
