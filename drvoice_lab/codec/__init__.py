"""Speech codec: 16 kHz audio <-> 25 Hz discrete speech tokens, and how to fit one.

- ``interface``: the ``SpeechTokenizer`` contract every tokenizer keeps (rate, lengths, ids);
- ``registry``: a tokenizer by name (``load_speech_tokenizer``) and its fingerprint;
- ``mel_codec``: the embedded default, built from ``config``, ``features`` (log-mel and its
  inverse), ``decoder`` (token -> mel net) and ``vocoder`` (streaming Griffin-Lim);
- ``cosyvoice``: the CosyVoice2 adapter, for users who have those weights;
- ``kmeans``, ``decoder_training``, ``fitting``: fitting the default codec (torch);
- ``cli``: ``drvoice-lab speech encode|decode|say``.

Layering: this package sits above ``drvoice_lab.audio`` (I/O) and ``drvoice_lab.data``'s
sentence and voice sources; neither of those imports it.
"""
