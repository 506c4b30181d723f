"""Evaluation: answer metrics, Whisper ASR-WER of spoken answers, per-mode and per-voice reports."""
