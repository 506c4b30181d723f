"""Audio, the bottom layer: wav I/O and validation (``io``), the Whisper speech encoder
(``encoder``, with its CTranslate2 converter ``ct2_whisper``), voice activity (``vad``).

The 25 Hz speech tokenizer lives one floor up, in ``drvoice_lab.codec``.
"""
